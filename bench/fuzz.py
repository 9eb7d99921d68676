"""The big fuzzing run: schemathesis against a real `deflect serve`, hypothesis on the parser and validators.

    .venv/bin/python bench/fuzz.py [--api-examples 150] [--examples 1000] [--postgres URL] [--seed N]

API: starts `deflect serve` (waitress, the sample KB, a fresh SQLite store or a fresh database on
--postgres's server, rate limits off, an admin token) on 127.0.0.1, then for every operation in its
GET /api/openapi.json sends up to --api-examples generated requests that fit the schema and as
many that break it on purpose, with the admin token. Each answer must not be a 5xx and must be one
the document describes (status code, content type, response schema, headers).
Properties: tests/fuzz_support.py PROPERTIES (article parser and renderer, KB loading, request
validators), --examples inputs each. Prints inputs tried, 5xx seen and failures; exits 1 on any.
The CI version of both is tests/test_fuzz_api.py and tests/test_fuzz_inputs.py (a few hundred each).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

TOKEN = "bench-fuzz-token"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-examples", type=int, default=150, help="inputs per API operation and mode")
    parser.add_argument("--examples", type=int, default=1000, help="inputs per hypothesis property")
    parser.add_argument("--postgres", default=os.environ.get("DEFLECT_TEST_POSTGRES_URL"),
                        help="PostgreSQL server URL (no database name); default: a SQLite file")
    parser.add_argument("--index-dir", help="reuse a built index of kb_articles (default: build one in a temp folder)")
    parser.add_argument("--seed", type=int, help="derandomise hypothesis (same inputs every run)")
    args = parser.parse_args()

    from fuzz_support import PROPERTIES, FuzzReport, fuzz_api, run_property
    from server_support import Server, fresh_database, server_env

    logging.getLogger("deflect.articles").setLevel(logging.ERROR)  # load_kb warns about every bad file it is fed

    started = time.time()
    failures: list[str] = []
    total_tried = 0
    with tempfile.TemporaryDirectory(prefix="deflect-bench-fuzz-") as tmp:
        work = Path(tmp)
        database_url = fresh_database(args.postgres.rstrip("/")) if args.postgres else f"sqlite:///{work / 'fuzz.db'}"
        index_dir = Path(args.index_dir) if args.index_dir else work / "index"
        print(f"== API: deflect serve on {database_url.split('://')[0]}, {args.api_examples} inputs per operation and mode",
              flush=True)
        # One client sends thousands of requests a minute here: server_env turns the rate limits off.
        env = server_env(work, database_url, kb_dir=ROOT / "kb_articles", index_dir=index_dir, admin_token=TOKEN)
        server = Server(env, work / "server.log")
        try:
            server.wait_healthy(timeout=600)
            api: FuzzReport = fuzz_api(server.base, TOKEN, args.api_examples, seed=args.seed,
                                       progress=lambda s: print("  " + s, flush=True))
        finally:
            server.stop()
        errors_logged = (work / "server.log").read_text().count("unhandled error")
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(api.statuses.items()))
    print(f"API: {api.tried} requests over {len(api.per_operation)} operation/mode pairs in {api.seconds:.0f} s; "
          f"5xx seen: {api.server_errors}; unhandled errors in the server log: {errors_logged}; "
          f"failures: {len(api.failures)}")
    print(f"  statuses: {statuses}")
    failures += api.failures
    total_tried += api.tried

    print(f"== properties: {args.examples} inputs each", flush=True)
    prop_tried = 0
    for name, strategy, check in PROPERTIES:
        t0 = time.time()
        tried, found = run_property(strategy, check, args.examples, seed=args.seed)
        prop_tried += tried
        print(f"  {name}: {tried} inputs, {len(found)} failures, {time.time() - t0:.1f} s", flush=True)
        failures += [f"{name}: {f}" for f in found]
    total_tried += prop_tried
    print(f"properties: {prop_tried} inputs, {sum(1 for f in failures if not f.startswith(('GET', 'POST', 'PATCH', 'DELETE')))} failures")
    print(f"TOTAL: {total_tried} inputs tried, {api.server_errors} 5xx seen, {len(failures)} failures "
          f"({time.time() - started:.0f} s)")
    for failure in failures:
        print("FAILURE " + failure)
    return 1 if failures or api.server_errors or errors_logged else 0


if __name__ == "__main__":
    sys.exit(main())
