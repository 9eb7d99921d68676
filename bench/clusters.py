"""Unanswered-question clustering quality: deflect's candidates against BERTopic, in one run.

    .venv/bin/python bench/clusters.py [--bench ../shared/benchmarks/banking77] [--engine] [--dev] [--seeds 5]

Eval (the issue's quality bar): every query of the benchmark is replayed through deflect.
By default that is the real product over real HTTP: a server on 127.0.0.1 with a fresh
SQLite store, `POST /api/suggest` for each query, `POST /api/events` ticket_created for
each query whose expected article is not in the top 3 (every unanswerable one is), then
`POST /api/clusters/rebuild` and `GET /api/clusters`. `--engine` does the same in-process
with deflect.evaluation.build_benchmark_engine and deflect.clusters (no store, no HTTP).
The candidates are scored against the true `label` of the unanswerable queries:
  ARI     adjusted Rand index over the unanswerable queries; a query in no candidate is
          its own singleton (BERTopic's outliers are treated the same way)
  found   topics with one candidate holding >= half of the topic's queries, and that
          topic being >= half of the candidate.
BERTopic (min_topic_size=5, the bundled model passed as embedding_model, offline) is
clustered on the same pool and embeddings, over several UMAP seeds.

Dev (`--dev`): parameters were chosen on simulated pools built only from the 61 topics
the KB answers (feedback.jsonl plus their answerable queries), never from the 16
unanswered topics: D1 16 topics x 10 + 23 stray queries (like the eval pool), D2 16
topics of 4-25 queries + 23 strays, D3 all 61 topics x 25, D4 8 topics x 5 + 10 strays.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deflect.clusters import ClusterParams, assign, centroid, cluster_vectors, join_threshold  # noqa: E402
from deflect.evaluation import build_benchmark_engine, read_jsonl  # noqa: E402
from deflect.settings import load_settings  # noqa: E402

DEFAULT_BENCH = ROOT.parent / "shared" / "benchmarks" / "banking77"
ADMIN = "bench-token"


def adjusted_rand(truth: list, pred: list) -> float:
    """ARI from the contingency table (same as sklearn's adjusted_rand_score)."""
    from math import comb

    pairs = Counter(zip(truth, pred))
    a = Counter(truth)
    b = Counter(pred)
    n = len(truth)
    index = sum(comb(v, 2) for v in pairs.values())
    sum_a = sum(comb(v, 2) for v in a.values())
    sum_b = sum(comb(v, 2) for v in b.values())
    expected = sum_a * sum_b / comb(n, 2) if n > 1 else 0.0
    top = (sum_a + sum_b) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def score(assignment: list, labels: list[str], scored: list[bool]) -> dict:
    """ARI over the scored queries and topics found; -1 / None means "in no candidate"."""
    pred = [a if a is not None and a != -1 else f"single-{i}" for i, a in enumerate(assignment)]
    truth = [labels[i] for i in range(len(pred)) if scored[i]]
    ari = adjusted_rand(truth, [pred[i] for i in range(len(pred)) if scored[i]])
    size = Counter(pred)
    found = 0
    topics = sorted(set(truth))
    for topic in topics:
        members = [pred[i] for i in range(len(pred)) if scored[i] and labels[i] == topic]
        best, count = Counter(members).most_common(1)[0]
        if str(best).startswith("single-"):
            continue
        if count >= len(members) / 2 and count >= size[best] / 2:
            found += 1
    candidates = len({p for p in pred if not str(p).startswith("single-")})
    unclustered = sum(str(p).startswith("single-") for p in pred)
    return {"ari": round(ari, 3), "found": found, "topics": len(topics), "candidates": candidates, "unclustered": unclustered}


def bertopic_assign(texts: list[str], vectors: np.ndarray, model_path: str, seed: int | None) -> list[int]:
    from bertopic import BERTopic
    from sentence_transformers import SentenceTransformer
    from umap import UMAP

    umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed)
    model = BERTopic(embedding_model=SentenceTransformer(model_path, device="cpu"), min_topic_size=5, umap_model=umap_model)
    topics, _ = model.fit_transform(texts, embeddings=vectors)
    return [int(t) for t in topics]


def pool_via_engine(bench: Path, settings) -> dict:
    engine, _ = build_benchmark_engine(bench / "kb", settings)
    queries = read_jsonl(bench / "queries.jsonl")
    vectors = engine.embedder.encode([q["text"] for q in queries])
    keep = []
    for i, (q, v) in enumerate(zip(queries, vectors)):
        ids = [r.id for r in engine.suggest(q["text"], k=3, types=("article",), query_vector=v).results]
        if q["expected"] is None or q["expected"] not in ids:
            keep.append(i)
    vecs = vectors[keep]
    labels = cluster_vectors(vecs, ClusterParams())
    return {
        "texts": [queries[i]["text"] for i in keep],
        "labels": [queries[i]["label"] for i in keep],
        "scored": [queries[i]["expected"] is None for i in keep],
        "vectors": vecs,
        "deflect": [int(x) for x in labels],
    }


def _replay(base: str, queries: list[dict], only: set[int] | None, http) -> tuple[dict, dict, float, list]:
    """Suggest (k=3) every query (or only some), file a ticket for the misses, rebuild, list."""
    auth = {"Authorization": f"Bearer {ADMIN}"}
    ticketed: dict[str, dict] = {}
    misses: set[int] = set()
    for n, q in enumerate(queries):
        if only is not None and n not in only:
            continue
        r = http.post(f"{base}/api/suggest", json={"query": q["text"], "k": 3, "types": ["article"],
                                                   "session": f"bench-{n}"}, timeout=60).json()
        if q["expected"] is None or q["expected"] not in [x["id"] for x in r["results"]]:
            http.post(f"{base}/api/events", json={"search_id": r["search_id"], "type": "ticket_created"},
                      timeout=60).raise_for_status()
            ticketed[r["search_id"]] = q
            misses.add(n)
        elif not r["answered"]:  # in the product's pool too (DESIGN section 7)
            ticketed[r["search_id"]] = q
    started = time.perf_counter()
    summary = http.post(f"{base}/api/clusters/rebuild", headers=auth, timeout=600).json()
    seconds = time.perf_counter() - started
    listed = http.get(f"{base}/api/clusters", params={"status": "all"}, headers=auth, timeout=60).json()["clusters"]
    return ticketed, {"misses": misses, "summary": summary}, seconds, listed


def pool_via_http(bench: Path, settings) -> dict:
    """The product end to end over HTTP, twice on one index with two fresh stores.

    Run 1 replays only the queries whose expected article is not in the top 3 (the
    issue's pool). Run 2 replays every query, so the product's pool also holds the
    answerable queries deflect left unanswered (answered=false) though their article was
    in the top 3: a harder pool, reported beside it.
    """
    import requests

    from deflect.refresh import make_embedder
    from deflect.runtime import Runtime
    from deflect.web import create_app

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import serve_app

    queries = read_jsonl(bench / "queries.jsonl")
    engine, _ = build_benchmark_engine(bench / "kb", settings)
    vectors = engine.embedder.encode([q["text"] for q in queries])
    misses = set()
    for n, (q, v) in enumerate(zip(queries, vectors)):
        ids = [r.id for r in engine.suggest(q["text"], k=3, types=("article",), query_vector=v).results]
        if q["expected"] is None or q["expected"] not in ids:
            misses.add(n)
    out = {}
    with tempfile.TemporaryDirectory(prefix="deflect-bench-clusters-") as tmp:
        for name, only in (("issue pool", misses), ("product pool", None)):
            s = settings.with_overrides(kb_dir=str(bench / "kb"), index_dir=f"{tmp}/index",
                                        database_url=f"sqlite:///{tmp}/{name[0]}.db", admin_token=ADMIN,
                                        rate_limit_per_client=0, rate_limit_per_session=0)  # one replaying client
            runtime = Runtime(s)
            try:
                with serve_app(create_app(s, runtime)) as base:
                    ticketed, info, seconds, listed = _replay(base, queries, only, requests.Session())
            finally:
                runtime.close()
                runtime.db.dispose()
            member_of = {m["search_id"]: c["id"] for c in listed for m in c["queries"]}
            ids = list(ticketed)
            texts = [ticketed[i]["text"] for i in ids]
            out[name] = {
                "texts": texts,
                "labels": [ticketed[i]["label"] for i in ids],
                "scored": [ticketed[i]["expected"] is None for i in ids],
                "vectors": make_embedder(settings).encode(texts),
                "deflect": [member_of.get(i) for i in ids],
                "rebuild_seconds": seconds,
                "summary": info["summary"],
                "clusters": listed,
            }
    return out


def incremental(vectors: np.ndarray, labels: list[str], floor: float, seed: int = 0, share: float = 0.3) -> dict:
    """Cluster 70% of the pool, let the other 30% join: how many join, and how many join the right group."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(vectors))
    cut = int(len(vectors) * (1 - share))
    base, late = order[:cut], order[cut:]
    groups = cluster_vectors(vectors[base])
    ids = [g for g in range(groups.max() + 1)]
    cents = np.stack([centroid(vectors[base][groups == g]) for g in ids]) if ids else np.zeros((0, vectors.shape[1]))
    thresholds = np.array([join_threshold(vectors[base][groups == g], floor) for g in ids])
    got = assign(vectors[late], cents, thresholds)
    majority = {g: Counter(labels[base[i]] for i in np.flatnonzero(groups == g)).most_common(1)[0][0] for g in ids}
    joined = [(i, g) for i, g in zip(late, got) if g >= 0]
    right = sum(majority[g] == labels[i] for i, g in joined)
    belongs = sum(labels[i] in majority.values() for i in late)
    return {"late": len(late), "joined": len(joined), "right": right, "had_a_home": belongs}


def dev_sets() -> dict[str, list[tuple]]:
    bench = DEFAULT_BENCH
    feedback = read_jsonl(bench / "feedback.jsonl")
    queries = [q for q in read_jsonl(bench / "queries.jsonl") if q["expected"]]
    texts = [f["text"] for f in feedback] + [q["text"] for q in queries]
    labels = [f["article"] for f in feedback] + [q["expected"] for q in queries]
    from deflect.refresh import make_embedder

    vectors = make_embedder(load_settings(config_file="none", env={})).encode(texts)
    by: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by[label].append(i)
    intents = sorted(by)

    def make(seed, topics, sizes, strays):
        rng = np.random.default_rng(seed)
        chosen = list(rng.choice(intents, topics, replace=False)) if topics < len(intents) else intents
        others = [t for t in intents if t not in set(chosen)]
        rows, labs, scored = [], [], []
        for t in chosen:
            n = int(rng.integers(sizes[0], sizes[1] + 1))
            for i in rng.choice(by[t], min(n, len(by[t])), replace=False):
                rows.append(int(i)), labs.append(t), scored.append(True)
        for t in (rng.choice(others, strays, replace=len(others) < strays) if others and strays else []):
            rows.append(int(rng.choice(by[t]))), labs.append("stray:" + t), scored.append(False)
        return [texts[r] for r in rows], vectors[rows], labs, scored

    return {
        "D1 16x10+23": [make(s, 16, (10, 10), 23) for s in range(8)],
        "D2 16x4-25+23": [make(100 + s, 16, (4, 25), 23) for s in range(8)],
        "D3 61x25": [make(0, 61, (25, 25), 0)],
        "D4 8x5+10": [make(200 + s, 8, (5, 5), 10) for s in range(8)],
    }


def report(name: str, pool: dict, settings, seeds: int, bertopic: bool, join_floor: float) -> dict:
    n, scored = len(pool["texts"]), sum(pool["scored"])
    topics = len({label for label, s in zip(pool["labels"], pool["scored"]) if s})
    print(f"\n== {name}: {n} queries ({scored} unanswerable in {topics} topics, {n - scored} answerable)")
    if "rebuild_seconds" in pool:
        print(f"POST /api/clusters/rebuild took {pool['rebuild_seconds']:.1f}s: {pool['summary']}")
    rows = [("deflect", score(pool["deflect"], pool["labels"], pool["scored"]))]
    if bertopic:
        for seed in [None] + list(range(seeds)):
            topics_ = bertopic_assign(pool["texts"], pool["vectors"], settings.model_name, seed)
            rows.append((f"bertopic(min_topic_size=5) seed={seed}", score(topics_, pool["labels"], pool["scored"])))
    print(f"{'method':40s} {'ARI':>6} {'found':>7} {'candidates':>11} {'unclustered':>12}")
    for method, r in rows:
        print(f"{method:40s} {r['ari']:6.3f} {r['found']:>3}/{r['topics']:<3} {r['candidates']:>11} {r['unclustered']:>12}")
    inc = incremental(pool["vectors"], pool["labels"], join_floor)
    print(f"incremental (cluster 70%, 30% arrive later, join floor {join_floor}): {inc['joined']}/{inc['late']} joined, "
          f"{inc['right']} of them the group of their own topic; {inc['had_a_home']} had a group of their topic")
    for c in pool.get("clusters", [])[:5]:
        near = c["nearest"] and f"{c['nearest']['type']} {c['nearest']['id']} {c['nearest']['score']}"
        print(f"  [{c['size']:>2}] {c['label']!r} keywords={c['keywords']} nearest={near}")
    return dict(rows)


def scale(sizes: list[int]) -> None:
    """Time and peak memory of the core clustering on pools of n queries (real embeddings, jittered)."""
    import resource

    feedback = read_jsonl(DEFAULT_BENCH / "feedback.jsonl") + read_jsonl(DEFAULT_BENCH / "queries.jsonl")
    from deflect.refresh import make_embedder

    base = make_embedder(load_settings(config_file="none", env={})).encode([f["text"] for f in feedback])
    rng = np.random.default_rng(0)
    for n in sizes:
        x = base[rng.integers(0, len(base), n)] + rng.normal(0, 0.02, (n, base.shape[1])).astype(np.float32)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        found = cluster_vectors(x)
        took = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"scale n={n}: {took:.1f}s, {found.max() + 1} candidates, peak RSS {peak:.0f} MB (before {before:.0f} MB)",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", type=Path, default=DEFAULT_BENCH)
    parser.add_argument("--engine", action="store_true", help="replay in-process instead of over HTTP")
    parser.add_argument("--dev", action="store_true", help="also report the simulated dev pools")
    parser.add_argument("--seeds", type=int, default=5, help="UMAP seeds for BERTopic")
    parser.add_argument("--no-bertopic", action="store_true")
    parser.add_argument("--join-floor", type=float, default=0.5, help="setting cluster_join_similarity to measure")
    parser.add_argument("--scale", type=int, nargs="*", help="only time the core on pools of these sizes")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.scale:
        scale(args.scale)
        return
    settings = load_settings(config_file="none", env={})
    started = time.perf_counter()
    print(f"benchmark: {args.bench} via {'engine' if args.engine else 'the HTTP API'}")
    pools = {"issue pool": pool_via_engine(args.bench, settings)} if args.engine else pool_via_http(args.bench, settings)
    results = {name: report(name, pool, settings, args.seeds, not args.no_bertopic, args.join_floor)
               for name, pool in pools.items()}
    if args.dev:
        print("\n== dev pools (only topics the KB answers; mean over pools)")
        for name, dev in dev_sets().items():
            t0 = time.perf_counter()
            ours = [score([int(x) for x in cluster_vectors(v)], lab, sc) for _, v, lab, sc in dev]
            took = (time.perf_counter() - t0) / len(dev)
            line = (f"  {name:14s} deflect ARI {np.mean([r['ari'] for r in ours]):.3f} "
                    f"found {np.mean([r['found'] for r in ours]):.1f}/{ours[0]['topics']} ({took:.2f}s)")
            if not args.no_bertopic:
                bt = [score(bertopic_assign(t, v, settings.model_name, 0), lab, sc) for t, v, lab, sc in dev]
                line += f" | bertopic ARI {np.mean([r['ari'] for r in bt]):.3f} found {np.mean([r['found'] for r in bt]):.1f}"
            inc = [incremental(v, lab, args.join_floor) for _, v, lab, _ in dev]
            line += (f" | join {sum(r['joined'] for r in inc)}/{sum(r['late'] for r in inc)}"
                     f" right {sum(r['right'] for r in inc)}")
            print(line, flush=True)
    print(f"elapsed {time.perf_counter() - started:.0f}s")
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
