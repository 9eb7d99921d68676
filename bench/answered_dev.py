"""Development sets for the `answered` decision, kept apart from every benchmark's queries.

    .venv/bin/python bench/answered_dev.py [--target-false-answer 0.07] [--bench ../shared/benchmarks/banking77]

The calibration's settings (`target_false_answer`, which pseudo-queries cap it) are chosen
here, never on a benchmark's queries.jsonl or on the tests' questions:

- banking77 folds: the benchmark's feedback.jsonl (confirmed answers, not its queries) on
  its KB with every fifth article hidden (three folds, offsets 0-2). Questions about a
  hidden article are unanswerable, as the benchmark's unknown intents are: near neighbours
  of articles that exist.
- sample KB: bench/data/sample_kb_dev.jsonl and sample_kb_dev2.jsonl, customer-style
  questions written for these sets (not tests/data), on kb_articles/ (prose articles). The
  second was written later, without seeing the first or the tests: typos in about a third,
  no words of the title, and unanswerable questions half far off, half plausible for the
  product but covered by no article.

With --seed, each sample KB set is also measured after the other set's answerable
questions were imported as confirmed answers (`deflect aliases import`, the same code):
what a team's past tickets do for a fresh prose KB.

For each set: hit@1, AUROC, and deflect's own decision (correct-answered share of
answerable, false-answer rate on unanswerable).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deflect.evaluation import build_benchmark_engine, evaluate, read_jsonl  # noqa: E402
from deflect.kb_folder import load_kb  # noqa: E402
from deflect.settings import load_settings  # noqa: E402

FOLDS = 3
HIDE_EVERY = 5


def banking_fold(bench: Path, offset: int, scratch: Path) -> tuple[Path, list[dict]]:
    """A copy of the KB without every HIDE_EVERY-th article (from offset), and feedback as queries."""
    kb = scratch / f"kb{offset}"
    kb.mkdir()
    files = sorted((bench / "kb").glob("*.md"))
    articles, _ = load_kb(bench / "kb")
    id_of_file = {Path(a.path).name: a.id for a in articles}
    hidden = set()
    for number, path in enumerate(files):
        if number % HIDE_EVERY == offset:
            hidden.add(id_of_file[path.name])
        else:
            shutil.copy(path, kb / path.name)
    queries = [
        {"text": row["text"], "expected": None if row["article"] in hidden else row["article"]}
        for row in read_jsonl(bench / "feedback.jsonl")
    ]
    return kb, queries


def line(name: str, report) -> str:
    return (
        f"{name:22s} {report.answerable:5d} {report.unanswerable:5d} {report.hit_at_1:7.4f} {report.auroc if report.auroc is not None else float('nan'):7.4f}"
        f" {report.answered_correct_rate:17.4f} {report.false_answer_rate:18.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", default=str(ROOT.parent / "shared" / "benchmarks" / "banking77"),
                        help="A benchmark folder with kb/ and feedback.jsonl.")  # fmt: skip
    parser.add_argument("--target-false-answer", type=float, default=None,
                        help="Override the setting (default: deflect's own default).")  # fmt: skip
    parser.add_argument("--seed", action="store_true",
                        help="Also measure each sample KB set seeded with the other's answerable questions.")  # fmt: skip
    args = parser.parse_args()
    overrides = {} if args.target_false_answer is None else {"target_false_answer": args.target_false_answer}
    settings = load_settings(config_file="none", env={}, **overrides)
    started = time.time()
    print(f"target_false_answer {settings.target_false_answer}")
    print(
        f"{'set':22s} {'ans':>5s} {'unans':>5s} {'hit@1':>7s} {'AUROC':>7s} {'correct-answered':>17s} {'false-answer rate':>18s}"
    )
    bench = Path(args.bench)
    with tempfile.TemporaryDirectory(prefix="deflect-answered-dev-") as scratch:
        totals = []
        for offset in range(FOLDS):
            kb, queries = banking_fold(bench, offset, Path(scratch))
            engine, _ = build_benchmark_engine(kb, settings)
            report = evaluate(engine, queries)
            totals.append(report)
            print(line(f"banking77 fold {offset}", report), flush=True)
        mean = lambda field: sum(getattr(r, field) for r in totals) / len(totals)  # noqa: E731
        print(f"{'banking77 folds, mean':22s} {'':5s} {'':5s} {mean('hit_at_1'):7.4f} {mean('auroc'):7.4f}"
              f" {mean('answered_correct_rate'):17.4f} {mean('false_answer_rate'):18.4f}")  # fmt: skip
    engine, _ = build_benchmark_engine(ROOT / "kb_articles", settings)
    sets = {name: read_jsonl(ROOT / "bench" / "data" / f"{name}.jsonl") for name in SAMPLE_SETS}
    for name, queries in sets.items():
        print(line(SAMPLE_SETS[name], evaluate(engine, queries)), flush=True)
    if args.seed:
        logging.disable(logging.INFO)  # a fresh deployment's migration and start-up lines
        for name, other in (("sample_kb_dev", "sample_kb_dev2"), ("sample_kb_dev2", "sample_kb_dev")):
            seeds = [q for q in sets[other] if q.get("expected")]
            report = seeded_report(settings, seeds, sets[name])
            print(line(f"{SAMPLE_SETS[name]} +{len(seeds)}", report), flush=True)
    print(f"elapsed {time.time() - started:.0f}s")


SAMPLE_SETS = {"sample_kb_dev": "sample KB dev", "sample_kb_dev2": "sample KB dev2"}


def seeded_report(settings, seeds: list[dict], queries: list[dict]):
    """A fresh deployment of the sample KB, `seeds` imported as confirmed answers, then evaluated."""
    import json

    from deflect.aliases import import_aliases
    from deflect.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="deflect-seeded-") as scratch:
        runtime = Runtime(
            settings.with_overrides(kb_dir=str(ROOT / "kb_articles"), index_dir=f"{scratch}/index",
                                    database_url=f"sqlite:///{scratch}/d.db", ideas_file="/dev/null"),  # fmt: skip
            sync=False,
        )
        try:
            path = Path(scratch) / "seeds.jsonl"
            path.write_text("".join(json.dumps({"text": q["text"], "article": q["expected"]}) + "\n" for q in seeds))
            ids = {a["id"] for a in runtime.engine.articles.items}
            added, _, errors = import_aliases(runtime.db, path, ids, settings.max_query_chars)
            assert added == len(seeds) and not errors, errors
            runtime.refresh_aliases(recalibrate=False)
            runtime.recalibrate()
            return evaluate(runtime.engine, queries)
        finally:
            runtime.close()
            runtime.db.dispose()


if __name__ == "__main__":
    main()
