"""The suggest engine: retrieve passages, fuse channels, aggregate to items, decide "answered"."""

from __future__ import annotations

import ctypes
import threading
from collections import Counter
from dataclasses import dataclass

import numpy as np

from . import scoring
from .index import KBIndex
from .lexical import BM25, tokenize

DENSE_CANDIDATES = 512  # passages fetched from faiss per query before aggregation
SNIPPET_CHARS = 220


@dataclass
class Result:
    type: str
    id: str
    title: str
    url: str
    snippet: str
    score: float

    def to_dict(self) -> dict:
        return {
            "type": self.type,
            "id": self.id,
            "title": self.title,
            "url": self.url,
            "snippet": self.snippet,
            "score": round(float(self.score), 4),
        }


@dataclass
class Suggestion:
    results: list[Result]
    answered: bool
    top_probability: float


class Catalog:
    """One searchable collection (articles or ideas): passage vectors, centroids, BM25."""

    def __init__(
        self,
        items: list[dict],
        passages: list[dict],
        vectors: np.ndarray,
        tokens: list[list[str]] | None = None,
        known_tokens: dict[str, list[str]] | None = None,
    ):
        """`tokens` are the passages' tokens if known; else each passage is tokenised, unless
        `known_tokens` (text -> tokens, e.g. the previous version's) has its text."""
        self.items = items
        self.passages = passages
        self.passage_items = np.fromiter((p["article"] for p in passages), dtype=np.int64, count=len(passages))
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = self.vectors.shape[1] if self.vectors.ndim == 2 and self.vectors.shape[1] else 384
        centroids = _sum_by_item(self.vectors, self.passage_items, len(items), dim)
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        self.centroids = centroids / np.maximum(norms, 1e-12)
        self.position = {item["id"]: i for i, item in enumerate(items)}
        # Each item's first section passage (-1: none), the snippet when the best match is a title or item.
        self.first_section = np.full(len(items), -1, dtype=np.int64)
        is_section = np.fromiter((p["kind"] == "section" for p in passages), dtype=bool, count=len(passages))
        sections = np.flatnonzero(is_section)
        owners, first = np.unique(self.passage_items[sections], return_index=True)
        self.first_section[owners] = sections[first]
        self.base_catalog: Catalog | None = None  # set on a copy that adds learned aliases
        if tokens is None:
            known_tokens = known_tokens or {}
            tokens = [known_tokens.get(p["text"]) or tokenize(p["text"]) for p in passages]
        self.tokens_by_passage = tokens
        docs: list[list[str]] = [[] for _ in items]
        for item, toks in zip(self.passage_items.tolist(), self.tokens_by_passage):
            docs[item].extend(toks)
        self.bm25 = BM25(docs)

    @classmethod
    def for_index(cls, index: KBIndex, previous: Catalog | None = None) -> Catalog:
        """The article catalog of an index version, built once per version (kept in index.derived).

        `previous` is the catalog being replaced: passages whose text it already has reuse its
        tokens, so a re-index after a small edit does not tokenise the whole KB again.
        """
        catalog = index.derived.get("catalog")
        if catalog is None:
            known = None
            if previous is not None:
                base = previous.base
                known = dict(zip((p["text"] for p in base.passages), base.tokens_by_passage))
            catalog = index.derived["catalog"] = cls(index.articles, index.passages, index.vectors, known_tokens=known)
        return catalog

    def __len__(self) -> int:
        return len(self.items)

    def passage_sims(self, query_vector: np.ndarray) -> np.ndarray:
        """Similarity of the query to passages: faiss top-K, the rest -inf."""
        sims = np.full(len(self.passages), -np.inf, dtype=np.float64)
        if not len(self.passages):
            return sims
        if len(self.passages) <= DENSE_CANDIDATES:  # every passage is a candidate: no top-K search needed
            return (self.vectors @ query_vector.astype(np.float32)).astype(np.float64)
        import faiss

        # faiss's exact inner-product search (what IndexFlatIP.search runs) straight on the vectors
        # the index already holds: an IndexFlatIP would keep a second copy of them.
        k = min(len(self.passages), DENSE_CANDIDATES)
        query = query_vector.reshape(1, -1).astype(np.float32)
        scores, ids = faiss.knn(query, self.vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        keep = ids[0] >= 0
        sims[ids[0][keep]] = scores[0][keep]
        return sims

    def fused_scores(
        self, sims: np.ndarray, query_vector: np.ndarray, lexical: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return _fused(self, sims, self.centroids @ query_vector, lexical)

    def with_aliases(self, kind: str, rows: list[dict], tokens: list[list[str]]) -> Catalog:
        """This catalog plus learned aliases of its items as extra passages (kind "alias").

        An alias is a real customer query confirmed to be answered by the item, so it joins
        the item's passages in every channel (dense, centroid, lexical). `tokens` are this
        catalog's own passage tokens, cached so that adding an alias costs milliseconds.
        """
        base = self.base
        mine = [r for r in rows if r["item_type"] == kind and r["item_id"] in base.position]
        mine = [r for r in mine if len(r["vector"]) == base.vectors.shape[1]]
        if not mine:
            return base
        extra = [
            {"article": base.position[r["item_id"]], "kind": ALIAS_KIND, "text": r["query"], "snippet": ""} for r in mine
        ]
        vectors = np.vstack([base.vectors, np.stack([r["vector"] for r in mine]).astype(np.float32)])
        catalog = Catalog(base.items, base.passages + extra, vectors, tokens + [tokenize(p["text"]) for p in extra])
        catalog.base_catalog = base
        return catalog

    @property
    def base(self) -> Catalog:
        """The catalog without learned aliases."""
        return self.base_catalog or self

    @property
    def alias_count(self) -> int:
        return len(self.passages) - len(self.base.passages)


ALIAS_KIND = "alias"


class Engine:
    """Answers suggest queries from an article index plus the live list of ideas.

    The searchable state is swapped as a whole (reindex, idea change), so a request in
    flight always sees one consistent version.
    """

    def __init__(self, embedder, index: KBIndex, ideas: list[dict] | None = None, answer_threshold: float = 0.5):
        self.embedder = embedder
        self.answer_threshold = answer_threshold
        self._lock = threading.Lock()
        self._idea_vectors: dict[str, np.ndarray] = {}
        self._alias_rows: list[dict] = []
        self.index = index
        self.articles = Catalog.for_index(index)
        self.calibration = scoring.Calibration.from_dict(index.manifest.get("calibration"))
        self.ideas = self._idea_catalog(ideas or [])

    @property
    def dim(self) -> int:
        return self.index.vectors.shape[1] if self.index.vectors.ndim == 2 else 384

    @property
    def version(self) -> str:
        return self.index.version

    @property
    def alias_count(self) -> int:
        return self.articles.alias_count + self.ideas.alias_count

    @property
    def alias_rows(self) -> list[dict]:
        return self._alias_rows

    def set_calibration(self, calibration: dict) -> None:
        with self._lock:
            self.calibration = scoring.Calibration.from_dict(calibration)

    def set_aliases(self, rows: list[dict]) -> None:
        """Replace the learned aliases ({item_type, item_id, query, vector} rows); used at once."""
        with self._lock:
            articles, ideas = self.articles.base, self.ideas.base
        articles = _aliased(articles, "article", rows)
        ideas = _aliased(ideas, "idea", rows)
        with self._lock:
            if self.articles.base is articles.base and self.ideas.base is ideas.base:
                self.articles, self.ideas, self._alias_rows = articles, ideas, rows
                return
        self.set_aliases(rows)  # the index or ideas changed meanwhile: build again on the new ones

    def replace_index(self, index: KBIndex, calibration: dict | None = None) -> None:
        articles = _aliased(Catalog.for_index(index, self.articles), "article", self._alias_rows)
        calibration = scoring.Calibration.from_dict(calibration or index.manifest.get("calibration"))
        with self._lock:
            self.index, self.articles, self.calibration = index, articles, calibration
        del articles
        _return_free_memory()  # the previous version's arrays were just released

    def set_ideas(self, ideas: list[dict]) -> None:
        catalog = _aliased(self._idea_catalog(ideas), "idea", self._alias_rows)
        with self._lock:
            self.ideas = catalog

    def _idea_catalog(self, ideas: list[dict]) -> Catalog:
        """Ideas are short: their title and title+description are the passages."""
        items, passages = [], []
        for i, idea in enumerate(ideas):
            items.append(
                {
                    "id": str(idea["id"]),
                    "title": idea["title"],
                    "url": idea.get("url") or f"/ideas#idea-{idea['id']}",
                    "snippet": (idea.get("description") or "")[:SNIPPET_CHARS],
                }
            )
            passages.append({"article": i, "kind": "title", "text": idea["title"], "snippet": ""})
            if idea.get("description"):
                text = f"{idea['title']}. {idea['description']}"
                passages.append({"article": i, "kind": "section", "text": text, "snippet": idea["description"]})
        missing = [p["text"] for p in passages if p["text"] not in self._idea_vectors]
        if missing:
            for text, vector in zip(missing, self.embedder.encode(missing)):
                self._idea_vectors[text] = vector
        dim = self.dim
        vectors = (
            np.stack([self._idea_vectors[p["text"]] for p in passages])
            if passages
            else np.zeros((0, dim), dtype=np.float32)
        )
        return Catalog(items, passages, vectors)

    def suggest(
        self,
        query: str,
        k: int = 5,
        types: tuple[str, ...] = ("article", "idea"),
        locale: str | None = None,
        query_vector: np.ndarray | None = None,
    ) -> Suggestion:
        with self._lock:
            articles, ideas, calibration = self.articles, self.ideas, self.calibration
        if query_vector is None:
            query_vector = self.embedder.encode([query])[0]
        tokens = tokenize(query)
        candidates: list[tuple[str, Catalog, int, float, int]] = []
        for kind, catalog in (("article", articles), ("idea", ideas)):
            if kind not in types or not len(catalog):
                continue
            sims = catalog.passage_sims(query_vector)
            fused, best = catalog.fused_scores(sims, query_vector, catalog.bm25.scores(tokens))
            keep = np.arange(len(catalog))
            if kind == "article" and locale:
                keep = keep[np.array([_locale_matches(item["locale"], locale) for item in catalog.items], dtype=bool)]
            # Only each catalog's top max(k, 2) can be shown or set the margins (best, second best).
            top = np.sort(keep[np.argsort(-fused[keep], kind="stable")[: max(k, 2)]])
            candidates.extend((kind, catalog, int(i), float(fused[i]), int(best[i])) for i in top)
        if not candidates:
            return Suggestion([], False, 0.0)
        fused_all = np.array([c[3] for c in candidates])
        probs = calibration.probability(fused_all, scoring.margins(fused_all))
        order = np.argsort(-fused_all, kind="stable")[:k]
        results = []
        for rank in order:
            kind, catalog, i, _, best_passage = candidates[rank]
            item = catalog.items[i]
            results.append(
                Result(kind, item["id"], item["title"], item["url"], _snippet(catalog, i, best_passage), probs[rank])
            )
        top = float(probs[order[0]])
        return Suggestion(results, top >= self.answer_threshold, top)


def _return_free_memory() -> None:
    """Hand freed heap pages back to the OS.

    glibc keeps freed memory in the arena of the thread that allocated it, and a server runs
    each re-index in whichever worker thread takes the request: without this, every re-index
    of a large KB would leave the process larger by its whole working set.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _aliased(catalog: Catalog, kind: str, rows: list[dict]) -> Catalog:
    base = catalog.base
    return base.with_aliases(kind, rows, base.tokens_by_passage)


def _locale_matches(article_locale: str, wanted: str) -> bool:
    """Same tag, or same language: ko matches ko-KR; en_US (POSIX style) counts as en-US."""
    a, w = article_locale.lower().replace("_", "-"), wanted.lower().replace("_", "-")
    return a == w or a.split("-")[0] == w.split("-")[0]


def _snippet(catalog: Catalog, item: int, best_passage: int) -> str:
    """The best-matching section's text; title-only or list-item matches fall back to the first section."""
    passage = catalog.passages[best_passage] if 0 <= best_passage < len(catalog.passages) else None
    if passage is None or passage["kind"] != "section":
        first = catalog.first_section[item]
        passage = catalog.passages[first] if first >= 0 else passage
    text = (passage or {}).get("snippet") or catalog.items[item].get("snippet", "")
    if len(text) > SNIPPET_CHARS:
        text = text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "…"
    return text


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
    # Aliases are real queries: every one of them is an example (its vector is the query's).
    picks += [i for i in range(len(index.passages), len(passages)) if per_item[catalog.passage_items[i]] > 1]
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
            fused = _fused_scores(catalog, sims, cent, lex)
            top = int(np.argmax(fused))
            features.append((fused[top], _top_margin(fused)))
            labels.append(1 if top == own else 0)
            # Unanswerable: hide the whole article.
            sims = row_sims
            sims[own_rows] = -np.inf
            fused = _fused_scores(catalog, sims, centroid, lexical)
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
        "aliases": catalog.alias_count,
        "target_false_answer": target_false_answer,
    }


def _sum_by_item(vectors: np.ndarray, passage_items: np.ndarray, n_items: int, dim: int) -> np.ndarray:
    """Each item's sum of passage vectors, added in passage order (exactly np.add.at's result, faster).

    Round k adds every item's k-th passage at once, so there are as many rounds as the
    largest item has passages, each a vectorised gather.
    """
    sums = np.zeros((n_items, dim), dtype=np.float32)
    if not len(passage_items):
        return sums
    order = np.argsort(passage_items, kind="stable")
    starts = np.searchsorted(passage_items[order], np.arange(n_items))
    counts = np.bincount(passage_items, minlength=n_items)
    for k in range(int(counts.max())):
        has = np.flatnonzero(counts > k)
        sums[has] += vectors[order[starts[has] + k]]
    return sums


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


def _fused_scores(catalog: Catalog, sims: np.ndarray, centroid: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    """_fused without each item's best passage (which the calibration does not need)."""
    return _fused(catalog, sims, centroid, lexical, with_best=False)[0]


def _fused(catalog: Catalog, sims: np.ndarray, centroid: np.ndarray, lexical: np.ndarray, with_best: bool = True):
    """Aggregate passage similarities per item, then fuse with the centroid and lexical channels."""
    finite = sims[np.isfinite(sims)]
    floor = float(finite.min()) if len(finite) else 0.0
    dense, best = scoring.aggregate_passages(catalog.passage_items, sims, len(catalog), floor, with_best=with_best)
    return scoring.fuse(dense, centroid, lexical), best
