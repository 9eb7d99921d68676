"""How far can the answered/unanswerable split go with this embedding's score features?

A diagnostic, not a tuning: for each banking77 query it computes ten features of deflect's
retrieval (fused score, margin, channel agreement, top-10 passage share, entropy, best raw
similarities), then reports each feature's AUROC and that of logistic regressions fitted by
5-fold cross-validation *on the benchmark's own labels*. Nothing here feeds back into deflect;
if even a classifier that sees the answers cannot pass an AUROC, no calibration of these
features can.

    .venv/bin/python bench/auroc_ceiling.py [--bench ../shared/benchmarks/banking77]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAMES = ["fused", "margin", "dense_agrees", "centroid_agrees", "lexical_agrees", "top10_share", "entropy",
         "best_passage", "best_centroid", "best_dense"]  # fmt: skip


def auroc(scores: np.ndarray, answerable: np.ndarray) -> float:
    pos, neg = scores[answerable], scores[~answerable]
    return float(np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :]))


def features(engine, texts: list[str]) -> np.ndarray:
    from deflect import scoring
    from deflect.catalog import _fused, matvec
    from deflect.lexical import tokenize, unspaced_share

    catalog = engine.articles
    rows = []
    for text, vector in zip(texts, engine.embedder.encode(texts)):
        sims = catalog.passage_sims(vector)
        centroid = matvec(catalog.centroids, vector)
        tokens = tokenize(text)
        lexical = catalog.bm25.scores(tokens)
        fused, _ = _fused(catalog, sims, centroid, lexical, scoring.lexical_weight(unspaced_share(tokens)))
        finite = sims[np.isfinite(sims)]
        dense, _ = scoring.aggregate_passages(catalog.passage_items, sims, len(catalog), float(finite.min()), with_best=False)
        order = np.argsort(-fused)
        top = order[0]
        owners = catalog.passage_items[np.argsort(-sims)[:10]]
        p = np.exp((fused - fused.max()) / 0.02)
        p /= p.sum()
        rows.append([fused[top], fused[top] - fused[order[1]], np.argmax(dense) == top, np.argmax(centroid) == top,
                     np.argmax(lexical) == top, np.mean(owners == owners[0]), -(p * np.log(p + 1e-12)).sum(),
                     sims.max(), centroid.max(), dense.max()])  # fmt: skip
    return np.array(rows, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default=str(ROOT.parent / "shared" / "benchmarks" / "banking77"))
    parser.add_argument("--also-model", default=None,
                        help="Also a second model (e.g. all-mpnet-base-v2): its features alone and both models' together.")  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from deflect.evaluation import build_benchmark_engine
    from deflect.settings import load_settings

    bench = Path(args.bench)
    engine, _ = build_benchmark_engine(bench / "kb", load_settings(config_file="none", env={}))
    rows = [json.loads(line) for line in (bench / "queries.jsonl").open(encoding="utf-8") if line.strip()]
    answerable = np.array([r.get("expected") is not None for r in rows])
    table = features(engine, [r["text"] for r in rows])
    print(f"{len(rows)} queries ({answerable.sum()} answerable)")
    for i, name in enumerate(NAMES):
        print(f"  {name:16} AUROC {auroc(table[:, i], answerable):.4f}")
    probability = engine.calibration.probability(table[:, 0], table[:, 1])
    print(f"  deflect's calibrated probability (what deflect eval ranks by): {auroc(probability, answerable):.4f}")
    for cols in ([0, 1], [0, 1, 5, 6], [0, 1, 2, 3, 4], list(range(len(NAMES)))):
        model = LogisticRegression(max_iter=2000, C=10)
        fitted = cross_val_predict(model, table[:, cols], answerable, cv=5, method="predict_proba")[:, 1]
        print(f"  5-fold CV on the labels, {'+'.join(NAMES[c] for c in cols)}: AUROC {auroc(fitted, answerable):.4f}")
    if args.also_model:
        other_settings = load_settings(config_file="none", env={}, model=args.also_model)
        other, _ = build_benchmark_engine(bench / "kb", other_settings)
        second = features(other, [r["text"] for r in rows])
        print(f"  {args.also_model}: fused AUROC {auroc(second[:, 0], answerable):.4f}")
        for label, x in (
            (f"{args.also_model} fused+margin", second[:, :2]),
            ("both models' fused+margin", np.hstack([table[:, :2], second[:, :2]])),
            ("both models' ten features", np.hstack([table, second])),
        ):
            fitted = cross_val_predict(LogisticRegression(max_iter=3000, C=10), x, answerable, cv=5, method="predict_proba")
            print(f"  5-fold CV on the labels, {label}: AUROC {auroc(fitted[:, 1], answerable):.4f}")


if __name__ == "__main__":
    main()
