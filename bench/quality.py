"""Retrieval quality of deflect against the baselines named in the core issue, in one run.

    .venv/bin/python bench/quality.py [--bench ../shared/benchmarks/banking77] [--sample]

Baselines (all on the same KB and queries):
  bm25            plain BM25 (rank_bm25, word tokens) over whole articles
  article-vector  one dense vector per article (title + body)
  best-passage    dense, article scored by its best passage (deflect's passages, max)
  deflect         the engine: passages + centroid + lexical channel, calibrated score
For every method: hit@1, hit@3, MRR@10, AUROC (answerable vs unanswerable by top score)
and the oracle share answered correctly at a false-answer rate <= 0.10 (threshold picked
afterwards on the answers). deflect's own `answered` decision is reported as is.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deflect.evaluation import build_benchmark_engine, evaluate, read_jsonl  # noqa: E402
from deflect.kb_folder import load_kb  # noqa: E402
from deflect.passages import plain_text  # noqa: E402
from deflect.scoring import auroc  # noqa: E402
from deflect.settings import load_settings  # noqa: E402


def ranked_metrics(score_matrix: np.ndarray, article_ids: list[str], queries: list[dict]) -> dict:
    """Metrics for a (queries x articles) score matrix."""
    index = {a: i for i, a in enumerate(article_ids)}
    top_scores = score_matrix.max(1)
    order = np.argsort(-score_matrix, axis=1)
    hit1 = hit3 = rr = 0.0
    pos, neg, correct_top = [], [], []
    for qi, q in enumerate(queries):
        if q["expected"] is None:
            neg.append(top_scores[qi])
            continue
        pos.append(top_scores[qi])
        ranks = list(order[qi, :10])
        target = index[q["expected"]]
        hit1 += ranks[0] == target
        hit3 += target in ranks[:3]
        rr += 1 / (ranks.index(target) + 1) if target in ranks else 0
        correct_top.append(ranks[0] == target)
    n = len(pos)
    return {
        "hit@1": hit1 / n,
        "hit@3": hit3 / n,
        "MRR@10": rr / n,
        "AUROC": auroc(np.array(pos), np.array(neg)),
        "oracle@FAR.10": oracle(np.array(pos), np.array(neg), np.array(correct_top)),
    }


def oracle(pos: np.ndarray, neg: np.ndarray, correct: np.ndarray, far: float = 0.10) -> float:
    """Best share of answerable queries answered correctly with at most `far` false answers."""
    if len(neg) == 0:
        return float("nan")
    allowed = int(np.floor(far * len(neg)))
    threshold = np.sort(neg)[::-1][allowed] if allowed < len(neg) else -np.inf
    return float(((pos > threshold) & correct).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", default=str(ROOT.parent / "shared/benchmarks/banking77"), help="benchmark folder (kb/ + queries.jsonl)")
    parser.add_argument("--kb", help="KB folder (default: <bench>/kb)")
    parser.add_argument("--queries", help="queries file (default: <bench>/queries.jsonl)")
    args = parser.parse_args()
    kb = args.kb or f"{args.bench}/kb"
    queries = read_jsonl(args.queries or f"{args.bench}/queries.jsonl")
    settings = load_settings()
    started = time.time()
    engine, _ = build_benchmark_engine(kb, settings)
    embedder = engine.embedder
    articles, _ = load_kb(kb)
    ids = [a.id for a in articles]
    texts = [q["text"] for q in queries]
    query_vectors = embedder.encode(texts)

    rows = {}
    from rank_bm25 import BM25Okapi

    word = re.compile(r"\w+")
    bm25 = BM25Okapi([word.findall(f"{a.title} {plain_text(a.body)}".lower()) for a in articles])
    rows["bm25"] = ranked_metrics(np.stack([bm25.get_scores(word.findall(t.lower())) for t in texts]), ids, queries)

    article_vectors = embedder.encode([f"{a.title}. {plain_text(a.body)}" for a in articles])
    rows["article-vector"] = ranked_metrics(query_vectors @ article_vectors.T, ids, queries)

    catalog = engine.articles
    sims = query_vectors @ catalog.vectors.T
    best = np.full((len(queries), len(ids)), -1.0)
    for ai in range(len(ids)):
        best[:, ai] = sims[:, catalog.passage_items == ai].max(1)
    rows["best-passage"] = ranked_metrics(best, [a["id"] for a in catalog.items], queries)

    report = evaluate(engine, queries)
    probs = np.zeros((len(queries), len(catalog.items)))
    for qi, (text, vec) in enumerate(zip(texts, query_vectors)):
        for r in engine.suggest(text, k=len(catalog.items), types=("article",), query_vector=vec).results:
            probs[qi, [a["id"] for a in catalog.items].index(r.id)] = r.score
    rows["deflect"] = ranked_metrics(probs, [a["id"] for a in catalog.items], queries)

    print(f"benchmark: {kb} ({report.answerable} answerable, {report.unanswerable} unanswerable queries)")
    print(f"{'method':<16}" + "".join(f"{k:>15}" for k in next(iter(rows.values()))))
    for name, metrics in rows.items():
        print(f"{name:<16}" + "".join(f"{v:>15.3f}" for v in metrics.values()))
    print(
        f"deflect answered decision: correct-answered {report.answered_correct_rate:.3f} of answerable, "
        f"false-answer rate {report.false_answer_rate:.3f} on unanswerable "
        f"(calibration: {json.dumps(engine.index.manifest.get('calibration'))})"
    )
    print(f"elapsed {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
