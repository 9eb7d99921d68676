"""The suggest engine: retrieve passages, fuse channels, aggregate to items, decide "answered".

The engine holds the live versions (article and idea catalogs, calibration) and swaps them
whole; what it searches is deflect.catalog, and the answered-probability it applies is fitted
by deflect.calibration.
"""

from __future__ import annotations

import ctypes
import threading
import unicodedata
from dataclasses import dataclass

import numpy as np

from . import scoring
from .catalog import Catalog
from .ideas import idea_url
from .index_folder import KBIndex
from .lexical import tokenize, unspaced_share

SNIPPET_CHARS = 220
# Most results one search may ask for (`k` of POST /api/suggest).
MAX_K = 20
# Characters that show nothing on their own: controls, format characters (zero-width space and
# joiners, BOM, soft hyphen, bidi overrides) and private-use/unassigned code points.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Cs"})


def is_blank_question(text: str) -> bool:
    """True if the text has no visible character: such a "question" asks nothing, and a learned
    alias of it would match every other near-empty query (" ", "?", "ok")."""
    return not any(not ch.isspace() and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES for ch in text)


@dataclass
class Result:
    type: str
    id: str
    title: str
    url: str
    snippet: str
    score: float
    locale: str | None = None  # an article's language (ideas have none)

    def to_dict(self) -> dict:
        out = {
            "type": self.type,
            "id": self.id,
            "title": self.title,
            "url": self.url,
            "snippet": self.snippet,
            "score": round(float(self.score), 4),
        }
        if self.locale:
            out["locale"] = self.locale  # a widget marks the title and snippet with it (a screen reader's voice)
        return out


@dataclass
class Suggestion:
    results: list[Result]
    answered: bool
    top_probability: float


class Engine:
    """Answers suggest queries from an article index plus the live list of ideas.

    The searchable state is swapped as a whole (reindex, idea change), so a request in
    flight always sees one consistent version.
    """

    def __init__(
        self,
        embedder,
        index: KBIndex,
        ideas: list[dict] | None = None,
        answer_threshold: float = 0.5,
        fallback_locale: str | None = None,
    ):
        self.embedder = embedder
        self.answer_threshold = answer_threshold
        # A requested language the KB has no article in gets this one's (the KB's default):
        # a French visitor of an English help center sees English answers, not none.
        self.fallback_locale = fallback_locale
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
                    "url": idea_url(idea["id"]),
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
        lexical_weight = scoring.lexical_weight(unspaced_share(tokens))
        candidates: list[tuple[str, Catalog, int, float, int]] = []
        for kind, catalog in (("article", articles), ("idea", ideas)):
            if kind not in types or not len(catalog):
                continue
            sims = catalog.passage_sims(query_vector)
            fused, best = catalog.fused_scores(sims, query_vector, catalog.bm25.scores(tokens), lexical_weight)
            keep = np.arange(len(catalog))
            if kind == "article" and locale:
                mask = catalog.locale_mask(locale)
                if not mask.any() and self.fallback_locale:
                    mask = catalog.locale_mask(self.fallback_locale)
                keep = keep[mask]
            # Only each catalog's top max(k, 2) can be shown or set the margins (best, second best).
            top = np.sort(_top_items(fused, keep, max(k, 2)))
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
                Result(kind, item["id"], item["title"], item["url"], _snippet(catalog, i, best_passage), probs[rank],
                       item.get("locale") if kind == "article" else None)
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


def _top_items(scores: np.ndarray, keep: np.ndarray, m: int) -> np.ndarray:
    """The m items of `keep` with the highest scores (ties: the lower index), without sorting
    every item: on a 10,000-article KB a full sort cost more than the rest of the ranking."""
    if len(keep) > 4 * m:  # only items scoring at least the m-th best can be among the m: exact, ties too
        kept = scores[keep]
        keep = keep[kept >= np.partition(kept, len(kept) - m)[len(kept) - m]]
    return keep[np.argsort(-scores[keep], kind="stable")[:m]]


def _aliased(catalog: Catalog, kind: str, rows: list[dict]) -> Catalog:
    base = catalog.base
    return base.with_aliases(kind, rows, base.tokens_by_passage)


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
