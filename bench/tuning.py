"""Experiment (not shipped): fine-tune the model on confirmed answers, then evaluate on banking77.

    .venv/bin/python bench/tuning.py [--bench ../shared/benchmarks/banking77] [--epochs 1] [--cv 5]

Aliases teach retrieval one wording at a time. This asks whether teaching the model itself, by
contrastive fine-tuning on the confirmed answers, also helps with wordings nobody confirmed.
Each confirmed question (feedback.jsonl) is pulled towards another text of its article (another
confirmed question, the title or a line of the article) and away from the other articles in its
batch (in-batch negatives, both directions: sentence-transformers' MultipleNegativesRankingLoss;
every batch has distinct articles), AdamW at 2e-5, batches of 32, seed 0.

--cv N: N-fold cross-validation on feedback.jsonl only (the other folds replayed as helpful
events, the held-out fold's questions evaluated), plain aliases against aliases + tuned model.
Without it: the model is tuned on all of feedback.jsonl and `deflect eval --feedback` is run
with it (evaluate_with_feedback: replay, recalibrate, evaluate on queries.jsonl), beside the
same evaluation with the untuned model. Results: bench/README.md, "Tuning the model".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from deflect.evaluation import evaluate_with_feedback, read_jsonl  # noqa: E402
from deflect.kb_folder import load_kb  # noqa: E402
from deflect.passages import split_passages  # noqa: E402
from deflect.settings import load_settings  # noqa: E402


def article_texts(kb_dir: Path) -> dict[str, list[str]]:
    """Each article's title and the lines of its passages (positives beside confirmed questions)."""
    articles, _ = load_kb(kb_dir)
    texts = {}
    for article in articles:
        own = [article.title]
        for passage in article.passages or split_passages(article.title, article.body):
            for line in passage.text.splitlines():
                line = line.strip().lstrip("-*+#> ").strip()
                if len(line.split()) >= 2 and line not in own:
                    own.append(line)
        texts[article.id] = own
    return texts


def distinct_article_batches(pairs: list[tuple[str, str]], size: int, rng: random.Random) -> list[list[tuple[str, str]]]:
    pending, batches = pairs[:], []
    rng.shuffle(pending)
    while pending:
        batch, seen, rest = [], set(), []
        for pair in pending:
            if pair[1] not in seen and len(batch) < size:
                batch.append(pair)
                seen.add(pair[1])
            else:
                rest.append(pair)
        batches.append(batch)
        pending = rest
    return [b for b in batches if len(b) >= 2]


def tune(base: str, pairs: list[tuple[str, str]], texts: dict[str, list[str]], out: Path, epochs: int, seed: int = 0) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from torch.nn.functional import cross_entropy, normalize

    torch.manual_seed(seed)
    rng = random.Random(seed)
    pools: dict[str, list[str]] = {}
    for text, article in pairs:
        pools.setdefault(article, []).append(text)
    model = SentenceTransformer(base, device="cpu")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    prepare = getattr(model, "preprocess", None) or model.tokenize
    for _ in range(epochs):
        for batch in distinct_article_batches(pairs, 32, rng):
            anchors = [t for t, _ in batch]
            positives = [rng.choice([x for x in pools[a] if x != t] + texts.get(a, []) or [t]) for t, a in batch]
            left = normalize(model(prepare(anchors))["sentence_embedding"], dim=-1)
            right = normalize(model(prepare(positives))["sentence_embedding"], dim=-1)
            logits = left @ right.T * 20.0
            labels = torch.arange(len(batch))
            loss = (cross_entropy(logits, labels) + cross_entropy(logits.T, labels)) / 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    model.save(str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", default=str(ROOT.parent / "shared/benchmarks/banking77"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--cv", type=int, default=0, help="Cross-validate on feedback.jsonl with this many folds.")
    args = parser.parse_args()
    bench = Path(args.bench)
    settings = load_settings()
    base = settings.model_name
    feedback = read_jsonl(bench / "feedback.jsonl")
    texts = article_texts(bench / "kb")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="deflect-tuning-") as scratch:
        if args.cv:
            order = list(range(len(feedback)))
            random.Random(0).shuffle(order)
            totals = {"aliases": [0, 0], "aliases+tuned": [0, 0]}
            for fold in range(args.cv):
                held = set(order[fold :: args.cv])
                train = [feedback[i] for i in order if i not in held]
                queries = [{"text": feedback[i]["text"], "expected": feedback[i]["article"]} for i in sorted(held)]
                tuned = tune(base, [(r["text"], r["article"]) for r in train], texts, Path(scratch) / f"m{fold}", args.epochs)
                for name, model in (("aliases", base), ("aliases+tuned", str(tuned))):
                    report, _ = evaluate_with_feedback(bench / "kb", queries, train, settings.with_overrides(model=model))
                    totals[name][0] += round(report.hit_at_1 * report.answerable)
                    totals[name][1] += report.answerable
                    print(json.dumps({"fold": fold, "method": name, "hit_at_1": round(report.hit_at_1, 4)}), flush=True)
            print(json.dumps({"cv_hit_at_1": {k: round(h / n, 4) for k, (h, n) in totals.items()}, "epochs": args.epochs}))
        else:
            queries = read_jsonl(bench / "queries.jsonl")
            tuned = tune(base, [(r["text"], r["article"]) for r in feedback], texts, Path(scratch) / "tuned", args.epochs)
            for name, model in (("aliases", base), ("aliases+tuned", str(tuned))):
                report, _ = evaluate_with_feedback(bench / "kb", queries, feedback, settings.with_overrides(model=model))
                print(json.dumps({"method": name, "epochs": args.epochs, **report.to_dict()}), flush=True)
    print(json.dumps({"seconds": round(time.time() - started)}))


if __name__ == "__main__":
    main()
