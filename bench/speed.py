"""Issue 6 in one command: deflect against the naive peer under as-you-type load, and index build.

    .venv/bin/python bench/speed.py                  # everything, a few minutes
    .venv/bin/python bench/speed.py --skip-index     # only the load bars (about 2 minutes)

Load bars: starts `deflect serve` with its default options (only paths and port given; the
rate limits are off, since every bench client is 127.0.0.1) and bench/naive_peer.py on the banking77 KB, both on 127.0.0.1, then measures them in turns
A B A B with 1 and with 32 typing clients (bench/load.py) and prints the ratios. Both
servers run during the whole comparison, idle while the other one is measured.

Index bars: a synthetic 10,000-article KB (made once, deterministic) is indexed from
scratch and compared with the encoder's raw batch throughput on a sample of its passages;
then `deflect serve` serves it, one article is changed three times, each edit followed by a
timed POST /api/reindex, and the serving process's resident memory (VmRSS, peak VmHWM) is
read from /proc. The in-process part also times each step of a one-article re-index.

Every server started here is stopped at the end (also on errors or Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import LoadResult, read_questions, run_load  # noqa: E402

PYTHON = sys.executable
DEFLECT = str(Path(sys.executable).with_name("deflect"))
ADMIN_TOKEN = "speed-bench-token"
STARTED: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# All bench clients come from 127.0.0.1, so deflect's per-client and per-session rate limits
# (on by default against floods) would throttle the load itself: they are off for the bench.
NO_RATE_LIMITS = {"DEFLECT_RATE_LIMIT_PER_CLIENT": "0", "DEFLECT_RATE_LIMIT_PER_SESSION": "0"}


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without DEFLECT_* settings, so deflect runs with its defaults
    (except the rate limits, see NO_RATE_LIMITS)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFLECT_")}
    env |= {"HF_HUB_OFFLINE": "1", "DEFLECT_CONFIG": "none"} | NO_RATE_LIMITS | extra
    return env


def start(cmd: list[str], port: int, log: Path, env: dict[str, str], timeout: float = 600) -> subprocess.Popen:
    """Start a server in its own process group and wait until /healthz answers."""
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    STARTED.append(proc)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{cmd} did not answer /healthz within {timeout}s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
    if proc in STARTED:
        STARTED.remove(proc)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (robust to other load, unlike wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values


def post(url: str, payload: dict, token: str | None = None, timeout: float = 600) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


def deflect_cmd(kb: Path, work: Path, port: int) -> list[str]:
    """`deflect serve` with default options: only where the files are and the port."""
    return [
        DEFLECT, "serve", "--kb", str(kb), "--index-dir", str(work / "index"),
        "--database-url", f"sqlite:///{work / 'deflect.db'}", "--port", str(port),
    ]  # fmt: skip


# -- load bars ---------------------------------------------------------------------------------


def load_bars(args, work: Path) -> dict:
    kb = Path(args.bench) / "kb"
    questions = read_questions(str(Path(args.bench) / "queries.jsonl"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "deflect.db").unlink(missing_ok=True)
    extra = {"DEFLECT_QUERY_CACHE_SIZE": "0"} if args.no_cache else {}
    extra |= dict(item.split("=", 1) for item in args.deflect_env)
    ports = {"deflect": free_port(), "naive": free_port()}
    t0 = time.time()
    servers = {
        "deflect": start(deflect_cmd(kb, work, ports["deflect"]), ports["deflect"], work / "deflect.log", clean_env(**extra)),
        "naive": start(
            [PYTHON, str(ROOT / "bench" / "naive_peer.py"), "--kb", str(kb), "--port", str(ports["naive"])],
            ports["naive"],
            work / "naive.log",
            clean_env(),
        ),
    }
    print(f"servers up in {time.time() - t0:.0f}s (deflect :{ports['deflect']}, naive :{ports['naive']})", flush=True)
    try:
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        # Warm-up on the last questions, which the measured rounds do not reach first.
        for name, url in urls.items():
            run_load(url, questions, clients=4, seconds=3, max_requests=200, offset=len(questions) - 60, tag=f"warm-{name}")
        results: dict[tuple[str, int], LoadResult] = {}
        for clients, seconds in ((1, args.seconds_one), (32, args.seconds)):
            for turn in range(args.turns):
                # Each turn types different questions; within a turn A and B type the same ones.
                offset = turn * len(questions) // args.turns
                for name in ("deflect", "naive"):
                    cpu0, own0 = cpu_seconds(servers[name].pid), time.process_time()
                    r = run_load(urls[name], questions, clients, seconds, args.max_requests, offset,
                                 think_ms=args.think_ms, tag=f"{name}-{turn}")  # fmt: skip
                    r.server_cpu_s = cpu_seconds(servers[name].pid) - cpu0
                    r.client_cpu_s = time.process_time() - own0
                    print(f"  {name:8} clients={clients:2} turn {turn + 1}: {json.dumps(r.summary())}", flush=True)
                    for sample in r.error_samples:
                        print(f"    error: {sample}")
                    key = (name, clients)
                    results[key] = results[key].merge(r) if key in results else r
        memory = {name: memory_mb(proc.pid) for name, proc in servers.items()}
    finally:
        for proc in list(servers.values()):
            stop(proc)
    return {"results": results, "memory": memory, "think_ms": args.think_ms}


def print_load_report(report: dict) -> None:
    results = report["results"]
    think = f", {report['think_ms']:.0f} ms think time between requests" if report["think_ms"] else ""
    print(f"\n== as-you-type load, banking77 KB (A B A B turns merged{think}) ==")
    print(
        f"{'server':8} {'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'server CPU ms/req':>17} {'client CPU ms/req':>17}"
    )
    for (name, clients), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        s = r.summary()
        n = max(1, s["requests"])
        print(
            f"{name:8} {clients:>7} {s['requests']:>8} {s['throughput']:>8.1f} {s['p50_ms']:>8.2f} "
            f"{s['p95_ms']:>8.2f} {s['p99_ms']:>8.2f} {s['errors']:>6} {1000 * r.server_cpu_s / n:>17.2f} "
            f"{1000 * r.client_cpu_s / n:>17.2f}"
        )
    for name, mem in report["memory"].items():
        print(f"{name:8} resident memory after the runs: {mem.get('VmRSS', 0):.0f} MB (peak {mem.get('VmHWM', 0):.0f} MB)")
    d32, n32 = results[("deflect", 32)], results[("naive", 32)]
    d1, n1 = results[("deflect", 1)], results[("naive", 1)]
    print("\n== bars ==")
    ratio = d32.throughput / n32.throughput if n32.throughput else float("inf")
    print(f"32 clients throughput: deflect {d32.throughput:.1f}/s vs naive {n32.throughput:.1f}/s = {ratio:.2f}x (bar >= 4x)")
    print(f"32 clients p99: deflect {d32.percentile(99):.1f} ms vs naive {n32.percentile(99):.1f} ms (bar deflect <= 100 ms)")
    print(f"32 clients errors: deflect {d32.errors}, naive {n32.errors} (bar 0)")
    if report["think_ms"]:
        offered = 32 / (report["think_ms"] / 1000)
        print(f"(with {report['think_ms']:.0f} ms think time 32 clients offer at most {offered:.0f} requests/s: a server that "
              "keeps up serves about that, so the throughput ratio is not the issue's measure)")
    p50 = n1.percentile(50) / d1.percentile(50)
    print(
        f"1 client p50: deflect {d1.percentile(50):.2f} ms vs naive {n1.percentile(50):.2f} ms = naive/{p50:.2f} (bar >= 1.8)"
    )


# -- index bars --------------------------------------------------------------------------------

WORDS = (
    "account card payment transfer refund invoice password login team project task board label due date "
    "reminder export import report calendar mobile app notification email billing plan upgrade downgrade "
    "cancel subscription receipt tax currency exchange limit verify identity phone address device browser "
    "sync offline share permission admin member guest archive delete restore backup history comment file "
    "upload attachment storage search filter view sort template workflow automation rule trigger webhook "
    "integration slack calendar api token key security two factor code sms error slow crash update version"
).split()


def synthetic_kb(folder: Path, articles: int, seed: int = 7) -> Path:
    """articles Markdown files: a title, a paragraph and a two-item list each (made once).

    That is four passages per article: the title, the section and the two list items.
    """
    marker = folder / f".complete-v2-{articles}"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(seed)

    def sentence(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."

    for i in range(articles):
        title = " ".join(rng.choice(WORDS) for _ in range(5)).capitalize()
        body = [f"# {title} {i}", "", " ".join(sentence(rng.randint(6, 12)) for _ in range(2)), ""]
        body += [f"- {sentence(rng.randint(4, 8))}" for _ in range(2)]
        sub = folder / f"s{i // 1000:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"a{i:05d}.md").write_text("\n".join(body) + "\n", encoding="utf-8")
    marker.touch()
    return folder


def index_bars(args, work: Path) -> dict:
    from deflect.kb_folder import load_kb
    from deflect.refresh import make_embedder, refresh_index
    from deflect.settings import load_settings

    kb = synthetic_kb(work / "synth-kb", args.articles)
    index_dir = work / "synth-index"
    for old in list(index_dir.glob("v-*")) + [index_dir / "CURRENT"]:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    settings = load_settings(
        config_file="none",
        env={},
        kb_dir=str(kb),
        index_dir=str(index_dir),
        database_url=f"sqlite:///{work / 'synth.db'}",
    )
    t = time.perf_counter()
    articles, _ = load_kb(kb, settings.default_locale, settings.passage_chars)
    parse_s = time.perf_counter() - t
    texts = [p.text for a in articles for p in a.passages]
    embedder = make_embedder(settings)
    embedder.encode(texts[:256])  # load (or export) the model and warm up
    sample = random.Random(1).sample(texts, min(len(texts), args.raw_sample))

    def raw_rates() -> tuple[float, float]:
        """The encoder alone on a random sample: passages per second of wall time and of CPU time."""
        wall, cpu = time.perf_counter(), time.process_time()
        embedder.encode(sample)
        return len(sample) / (time.perf_counter() - wall), len(sample) / (time.process_time() - cpu)

    print(f"synthetic KB: {len(articles)} articles, {len(texts)} passages (parsed in {parse_s:.1f}s)", flush=True)
    # Raw throughput before and after the build (A B A), so that load from other work on the
    # machine during the build shows up in both; CPU-time rates do not depend on that load.
    raw_before = raw_rates()
    print(f"raw encoder throughput ({embedder.active_backend}, embedder.encode of {len(sample)} random passages): "
          f"{raw_before[0]:.0f} passages/s, {raw_before[1]:.0f} per CPU-second", flush=True)  # fmt: skip
    wall, cpu = time.perf_counter(), time.process_time()
    _, build = refresh_index(settings)
    build_s, build_cpu = time.perf_counter() - wall, time.process_time() - cpu
    build_rate, build_cpu_rate = build.embedded_passages / build_s, build.embedded_passages / build_cpu
    print(f"full index build: {build.embedded_passages} passages in {build_s:.1f}s = {build_rate:.0f} passages/s, "
          f"{build_cpu_rate:.0f} per CPU-second (load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
    raw_after = raw_rates()
    print(f"raw encoder throughput again: {raw_after[0]:.0f} passages/s, {raw_after[1]:.0f} per CPU-second", flush=True)
    raw_rate = (raw_before[0] + raw_after[0]) / 2
    raw_cpu_rate = (raw_before[1] + raw_after[1]) / 2

    parts = reindex_parts(settings, embedder, kb)
    questions = read_questions(str(Path(args.bench) / "queries.jsonl"))
    search_ms = search_cost(settings, embedder, questions)
    print(f"search alone, CPU ms per query: deflect {search_ms['deflect']:.2f} (with a locale "
          f"{search_ms['deflect_locale']:.2f}), naive flat index {search_ms['naive']:.2f}", flush=True)  # fmt: skip
    port = free_port()
    db = work / "synth.db"
    db.unlink(missing_ok=True)
    env = clean_env(DEFLECT_ADMIN_TOKEN=ADMIN_TOKEN)
    cmd = [
        DEFLECT, "serve", "--kb", str(kb), "--index-dir", str(index_dir),
        "--database-url", f"sqlite:///{db}", "--port", str(port),
    ]  # fmt: skip
    t = time.perf_counter()
    proc = start(cmd, port, work / "synth-serve.log", env)
    start_s = time.perf_counter() - t
    reindex_s: list[float] = []
    changed: list = []
    try:
        url = f"http://127.0.0.1:{port}"
        warm = run_load(url, questions, clients=4, seconds=10, max_requests=300, tag="synth")
        before = memory_mb(proc.pid)
        target = sorted(kb.rglob("*.md"))[len(articles) // 2]
        original = target.read_text(encoding="utf-8")
        try:
            # Three edits of one article, each followed by POST /api/reindex (the KB watcher, on by
            # default, may pick an edit up first: then the request waits for it and finds nothing new).
            for edit in range(3):
                target.write_text(original + f"\nChanged for the re-index benchmark ({edit}) at {time.ctime()}.\n",
                                  encoding="utf-8")  # fmt: skip
                t = time.perf_counter()
                answer = post(url + "/api/reindex", {}, token=ADMIN_TOKEN)
                reindex_s.append(time.perf_counter() - t)
                changed.append(answer.get("changed"))
                if edit == 0:
                    after_first = memory_mb(proc.pid)
                time.sleep(args.reindex_pause)
        finally:
            target.write_text(original, encoding="utf-8")
        after = memory_mb(proc.pid)
        query_ms = warm.percentile(50)
    finally:
        stop(proc)
    return {
        "articles": len(articles),
        "passages": len(texts),
        "raw_rate": raw_rate,
        "build_rate": build_rate,
        "raw_cpu_rate": raw_cpu_rate,
        "build_cpu_rate": build_cpu_rate,
        "build_s": build_s,
        "serve_start_s": start_s,
        "reindex_s": reindex_s,
        "reindex_changed": changed,
        "query_p50_ms": query_ms,
        "query_errors": warm.errors,
        "rss_before": before,
        "rss_after_first": after_first,
        "rss_after": after,
        "parts": parts,
        "search_ms": search_ms,
    }


def reindex_parts(settings, embedder, kb: Path) -> dict[str, float]:
    """Where a one-article re-index spends its time, in-process (plus the full build's calibration)."""
    from deflect.calibration import fit_calibration
    from deflect.catalog import Catalog
    from deflect.index import _known_articles
    from deflect.index_folder import live_index
    from deflect.kb_folder import load_kb
    from deflect.refresh import refresh_index

    index = live_index(settings.index_dir)  # the version refresh_index just built, kept in memory
    catalog = Catalog.for_index(index)
    parts: dict[str, float] = {}
    t = time.perf_counter()
    fit_calibration(index, embedder)
    parts["fit_calibration (full builds only)"] = time.perf_counter() - t
    target = sorted(kb.rglob("*.md"))[len(index.articles) // 3]
    original = target.read_text(encoding="utf-8")
    try:
        target.write_text(original + "\nAn edit timed in-process.\n", encoding="utf-8")
        known = _known_articles(index, settings.default_locale)
        t = time.perf_counter()
        load_kb(kb, settings.default_locale, settings.passage_chars, known, index.manifest["scanned_ns"])
        parts["  scan the KB (reads only the changed file)"] = time.perf_counter() - t
        t = time.perf_counter()
        edited, report = refresh_index(settings)
        parts["  build_index: scan, embed, assemble, save"] = time.perf_counter() - t
        t = time.perf_counter()
        Catalog.for_index(edited, catalog)
        parts["  engine catalog update (Catalog.for_index)"] = time.perf_counter() - t
        parts["one-article re-index in-process"] = parts["  build_index: scan, embed, assemble, save"] + parts[
            "  engine catalog update (Catalog.for_index)"
        ]
    finally:
        target.write_text(original, encoding="utf-8")
    refresh_index(settings)  # back to the unedited KB before the server starts on it
    return parts


def search_cost(settings, embedder, questions: list[str], count: int = 200) -> dict[str, float]:
    """CPU ms per query of the search alone (the encoder excluded) on the synthetic KB: deflect's
    engine (passages, centroids, lexical, calibration) against the naive peer's flat index over one
    vector per article, measured first, so with faiss's default threads as the naive peer runs."""
    import faiss
    import numpy as np

    from deflect.index_folder import live_index
    from deflect.suggest import Engine

    index = live_index(settings.index_dir)
    vectors = embedder.encode(questions[:count])
    engine = Engine(embedder, index, [], settings.answer_threshold, fallback_locale=settings.default_locale)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(np.ascontiguousarray(engine.articles.centroids, dtype=np.float32))

    def cpu_ms(run) -> float:
        for vector in vectors[:10]:
            run(vector)
        cpu = time.process_time()
        for vector in vectors:
            run(vector)
        return (time.process_time() - cpu) * 1000 / len(vectors)

    naive = cpu_ms(lambda v: flat.search(v.reshape(1, -1), 5))
    ours = cpu_ms(lambda v: engine.suggest("", query_vector=v))
    with_locale = cpu_ms(lambda v: engine.suggest("", query_vector=v, locale="en"))
    return {"deflect": ours, "deflect_locale": with_locale, "naive": naive}


def print_index_report(r: dict) -> None:
    print("where the time goes (in-process, synthetic KB):")
    for name, seconds in r["parts"].items():
        print(f"  {name:48} {seconds:6.2f}s")
    print(f"\n== index bars, synthetic {r['articles']}-article KB ({r['passages']} passages) ==")
    share = r["build_rate"] / r["raw_rate"]
    cpu_share = r["build_cpu_rate"] / r["raw_cpu_rate"]
    print(
        f"index build {r['build_rate']:.0f} passages/s vs raw encoder {r['raw_rate']:.0f}/s (mean of before and "
        f"after) = {share:.0%} (bar >= 80%); per CPU-second {r['build_cpu_rate']:.0f} vs {r['raw_cpu_rate']:.0f} "
        f"= {cpu_share:.0%}"
    )
    times = ", ".join(f"{s:.2f}s" for s in r["reindex_s"])
    print(f"re-index after changing one article (POST /api/reindex, 3 edits): {times}; changed {r['reindex_changed']} "
          f"(bar <= 2 s)")  # fmt: skip
    print(
        f"serving process: {r['rss_before'].get('VmRSS', 0):.0f} MB resident after queries, "
        f"{r['rss_after_first'].get('VmRSS', 0):.0f} MB after the first re-index, "
        f"{r['rss_after'].get('VmRSS', 0):.0f} MB after the third, peak {r['rss_after'].get('VmHWM', 0):.0f} MB "
        f"(bar < 700 MB); start-up with the index built {r['serve_start_s']:.1f}s; "
        f"query p50 {r['query_p50_ms']:.1f} ms, errors {r['query_errors']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="deflect vs the naive peer (issue 6 bars), servers on 127.0.0.1.")
    parser.add_argument("--bench", default=str(ROOT.parent / "shared" / "benchmarks" / "banking77"))
    parser.add_argument("--work", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "deflect-speed"),
                        help="Scratch folder (kept between runs: the synthetic KB and the ONNX export are reused).")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=8.0, help="Length of one 32-client turn.")
    parser.add_argument("--seconds-one", type=float, default=5.0, help="Length of one 1-client turn.")
    parser.add_argument("--turns", type=int, default=2, help="A B turns per client count (2 = A B A B).")
    parser.add_argument("--max-requests", type=int, default=20_000, help="Upper bound of requests per turn.")
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="Pause of each client between keystroke requests (the issue's bars: 0, none).")  # fmt: skip
    parser.add_argument("--no-cache", action="store_true", help="Run deflect with query_cache_size=0.")
    parser.add_argument("--deflect-env", action="append", default=[], metavar="DEFLECT_X=V",
                        help="Environment setting for deflect (to compare options; the bars use none).")  # fmt: skip
    parser.add_argument("--articles", type=int, default=10_000, help="Size of the synthetic KB.")
    parser.add_argument("--raw-sample", type=int, default=4000, help="Passages encoded for the raw throughput.")
    parser.add_argument("--reindex-pause", type=float, default=2.0,
                        help="Seconds between the re-index edits (lets the KB watcher settle).")  # fmt: skip
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-index", action="store_true")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        if not args.skip_load:
            print_load_report(load_bars(args, work / "banking77"))
        if not args.skip_index:
            print_index_report(index_bars(args, work))
    finally:
        for proc in list(STARTED):
            stop(proc)
    print(f"\nelapsed {time.time() - t0:.0f}s; load {os.getloadavg()[0]:.1f} (other work on the machine skews timings)")


if __name__ == "__main__":
    main()
