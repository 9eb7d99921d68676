"""Reliability figures (issue 7): requests failed during hot reindexes, events lost to kill -9,
indexes broken by kill -9, and how fast replicas converge.

    .venv/bin/python bench/reliability.py [--postgres-url postgresql+psycopg://user@127.0.0.1:5432]

Runs real `deflect serve` / `deflect index` processes on 127.0.0.1 with the sample KB.
Without --postgres-url (or DEFLECT_TEST_POSTGRES_URL) a throwaway PostgreSQL server is
started from Debian's binaries. The scenarios are the ones tests/test_reliability.py
asserts on (tests/server_support.py), run here with more rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from server_support import (  # noqa: E402
    Server,
    fresh_database,
    kill_during_event_load,
    kill_during_indexing,
    local_postgres,
    reindex_under_load,
    replica_convergence,
    run_cli,
    server_env,
)

SAMPLE_KB = ROOT / "kb_articles"


def _fresh_root(parent: Path, name: str) -> Path:
    root = parent / name
    shutil.copytree(SAMPLE_KB, root / "kb")
    return root


def bench_reindex(parent: Path, clients: int, reindexes: int) -> None:
    root = _fresh_root(parent, "reindex")
    server = Server(server_env(root, f"sqlite:///{root / 'deflect.db'}"), root / "serve.log")
    try:
        server.wait_healthy()
        f = reindex_under_load(server, root / "kb" / "account" / "reset-password.md", clients, reindexes)
    finally:
        server.stop()
    swaps = len(set(f["versions"])) - 1
    print(
        f"hot reindex: {f['clients']} typing clients, {f['reindexes']} reindexes ({swaps} index swaps, "
        f"{min(f['reindex_seconds']):.1f}-{max(f['reindex_seconds']):.1f} s each): {f['requests']} requests, "
        f"{len(f['failures'])} failed; p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms"
    )


def bench_kill_events(parent: Path, postgres: str, rounds: int) -> None:
    for database in ("sqlite", "postgresql"):
        acknowledged = found = 0
        for n in range(rounds):
            root = _fresh_root(parent, f"events-{database}-{n}")
            url = f"sqlite:///{root / 'deflect.db'}" if database == "sqlite" else fresh_database(postgres)
            f = kill_during_event_load(server_env(root, url), url, root, clients=8, min_acked=300 + 200 * n)
            acknowledged += f["acknowledged"]
            found += f["found"]
        print(f"kill -9 under event load, {database}: {rounds} kills, {acknowledged} events acknowledged, "
              f"{found} found after the kill, {acknowledged - found} lost")


def bench_kill_indexing(parent: Path, kills: int) -> None:
    root = _fresh_root(parent, "indexing")
    env = server_env(root, f"sqlite:///{root / 'deflect.db'}")
    run_cli(env, "index")
    shares = tuple(round(0.1 + 0.85 * i / max(1, kills - 1), 3) for i in range(kills))
    f = kill_during_indexing(env, root / "kb", root / "index", ("embedding", "calibrating", "saving", *shares))
    server = Server(env, root / "serve.log")
    try:
        served = server.wait_healthy()["articles"]
    finally:
        server.stop()
    print(
        f"kill -9 during `deflect index` (full rebuild {f['build_seconds']:.1f} s): {f['kills']} kills "
        f"(while embedding, calibrating, saving, and at {len(shares)} times from 10% to 95%), "
        f"{f['killed_midway']} mid-build, previous index kept by {f['kept_previous']}, "
        f"index whole after every kill; restart served {served} articles"
    )


def bench_replicas(parent: Path, postgres: str, rounds: int) -> None:
    root = _fresh_root(parent, "replicas")
    env = server_env(root, fresh_database(postgres))
    run_cli(env, "index")
    a, b = Server(env, root / "a.log"), Server(env, root / "b.log")
    try:
        a.wait_healthy()
        b.wait_healthy()
        seconds = replica_convergence(a, b, root / "kb", rounds) + replica_convergence(b, a, root / "kb", rounds)
    finally:
        a.stop()
        b.stop()
    seconds.sort()
    print(
        f"replicas (2 servers, one PostgreSQL, one index folder, sync every 0.5 s): {len(seconds)} reindexes, "
        f"all converged; the other replica served the new version after median {seconds[len(seconds) // 2]:.2f} s, "
        f"max {seconds[-1]:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", default=os.environ.get("DEFLECT_TEST_POSTGRES_URL"),
                        help="PostgreSQL server URL without database (default: start a throwaway server).")
    parser.add_argument("--clients", type=int, default=8, help="Typing clients during the hot reindexes.")
    parser.add_argument("--reindexes", type=int, default=10, help="Reindexes under load.")
    parser.add_argument("--event-kills", type=int, default=3, help="kill -9 rounds under event load, per database.")
    parser.add_argument("--index-kills", type=int, default=6, help="kill -9 at this many times during a rebuild (plus one per phase).")
    parser.add_argument("--replica-rounds", type=int, default=5, help="Reindexes by each of the two replicas.")
    args = parser.parse_args()
    started = time.time()
    with contextlib.ExitStack() as stack:
        postgres = args.postgres_url.rstrip("/") if args.postgres_url else stack.enter_context(local_postgres())
        parent = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deflect-reliability-")))
        bench_reindex(parent, args.clients, args.reindexes)
        bench_kill_events(parent, postgres, args.event_kills)
        bench_kill_indexing(parent, args.index_kills)
        bench_replicas(parent, postgres, args.replica_rounds)
    print(f"elapsed {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
