"""What logging every search costs: suggest latency with and without it, side by side.

    .venv/bin/python bench/logging_overhead.py [--rounds 6] [--postgres URL]

One Runtime over the sample KB; the same questions are answered with search logging on
(the default) and off (`record=False`), in alternating rounds (A B A B ...) so both see
the same machine state. Reports the median and p95 per mode and the difference of the
medians. With --postgres (or DEFLECT_TEST_POSTGRES_URL) the same runs on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deflect.runtime import Runtime  # noqa: E402
from deflect.settings import load_settings  # noqa: E402


def measure(database_url: str, scratch: str, questions: list[str], rounds: int) -> dict:
    settings = load_settings(
        config_file="none",
        env={},
        kb_dir=str(ROOT / "kb_articles"),
        index_dir=f"{scratch}/index",
        database_url=database_url,
        query_cache_size=0,  # every request encodes its query, as the first one of a question does
    )
    runtime = Runtime(settings, sync=False)
    for q in questions[:10]:  # warm-up: model, faiss, connections
        runtime.suggest(q, session="warm")
    timings: dict[bool, list[float]] = {True: [], False: []}
    for r in range(rounds):
        for record in (True, False) if r % 2 == 0 else (False, True):
            for n, q in enumerate(questions):
                start = time.perf_counter()
                runtime.suggest(q, session=f"bench-{r}-{n}", record=record)
                timings[record].append((time.perf_counter() - start) * 1000)
    runtime.close()
    runtime.db.dispose()

    def p95(xs):
        return sorted(xs)[int(0.95 * (len(xs) - 1))]

    on, off = timings[True], timings[False]
    return {
        "requests_per_mode": len(on),
        "median_ms_logging": round(statistics.median(on), 3),
        "median_ms_no_logging": round(statistics.median(off), 3),
        "p95_ms_logging": round(p95(on), 3),
        "p95_ms_no_logging": round(p95(off), 3),
        "median_overhead_ms": round(statistics.median(on) - statistics.median(off), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds per mode")
    parser.add_argument("--postgres", default=os.environ.get("DEFLECT_TEST_POSTGRES_URL"), help="PostgreSQL server URL (no database)")
    args = parser.parse_args()
    questions = [json.loads(line)["text"] for line in (ROOT / "tests/data/sample_questions.jsonl").read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory(prefix="deflect-bench-") as scratch:
        results = {"sqlite": measure(f"sqlite:///{scratch}/bench.db", scratch, questions, args.rounds)}
        if args.postgres:
            import uuid

            import sqlalchemy as sa

            name = f"bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(f"{args.postgres}/postgres", isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            results["postgresql"] = measure(f"{args.postgres}/{name}", scratch, questions, args.rounds)
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            admin.dispose()
    for store, figures in results.items():
        print(f"{store:>10}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
