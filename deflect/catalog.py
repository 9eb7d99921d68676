"""A searchable collection (the KB's articles, or the ideas) and how its channels fuse per item.

A Catalog holds passage vectors, item centroids and BM25 postings; `_fused` turns one query's
dense, centroid and lexical evidence into a score per item. The engine (deflect.suggest) and
the calibration fit (deflect.calibration) both score through it, so they share one arithmetic.
A catalog is built once per index version, reusing the previous version's tokens, and copied
cheaply with learned aliases as extra passages.
"""

from __future__ import annotations

import numpy as np

from . import scoring
from .index_folder import KBIndex
from .lexical import BM25, tokenize
from .locales import locale_matches

DENSE_CANDIDATES = 512  # passages fetched from faiss per query before aggregation


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
        self._locales: tuple[list[str], np.ndarray] | None = None  # distinct item locales, each item's code
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
            return matvec(self.vectors, query_vector.astype(np.float32)).astype(np.float64)
        faiss = _faiss()
        # faiss's exact inner-product search (what IndexFlatIP.search runs) straight on the vectors
        # the index already holds: an IndexFlatIP would keep a second copy of them.
        k = min(len(self.passages), DENSE_CANDIDATES)
        query = query_vector.reshape(1, -1).astype(np.float32)
        scores, ids = faiss.knn(query, self.vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        keep = ids[0] >= 0
        sims[ids[0][keep]] = scores[0][keep]
        return sims

    def fused_scores(
        self, sims: np.ndarray, query_vector: np.ndarray, lexical: np.ndarray, lexical_weight: float
    ) -> tuple[np.ndarray, np.ndarray]:
        centroid = matvec(self.centroids, query_vector.astype(np.float32))
        return _fused(self, sims, centroid, lexical, lexical_weight)

    def locale_mask(self, wanted: str) -> np.ndarray:
        """Which items are in the `wanted` language (locale_matches), from the few distinct locales."""
        if self._locales is None:
            names, codes = np.unique(np.array([str(item.get("locale", "")) for item in self.items]), return_inverse=True)
            self._locales = (names.tolist(), codes)
        names, codes = self._locales
        return np.array([locale_matches(name, wanted) for name in names], dtype=bool)[codes]

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


# Above this many matrix entries OpenBLAS splits a matrix-vector product over threads (here between
# 1,000 and 1,200 rows of 384): 1.1-1.6 ms of CPU instead of ~40 us, as the threads hand off.
SINGLE_THREAD_BLAS_ENTRIES = 1000 * 384


def matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """matrix @ vector on the calling thread. One query's product is too small to share between
    cores, and concurrent requests already keep every core busy: OpenBLAS for small matrices
    (fastest), np.einsum's single-threaded loop for large ones (3-10x less CPU than OpenBLAS's
    threads on 2,000-10,000 rows)."""
    if matrix.size <= SINGLE_THREAD_BLAS_ENTRIES:
        return matrix @ vector
    return np.einsum("ij,j->i", matrix, vector)


def _faiss():
    """faiss, on one OpenMP thread for the calling thread: one query's top-K over 40,000 passages
    took 23 ms of CPU on two threads against 2.7 ms on one (bench/README.md, "Speed"). OpenMP keeps
    the thread count per calling thread, so each request thread sets it (a cheap call)."""
    import faiss

    faiss.omp_set_num_threads(1)
    return faiss


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


def _fused(
    catalog: Catalog,
    sims: np.ndarray,
    centroid: np.ndarray,
    lexical: np.ndarray,
    lexical_weight: float,
    with_best: bool = True,
):
    """Aggregate passage similarities per item, then fuse with the centroid and lexical channels.

    `lexical_weight` has no default: it depends on the query's script (scoring.lexical_weight),
    and a caller that forgot it would score Korean queries with the English weight.
    """
    finite = sims[np.isfinite(sims)]
    floor = float(finite.min()) if len(finite) else 0.0
    dense, best = scoring.aggregate_passages(catalog.passage_items, sims, len(catalog), floor, with_best=with_best)
    return scoring.fuse(dense, centroid, lexical, lexical_weight), best
