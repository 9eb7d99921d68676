"""How fast one `deflect serve` answers when the model has nothing to do: every query cached.

Issue 6's p99 bar (<= 100 ms at 32 zero-think typing clients) is missed with the model at work.
This measures the serving path without it: the query cache is filled with every typed prefix
of the first --questions banking77 questions, then 1, 4 and 32 clients type those same questions
(every request a cache hit, so no model run) and the server's CPU per request is read from
/proc. What is left is HTTP (waitress), Flask, validation, retrieval, the answered decision
and search logging, on one Python process and its GIL.

    .venv/bin/python bench/cached_ceiling.py            # about 1 minute
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from load import read_questions, run_load, typing_prefixes  # noqa: E402
from speed import clean_env, cpu_seconds, deflect_cmd, free_port, start, stop  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", default=str(ROOT.parent / "shared" / "benchmarks" / "banking77"),
                        help="Benchmark folder with kb/ and queries.jsonl.")  # fmt: skip
    parser.add_argument("--questions", type=int, default=150,
                        help="How many questions are typed (their prefixes must fit the query cache, 4096 by default).")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=8, help="Length of each measured run.")
    parser.add_argument("--clients", default="1,4,32", help="Client counts to measure, comma-separated.")
    args = parser.parse_args()

    questions = read_questions(str(Path(args.bench) / "queries.jsonl"))[: args.questions]
    prefixes = sum(len(typing_prefixes(q)) for q in questions)
    with tempfile.TemporaryDirectory(prefix="deflect-cached-") as scratch:
        work = Path(scratch)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(deflect_cmd(Path(args.bench) / "kb", work, port), port, work / "serve.log", clean_env())
        try:
            # One client types every question once: each prefix is encoded and cached.
            run_load(url, questions, clients=1, seconds=120, max_requests=prefixes, offset=0, tag="fill")
            print(f"cache filled with the {prefixes} typed prefixes of {len(questions)} questions (load {os.getloadavg()[0]:.1f})")
            print(f"{'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6} {'server CPU ms/req':>18}")
            for clients in (int(c) for c in args.clients.split(",")):
                before = cpu_seconds(proc.pid)
                result = run_load(url, questions, clients, args.seconds, 10**9, offset=0, tag=f"cached-{clients}")
                cpu_ms = (cpu_seconds(proc.pid) - before) * 1000 / max(1, result.requests)
                s = result.summary()
                print(f"{clients:>7} {s['requests']:>8} {s['throughput']:>8.1f} {s['p50_ms']:>8.2f} {s['p95_ms']:>8.2f} "
                      f"{s['p99_ms']:>8.2f} {s['errors']:>6} {cpu_ms:>18.2f}", flush=True)  # fmt: skip
        finally:
            stop(proc)
    print(f"load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
