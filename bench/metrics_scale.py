"""How long a metrics report takes on a year of as-you-type traffic, against an older checkout.

Builds a synthetic store (each final search typed as three superseded prefixes before it, five
results shown on each, a click on about a third, helpful or a ticket on some of those), then
times `compute_metrics` for all time, as the dashboard's "All time" and `deflect metrics` ask
for it. With `--baseline DIR` (a checkout of older code, e.g. `git worktree add /tmp/old
<commit>`) the two codes are timed in turns (A B A B) on the same database in one run, each in
a fresh process, and the report checks they give the same figures.

    .venv/bin/python bench/metrics_scale.py --searches 25000 --baseline /tmp/old
    .venv/bin/python bench/metrics_scale.py --database-url postgresql+psycopg://... --baseline /tmp/old
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_800_000_000.0  # after every synthetic search: the whole year is "all time"
WORDS = ("how do i reset my password change plan refund invoice export data delete account "
         "two factor login sso slack webhook billing").split()


def build(url: str, finals: int, seed: int = 7) -> None:
    """A year of traffic: `finals` final searches, 3 superseded prefixes each, 5 results per search."""
    sys.path.insert(0, str(ROOT))
    from deflect.db import events, make_engine, search_results, searches, upgrade

    engine = make_engine(url)
    upgrade(engine)
    rnd = random.Random(seed)
    items = [f"article-{i}" for i in range(300)]
    start = NOW - 400 * 86400
    rows, shown, acts = [], [], []

    def flush() -> None:
        if not rows:
            return
        with engine.begin() as conn:
            conn.execute(searches.insert(), rows)
            conn.execute(search_results.insert(), shown)
            if acts:
                conn.execute(events.insert(), acts)
        rows.clear(), shown.clear(), acts.clear()

    for n in range(finals):
        session, words = uuid.uuid4().hex, [rnd.choice(WORDS) for _ in range(5)]
        at, answered = start + n * (365 * 86400 / finals), rnd.random() < 0.7
        for typed in range(2, 6):  # "how do", "how do i", ... : the last one is final
            search_id = uuid.uuid4().hex
            rows.append({"id": search_id, "query": " ".join(words[:typed]), "session": session, "locale": "en",
                         "created_at": at + typed, "answered": answered, "top_score": 0.5, "index_version": "v"})
            idea_rank = 1 if rnd.random() < 0.1 else 5  # an idea first on some (answered_by_idea_rate)
            shown.extend({"search_id": search_id, "rank": r, "item_type": "idea" if r == idea_rank else "article",
                          "item_id": rnd.choice(items), "score": 0.5} for r in range(1, 6))
        luck, first = rnd.random(), next(r["item_id"] for r in shown[-5:] if r["item_type"] == "article")
        event = {"search_id": search_id, "session": session, "item_type": "article", "item_id": first}
        if luck < 0.35:
            acts.append(event | {"type": "click", "created_at": at + 10})
        if luck < 0.15:
            acts.append(event | {"type": "helpful", "created_at": at + 20})
        elif luck < 0.22:
            acts.append(event | {"type": "ticket_created", "item_type": None, "item_id": None, "created_at": at + 60})
        if len(rows) >= 20_000:
            flush()
    flush()


def time_report(url: str, repeats: int) -> dict:
    """Run in a child process whose PYTHONPATH picks the code under test."""
    from deflect.db import make_engine
    from deflect.metrics import compute_metrics

    engine = make_engine(url)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        report = compute_metrics(engine, now=NOW)
        seconds.append(time.perf_counter() - started)
    # The figures, not the gap rows' shape (a field added to those would make any two codes differ).
    figures = {key: report[key] for key in ("totals", "events", "articles", "ideas", "series")}
    figures["gaps"] = [(gap["query"], gap["count"]) for gap in report["content_gaps"]]
    digest = hashlib.sha256(json.dumps(figures, sort_keys=True, default=str).encode()).hexdigest()[:16]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": round(peak_mb), "digest": digest, "searches": report["totals"]["searches"],
            "all_searches": report["totals"]["all_searches"]}


def measure(code: Path, url: str, repeats: int) -> dict:
    env = os.environ | {"PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, __file__, "--time-only", url, "--repeats", str(repeats)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", type=int, default=25_000, help="final searches in the synthetic year (each typed as 4 searches)")
    parser.add_argument("--database-url", help="an empty database to fill (default: a new SQLite file in a temp folder)")
    parser.add_argument("--baseline", type=Path, help="a checkout of older code to time side by side (git worktree)")
    parser.add_argument("--rounds", type=int, default=2, help="A B turns")
    parser.add_argument("--repeats", type=int, default=2, help="reports per process (the first pays the imports)")
    parser.add_argument("--time-only", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_only:
        print(json.dumps(time_report(args.time_only, args.repeats)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/metrics.db"
        started = time.perf_counter()
        build(url, args.searches)
        print(f"store: {args.searches} final searches, {4 * args.searches} in all, {20 * args.searches} shown rows "
              f"({url.split(':')[0]}), built in {time.perf_counter() - started:.0f}s")
        codes = {"deflect": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
        runs: dict[str, list[dict]] = {name: [] for name in codes}
        for _ in range(args.rounds):
            for name, code in codes.items():
                runs[name].append(measure(code, url, args.repeats))
    best = {}
    for name, results in runs.items():
        seconds = [s for r in results for s in r["seconds"][1:] or r["seconds"]]
        best[name] = statistics.median(seconds)
        print(f"{name:9} median {best[name]:.2f}s  (runs {', '.join(f'{s:.2f}' for r in results for s in r['seconds'])})  "
              f"peak {max(r['peak_mb'] for r in results)} MB  report {results[0]['digest']}")
    if "baseline" in best:
        same = {r["digest"] for rs in runs.values() for r in rs}
        print(f"speed-up {best['baseline'] / best['deflect']:.2f}x; same figures: {'yes' if len(same) == 1 else 'NO'}")


if __name__ == "__main__":
    main()
