"""Real `deflect serve` processes and real HTTP clients, for the reliability tests and bench/reliability.py.

Everything here talks to servers over 127.0.0.1 only, and every load is bounded by a
stop event the caller sets (plus a request budget), so nothing runs unbounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
from pg_support import LocalPostgres, find_pg_bin, free_port, fresh_database, local_postgres  # noqa: F401 - shared

ADMIN_TOKEN = "test-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "deflect.cli"]


def server_env(root: Path, database_url: str, **settings: str) -> dict[str, str]:
    """Environment for a server on root/kb and root/index; no rate limits (all clients share 127.0.0.1)."""
    (root / "kb").mkdir(parents=True, exist_ok=True)  # an empty KB unless the test writes one
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFLECT_")}
    env |= {
        "HF_HUB_OFFLINE": "1",
        "DEFLECT_CONFIG": "none",  # read no config file
        "DEFLECT_KB_DIR": str(root / "kb"),
        "DEFLECT_INDEX_DIR": str(root / "index"),
        "DEFLECT_DATABASE_URL": database_url,
        "DEFLECT_ADMIN_TOKEN": ADMIN_TOKEN,
        "DEFLECT_SYNC_INTERVAL_SECONDS": "0.5",
        "DEFLECT_WATCH_KB": "false",
        "DEFLECT_RATE_LIMIT_PER_CLIENT": "0",
        "DEFLECT_RATE_LIMIT_PER_SESSION": "0",
        "DEFLECT_WRONG_TOKEN_LIMIT_PER_CLIENT": "0",
    }
    env |= {f"DEFLECT_{name.upper()}": str(value) for name, value in settings.items()}
    return env


def run_cli(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, cwd=REPO, check=True, capture_output=True, text=True, timeout=timeout)


class Server:
    """One `deflect serve` subprocess with its log file."""

    def __init__(self, env: dict[str, str], log_path: Path, args: tuple[str, ...] = ()):
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()/kill()
        self.process = subprocess.Popen(
            [*CLI, "serve", "--port", str(self.port), *args], env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        """The end of the server's log, for an assertion's message."""
        return self.log_path.read_text(errors="replace")[-3000:]

    def whole_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 300) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited ({self.process.returncode}): {self.log()}")
            try:
                answer = requests.get(f"{self.base}/healthz", timeout=2)
                if answer.status_code == 200:
                    return answer.json()
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not start within {timeout}s: {self.log()}")

    def health(self) -> dict:
        return requests.get(f"{self.base}/healthz", timeout=10).json()

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.close()


def wait_for(condition, timeout: float, interval: float = 0.1):
    """Poll `condition()` until it returns something truthy; return it, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return None


@dataclass
class LoadStats:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, latency_ms: float, failure: str | None) -> None:
        with self.lock:
            self.requests += 1
            self.latencies_ms.append(latency_ms)
            if failure:
                self.failures.append(failure)

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def questions(path: Path = REPO / "tests/data/sample_questions.jsonl") -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]


def typing_clients(base: str, texts: list[str], clients: int, stop: threading.Event, budget: int = 100_000) -> tuple[LoadStats, list[threading.Thread]]:
    """Start `clients` threads that type questions word by word (one suggest per prefix of 2+ words)."""
    stats = LoadStats()

    def client(number: int) -> None:
        http = requests.Session()
        turn = number
        while not stop.is_set() and stats.requests < budget:
            words = texts[turn % len(texts)].split()
            turn += clients
            for end in range(2, len(words) + 1):
                if stop.is_set():
                    return
                body = {"query": " ".join(words[:end]), "session": f"typist-{number}-{turn}"}
                started = time.perf_counter()
                failure = None
                try:
                    answer = http.post(f"{base}/api/suggest", json=body, timeout=60)
                    if answer.status_code != 200 or "results" not in answer.json():
                        failure = f"{answer.status_code}: {answer.text[:200]}"
                except (requests.RequestException, ValueError) as exc:
                    failure = repr(exc)
                stats.add((time.perf_counter() - started) * 1000, failure)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    return stats, threads


def event_clients(base: str, clients: int, stop: threading.Event, acknowledged: list[int]) -> list[threading.Thread]:
    """Threads that search and then post click/helpful/ticket events, appending each acknowledged event id.

    An event counts as acknowledged only when its 202 answer arrived; errors once the
    server is killed are expected and count as not acknowledged.
    """
    # (type, rank of the result it is about): distinct events, since the same event twice is stored once
    kinds = (("click", 0), ("not_helpful", 0), ("ticket_created", 0), ("click", 1))
    lock = threading.Lock()

    def client(number: int) -> None:
        http = requests.Session()
        turn = 0
        while not stop.is_set():
            turn += 1
            try:
                found = http.post(
                    f"{base}/api/suggest", json={"query": "I forgot my password", "session": f"c{number}-{turn}"}, timeout=30
                ).json()
                for kind, rank in kinds:
                    answer = http.post(
                        f"{base}/api/events",
                        json={"search_id": found["search_id"], "type": kind, "item_id": found["results"][rank]["id"]},
                        timeout=30,
                    )
                    if answer.status_code == 202:
                        with lock:
                            acknowledged.append(answer.json()["event_id"])
            except (requests.RequestException, ValueError, KeyError, IndexError):
                if stop.wait(0.05):
                    return

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    return threads


# --- scenarios shared by tests/test_reliability.py and bench/reliability.py ------------------


def reindex_under_load(server: Server, article: Path, clients: int = 8, reindexes: int = 10) -> dict:
    """`clients` type questions while `reindexes` edits of `article` are each reindexed through the API."""
    stop = threading.Event()
    stats, threads = typing_clients(server.base, questions(), clients=clients, stop=stop)
    original = article.read_text()
    versions = [server.health()["index_version"]]
    changed, seconds = [], []
    try:
        for n in range(reindexes):
            article.write_text(original + f"\n\nRevision note {n}: the reset link now expires after {n + 1} hours.\n")
            started = time.monotonic()
            answer = requests.post(f"{server.base}/api/reindex", headers=ADMIN, timeout=600)
            seconds.append(time.monotonic() - started)
            answer.raise_for_status()
            changed.append(answer.json()["changed"])
            versions.append(answer.json()["index_version"])
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        article.write_text(original)
    return {
        "clients": clients,
        "reindexes": reindexes,
        "versions": versions,
        "changed": changed,
        "reindex_seconds": seconds,
        "requests": stats.requests,
        "failures": stats.failures,
        "p50_ms": stats.percentile(0.5),
        "p99_ms": stats.percentile(0.99),
    }


def kill_during_event_load(env: dict[str, str], database_url: str, log_dir: Path, clients: int = 8, min_acked: int = 200) -> dict:
    """Serve, post events from `clients` threads, kill -9 the server, then look for every acknowledged event."""
    import sqlalchemy as sa

    server = Server(env, log_dir / f"events-{uuid.uuid4().hex[:6]}.log")
    acknowledged: list[int] = []
    stop = threading.Event()
    try:
        server.wait_healthy()
        threads = event_clients(server.base, clients=clients, stop=stop, acknowledged=acknowledged)
        if not wait_for(lambda: len(acknowledged) >= min_acked, timeout=180):
            raise RuntimeError(f"event load never got going: {server.log()}")
        server.kill9()
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        stop.set()
        server.stop()
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            stored = {row[0] for row in conn.execute(sa.text("SELECT id FROM events"))}
    finally:
        engine.dispose()
    return {"acknowledged": len(acknowledged), "found": len(set(acknowledged) & stored),
            "missing": sorted(set(acknowledged) - stored)}


def index_is_whole(index_dir: Path) -> str:
    """Raise unless the live index loads and is internally consistent; return its version."""
    import numpy as np

    from deflect.index_folder import load_index

    index = load_index(index_dir)
    if index is None:
        raise AssertionError(f"no loadable index in {index_dir}")
    if index.vectors.shape != (index.manifest["passages"], index.manifest["dimension"]):
        raise AssertionError(f"vectors {index.vectors.shape} disagree with the manifest")
    if not len(index.articles) == index.manifest["articles"] == len(index.manifest["files"]):
        raise AssertionError("articles disagree with the manifest")
    if not np.isfinite(index.vectors).all():
        raise AssertionError("vectors are not finite")
    return index.version


def _collect(stream, into: list[str]) -> None:
    """What the process writes, as soon as it is written (a read of N characters waits for N)."""
    for chunk in iter(lambda: os.read(stream.fileno(), 4096), b""):
        into.append(chunk.decode(errors="replace"))


def _phase_reached(point: str | float, output: list[str], index_dir: Path, old_tmp: set[Path], started: float,
                   full: float) -> bool:
    if isinstance(point, float):
        return time.monotonic() - started >= point * full
    text = "".join(output)
    if point == "embedding":  # "embedding N passages ..." (no bar: not a terminal): vectors are being computed
        return "embedding" in text
    if point == "calibrating":  # "embedded N passages": the answered-calibration is fitted next
        return "embedded " in text
    if point == "saving":  # the new version's temp folder exists
        return bool(set(index_dir.glob(".tmp-*")) - old_tmp)
    raise ValueError(point)


def kill_during_indexing(env: dict[str, str], kb_dir: Path, index_dir: Path, points: tuple[str | float, ...]) -> dict:
    """Edit every article, then kill -9 `deflect index` at each point: a phase it reached
    ("embedding", "calibrating", "saving") or a share of a clean rebuild's duration (floats).

    After every kill the live index must load whole: the previous version, or (when the
    kill came after the switch) the complete new one.
    """
    def edit_every_article(round_: int) -> None:
        for path in kb_dir.rglob("*.md"):
            path.write_text(path.read_text() + f"\n\nUpdated for release {round_}.\n")

    edit_every_article(0)
    full = 0.0
    if any(isinstance(point, float) for point in points):
        probe = index_dir.parent / f"probe-{uuid.uuid4().hex[:6]}"
        shutil.copytree(index_dir, probe)
        started = time.monotonic()
        run_cli(env | {"DEFLECT_INDEX_DIR": str(probe)}, "index")
        full = time.monotonic() - started
        shutil.rmtree(probe, ignore_errors=True)
    previous = index_is_whole(index_dir)
    killed_midway = kept_previous = 0
    outcomes: list[str] = []  # per kill: "<midway|finished>, <previous|new> index"
    for round_, point in enumerate(points, 1):
        edit_every_article(round_)  # so every run has a whole rebuild to do, even after one that finished
        old_tmp = set(index_dir.glob(".tmp-*"))
        process = subprocess.Popen([*CLI, "index"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        output: list[str] = []
        reader = threading.Thread(target=_collect, args=(process.stderr, output), daemon=True)
        reader.start()
        started = time.monotonic()
        while process.poll() is None and not _phase_reached(point, output, index_dir, old_tmp, started, full):
            time.sleep(0.002)
        midway = process.poll() is None
        process.kill()
        process.wait(timeout=30)
        reader.join(timeout=10)
        version = index_is_whole(index_dir)
        killed_midway += midway
        outcomes.append(f"{'midway' if midway else 'finished'}, {'previous' if version == previous else 'new'} index")
        kept_previous += midway and version == previous
        previous = version
    return {"build_seconds": full, "kills": len(points), "killed_midway": killed_midway,
            "kept_previous": kept_previous, "outcomes": outcomes, "whole_after_every_kill": True}


def replica_convergence(writer: Server, follower: Server, kb_dir: Path, rounds: int = 1) -> list[float]:
    """Seconds until `follower` serves each version `writer` built (one article added or removed per round)."""
    path = kb_dir / "replica-probe.md"
    seconds = []
    for n in range(rounds):
        if path.exists():
            path.unlink()
        else:
            path.write_text(f"---\ntitle: Replica probe {n}\n---\nThis article checks that replicas follow reindexes.\n")
        built = requests.post(f"{writer.base}/api/reindex", headers=ADMIN, timeout=600)
        built.raise_for_status()
        version = built.json()["index_version"]
        started = time.monotonic()
        if not wait_for(lambda v=version: follower.health()["index_version"] == v, timeout=60, interval=0.05):
            raise AssertionError(f"the follower never loaded {version}: {follower.log()}")
        seconds.append(time.monotonic() - started)
    return seconds
