"""Fitting a KB's own answered-probability: leave-one-out on its articles and learned aliases.

The engine only applies the fitted scoring.Calibration; the fit runs when the index or the
aliases change, off the request path. It scores pseudo-queries in blocks, with shortcuts
(no per-query sort, no best passage) that tests/test_catalog.py checks against the engine's
arithmetic.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from . import scoring
from .catalog import Catalog, _fused
from .index_folder import KBIndex
from .lexical import tokenize, unspaced_share


def fit_calibration(
    index: KBIndex,
    embedder,
    max_queries: int = 3000,
    seed: int = 0,
    aliases: list[dict] | None = None,
    target_false_answer: float = scoring.TARGET_FALSE_ANSWER,
    answer_threshold: float = 0.5,
) -> dict:
    """Fit the KB's own answered-probability by leave-one-out on its articles and aliases.

    Pseudo-queries are the KB's own titles and list items, and the learned aliases (real
    customer queries). Answerable examples: the query's own passage is hidden, the rest of
    its article stays (label 1 only if that article still ranks first). Unanswerable
    examples: the query's whole article is hidden, as if nobody had written it. A logistic
    fit on (fused score, margin), with its bias lowered until at most `target_false_answer`
    of the unanswerable examples would be answered (counting only queries their own article
    wins while present), is this KB's calibration; it is refit at every index change and
    when aliases change.
    """
    base = Catalog.for_index(index)
    catalog = base.with_aliases("article", aliases or [], base.tokens_by_passage)
    n_items = len(catalog)
    if n_items < 5:
        return scoring.DEFAULT_CALIBRATION.to_dict()
    rng = np.random.default_rng(seed)
    passages = catalog.passages
    picks = [i for i, p in enumerate(index.passages) if p["kind"] in ("item", "title")]
    per_article = Counter(catalog.passage_items[picks])
    if len(per_article) < n_items / 2:
        picks += [i for i, p in enumerate(index.passages) if p["kind"] == "section"]
    per_item = np.bincount(catalog.passage_items, minlength=n_items)  # an item needs a passage left to hide one
    picks = [i for i in picks if per_item[catalog.passage_items[i]] > 1]
    if len(picks) > max_queries:
        picks = sorted(rng.choice(picks, size=max_queries, replace=False).tolist())
    # Aliases are real queries: each is an example (its vector is the query's), up to max_queries of
    # them (an import of past tickets can bring tens of thousands; the fit's cost grows with each).
    alias_picks = [i for i in range(len(index.passages), len(passages)) if per_item[catalog.passage_items[i]] > 1]
    if len(alias_picks) > max_queries:
        alias_picks = sorted(rng.choice(alias_picks, size=max_queries, replace=False).tolist())
    picks += alias_picks
    section_queries = [i for i in picks if passages[i]["kind"] == "section"]
    query_vectors = catalog.vectors[picks].copy()
    if section_queries:
        # A section passage embeds "Title. text": query with the text alone so the title does not leak.
        texts = [passages[i]["snippet"][:300] for i in section_queries]
        fresh = embedder.encode(texts)
        row_of = {pid: row for row, pid in enumerate(picks)}
        for pid, vec in zip(section_queries, fresh):
            query_vectors[row_of[pid]] = vec
    rows_of = _rows_by_item(catalog.passage_items, n_items)
    features, labels, negatives = [], [], []
    for first in range(0, len(picks), CALIBRATION_BLOCK):
        # One matrix product per block of pseudo-queries, not one pass over every passage vector per query.
        block = query_vectors[first : first + CALIBRATION_BLOCK]
        block_sims = block @ catalog.vectors.T
        block_centroids = block @ catalog.centroids.T
        for offset, pid in enumerate(picks[first : first + CALIBRATION_BLOCK]):
            own = int(catalog.passage_items[pid])
            text = passages[pid]["snippet"] if passages[pid]["kind"] == "section" else passages[pid]["text"]
            tokens = tokenize(text)
            weight = scoring.lexical_weight(unspaced_share(tokens))
            lexical = catalog.bm25.scores(tokens).astype(np.float64)
            qv = block[offset]
            row_sims = block_sims[offset].astype(np.float64)
            centroid = block_centroids[offset]
            own_rows = rows_of[own]
            # Answerable: hide this passage only.
            sims = row_sims.copy()
            sims[pid] = -np.inf
            lex = lexical.copy()
            lex[own] = catalog.bm25.score_without(tokens, own, Counter(catalog.tokens_by_passage[pid]))
            cent = centroid.copy()
            rest = catalog.vectors[own_rows[own_rows != pid]]
            cent[own] = float(qv @ (rest.sum(0) / max(np.linalg.norm(rest.sum(0)), 1e-12)))
            fused = _fused_scores(catalog, sims, cent, lex, weight)
            top = int(np.argmax(fused))
            features.append((fused[top], _top_margin(fused)))
            labels.append(1 if top == own else 0)
            # Unanswerable: hide the whole article.
            sims = row_sims
            sims[own_rows] = -np.inf
            fused = _fused_scores(catalog, sims, centroid, lexical, weight)
            fused[own] = -np.inf
            top = int(np.argmax(fused))
            features.append((fused[top], _top_margin(fused[np.isfinite(fused)])))
            labels.append(0)
            if labels[-2] == 1:
                # Only a pseudo-query its own article wins is a clean "nobody wrote this" example. In
                # prose KBs the others are mostly cross-references ("Billing history: download
                # invoices...") that the article they point to does answer; capping on them made
                # deflect say answered=false to half the questions it answered right.
                negatives.append(features[-1])
    weights = scoring.fit_logistic(np.array(features), np.array(labels))
    weights = scoring.cap_false_answers(weights, np.array(negatives), target_false_answer, answer_threshold)
    return scoring.Calibration(float(weights[0]), float(weights[1]), float(weights[2])).to_dict() | {
        "pseudo_queries": len(picks),
        "scoring": scoring.SCORING_VERSION,
        "aliases": catalog.alias_count,
        "target_false_answer": target_false_answer,
    }


# Pseudo-queries scored per matrix product in fit_calibration (128 x 40,000 passages = 20 MB).
CALIBRATION_BLOCK = 128


def _rows_by_item(passage_items: np.ndarray, n_items: int) -> list[np.ndarray]:
    """Each item's passage rows, ascending."""
    order = np.argsort(passage_items, kind="stable")
    bounds = np.searchsorted(passage_items[order], np.arange(n_items + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n_items)]


def _top_margin(scores: np.ndarray) -> float:
    """scoring.margins(scores) at the best item: its lead over the second best, without sorting everything."""
    if len(scores) < 2:
        return 0.5
    second, best = np.partition(scores, len(scores) - 2)[-2:]
    return best - second


def _fused_scores(
    catalog: Catalog, sims: np.ndarray, centroid: np.ndarray, lexical: np.ndarray, lexical_weight: float
) -> np.ndarray:
    """_fused without each item's best passage (which the calibration does not need)."""
    return _fused(catalog, sims, centroid, lexical, lexical_weight, with_best=False)[0]
