"""Each retrieval channel alone, and the fused score by lexical weight, on one question set.

    .venv/bin/python bench/channels.py --kb kb_articles --queries bench/data/sample_kb_dev_ko.jsonl

How the lexical weight for unspaced scripts (scoring.UNSPACED_LEXICAL_WEIGHT) was chosen: on a
development set, never on the tests' questions. Ranks articles with the engine's own arrays
(passage log-sum-exp, centroids, BM25) and the fused sum dense + 0.3 x centroid + w x lexical
(ranking only: the rescaling in scoring.fuse does not change the order within a query).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deflect import scoring  # noqa: E402
from deflect.evaluation import build_benchmark_engine, read_jsonl  # noqa: E402
from deflect.lexical import tokenize  # noqa: E402
from deflect.settings import load_settings  # noqa: E402

WEIGHTS = (0.15, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kb", default=str(ROOT / "kb_articles"), help="KB folder")
    parser.add_argument("--queries", default=str(ROOT / "bench/data/sample_kb_dev_ko.jsonl"), help="question set (JSONL: text, expected)")
    args = parser.parse_args()
    questions = [q for q in read_jsonl(args.queries) if q.get("expected")]
    engine, _ = build_benchmark_engine(args.kb, load_settings())
    catalog = engine.articles
    ids = [item["id"] for item in catalog.items]
    expected = np.array([ids.index(q["expected"]) for q in questions])
    channels = []
    for question, vector in zip(questions, engine.embedder.encode([q["text"] for q in questions])):
        sims = catalog.passage_sims(vector)
        floor = float(sims[np.isfinite(sims)].min())
        dense, _ = scoring.aggregate_passages(catalog.passage_items, sims, len(catalog), floor, with_best=False)
        channels.append((dense, catalog.centroids @ vector, catalog.bm25.scores(tokenize(question["text"]))))
    dense, centroid, lexical = (np.stack(c) for c in zip(*channels))

    def hit_at_1(scores: np.ndarray) -> float:
        return float((scores.argmax(1) == expected).mean())

    print(f"{args.queries}: {len(questions)} answerable questions, {len(ids)} articles")
    print(f"alone: dense {hit_at_1(dense):.3f}  centroid {hit_at_1(centroid):.3f}  lexical {hit_at_1(lexical):.3f}")
    for weight in WEIGHTS:
        fused = dense + scoring.CENTROID_WEIGHT * centroid + weight * lexical
        top3 = np.argsort(-fused, axis=1)[:, :3]
        hit3 = float((top3 == expected[:, None]).any(1).mean())
        print(f"fused, lexical weight {weight:>5}: hit@1 {hit_at_1(fused):.3f}  hit@3 {hit3:.3f}")


if __name__ == "__main__":
    main()
