"""Clustering unanswered queries into idea candidates: arrays in, arrays out (no DB, no web).

Method (chosen by measurement, see bench/clusters.py and bench/README.md): an ensemble of
average-linkage clusterings whose co-association is cut at a majority vote.

1. Vectors are centred on the pool's mean and re-normalised, so the direction every
   query shares ("this is about our product") stops dominating the cosine.
2. Members of the ensemble: average linkage on plain cosine distance, and on
   shared-nearest-neighbour (SNN) similarity at three neighbourhood sizes around
   k0 = n/20 (clipped to 3..12), each cut at four distance thresholds.
3. Two queries belong together when the ensemble puts them together often: average
   linkage on 1 - co-association, cut at 0.5. Groups smaller than `min_size` stay
   unclustered.

Nothing here is told the number of topics; the thresholds are spread over wide ranges
and the vote makes the result insensitive to any single one of them.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .lexical import tokenize
from .redaction import without_placeholders

SNN_THRESHOLDS = (0.6, 0.7, 0.8, 0.9)
COSINE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)
SNN_SPREAD = (0.5, 1.0, 1.5)
CONSENSUS_CUT = 0.5


@dataclass(frozen=True)
class ClusterParams:
    min_size: int = 3  # smallest group that becomes a candidate
    neighbours_per_query: float = 1 / 20  # SNN neighbourhood k0 = n * this, clipped
    min_neighbours: int = 3
    max_neighbours: int = 12


def _normalise(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _average_linkage(distance: np.ndarray):
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    # The matrices here are symmetric by construction; the condensed upper triangle is all
    # linkage needs (float32 until then, to keep a 5,000-query rebuild's memory down).
    condensed = squareform(np.asarray(distance, dtype=np.float32), checks=False)
    np.clip(condensed, 0.0, None, out=condensed)
    return linkage(condensed.astype(np.float64), method="average")


def _cuts(tree, thresholds: Sequence[float]) -> list[np.ndarray]:
    from scipy.cluster.hierarchy import fcluster

    return [fcluster(tree, t, criterion="distance") for t in thresholds]


def shared_neighbours(similarity: np.ndarray, k: int) -> np.ndarray:
    """Share of the (k+1)-nearest-neighbour lists (self included) two points have in common."""
    from scipy import sparse

    n = len(similarity)
    k = min(k, n - 1)
    nearest = np.argpartition(-similarity, k, axis=1)[:, : k + 1]
    rows = np.repeat(np.arange(n), k + 1)
    member = sparse.csr_matrix((np.ones(n * (k + 1), dtype=np.float32), (rows, nearest.ravel())), shape=(n, n))
    shared = (member @ member.T).toarray()
    shared /= k + 1
    return shared


def co_association(vectors: np.ndarray, params: ClusterParams = ClusterParams()) -> np.ndarray:
    """Share of the ensemble's partitions that put each two rows together (n x n float32, 0..1);
    needs at least 2 rows."""
    n = len(vectors)
    x = _normalise(np.asarray(vectors, dtype=np.float64))
    x = _normalise(x - x.mean(0)) if n > 2 else x
    similarity = (x @ x.T).astype(np.float32)
    partitions = _cuts(_average_linkage(1 - similarity), COSINE_THRESHOLDS)
    k0 = int(np.clip(round(n * params.neighbours_per_query), params.min_neighbours, params.max_neighbours))
    for factor in SNN_SPREAD:
        k = max(2, int(round(k0 * factor)))
        if k >= n - 1:
            continue
        partitions += _cuts(_average_linkage(1 - shared_neighbours(similarity, k)), SNN_THRESHOLDS)
    together = np.zeros((n, n), dtype=np.float32)
    for part in partitions:
        together += part[:, None] == part[None, :]
    together /= len(partitions)
    return together


def consensus_groups(together: np.ndarray, rows: Sequence[int], min_size: int) -> list[list[int]]:
    """The majority-vote groups (of at least `min_size`) among `rows`, from the co-association of
    a whole pool: largest first. A subset is cut with the votes the whole pool gave, so leaving
    some rows out (reviewed questions, deflect.candidates) does not change the others' geometry."""
    rows = list(rows)
    if len(rows) < max(2, min_size):
        return []
    whole = rows == list(range(len(together)))  # no n x n copy for the whole pool
    final = _cuts(_average_linkage(1 - (together if whole else together[np.ix_(rows, rows)])), [CONSENSUS_CUT])[0]
    groups = [np.flatnonzero(final == c) for c in np.unique(final)]
    groups = [g for g in groups if len(g) >= min_size]
    groups.sort(key=lambda g: (-len(g), int(g[0])))
    return [[rows[i] for i in g] for g in groups]


def cluster_vectors(vectors: np.ndarray, params: ClusterParams = ClusterParams()) -> np.ndarray:
    """Cluster ids 0..m-1 for each row (largest cluster first), -1 for unclustered rows."""
    n = len(vectors)
    labels = np.full(n, -1, dtype=np.int64)
    if n < max(2, params.min_size):
        return labels
    for cluster_id, members in enumerate(consensus_groups(co_association(vectors, params), range(n), params.min_size)):
        labels[members] = cluster_id
    return labels


def centroid(vectors: np.ndarray) -> np.ndarray:
    """Unit-length mean direction of a group of (normalised) vectors."""
    mean = np.asarray(vectors, dtype=np.float32).mean(0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


# --- labels and keywords ---------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)
# Longer "words" (a pasted URL, hash or error id) are not shown as keywords.
MAX_KEYWORD_CHARS = 30


def _surface_forms(texts: Sequence[str]) -> dict[str, Counter]:
    """token -> Counter of the words it came from, so stems and bigrams read as words."""
    forms: dict[str, Counter] = {}
    for text in texts:
        for word in _WORD.findall(unicodedata.normalize("NFKC", text).lower()):
            for token in tokenize(word):
                forms.setdefault(token, Counter())[word] += 1
    return forms


def keywords(groups: Sequence[Sequence[str]], top: int = 5) -> list[list[str]]:
    """Class-based TF-IDF keywords per group of texts (the group is the document).

    weight(t, g) = tf(t, g) / |g| * log(1 + A / f(t)), with A the average number of tokens
    per group and f(t) the frequency of t over all groups (as in BERTopic's c-TF-IDF).
    Tokens come from deflect.lexical.tokenize, so Korean works through bigrams; each token
    is shown as the word it most often came from.
    """
    groups = [[without_placeholders(text) for text in texts] for texts in groups]
    counts = [Counter(t for text in texts for t in tokenize(text)) for texts in groups]
    total = Counter()
    for c in counts:
        total.update(c)
    average = sum(sum(c.values()) for c in counts) / max(len(counts), 1)
    out = []
    for texts, c in zip(groups, counts):
        size = max(sum(c.values()), 1)
        weights = {t: (n / size) * math.log(1 + average / total[t]) for t, n in c.items() if n >= min(2, len(texts))}
        ranked = sorted(weights, key=lambda t: (-weights[t], t))
        forms = _surface_forms(texts)
        words: list[str] = []
        for token in ranked:
            word = min(forms[token].items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))[0] if token in forms else token
            if len(word) > MAX_KEYWORD_CHARS:
                # An unspaced script's bigram comes from a whole run of text: show the bigram. A
                # pasted URL, hash or error dump says nothing to a reviewer: skip it.
                if len(token) > MAX_KEYWORD_CHARS:
                    continue
                word = token
            if word not in words:
                words.append(word)
            if len(words) == top:
                break
        out.append(words)
    return out


def label_for(texts: Sequence[str], vectors: np.ndarray, words: Sequence[str], max_chars: int = 80) -> str:
    """The member query that best stands for the group: central and full of its keywords."""
    if not texts:
        return ""
    sims = np.asarray(vectors, dtype=np.float32) @ centroid(vectors)
    wanted = set(words[:3])

    def merit(i: int) -> float:
        present = set(_WORD.findall(texts[i].lower())) & wanted
        return float(sims[i]) + 0.05 * len(present) - 0.001 * max(0, len(texts[i]) - max_chars)

    best = " ".join(texts[max(range(len(texts)), key=merit)].split())
    if len(best) > max_chars:
        best = best[:max_chars].rsplit(" ", 1)[0].rstrip(",.;:") + "…"
    return best


# --- stable ids and incremental assignment ---------------------------------------------


def match_previous(
    new_groups: Sequence[set], old_groups: dict[str, set], present: set | None = None, keep_share: float = 0.5
) -> dict[int, str]:
    """Give a new group the id of the old group whose members it mostly keeps.

    An old id passes to the new group holding more than `keep_share` of its members that
    are still `present` (in the pool, clustered or not; default: in some new group); each
    old id goes to at most one new group, biggest overlap first.
    """
    if present is None:
        present = set().union(*new_groups) if new_groups else set()
    pairs = []
    for i, group in enumerate(new_groups):
        for old_id, old in old_groups.items():
            alive = old & present
            shared = len(group & alive)
            if alive and shared > keep_share * len(alive):
                pairs.append((shared, shared / len(group | alive), i, old_id))
    pairs.sort(key=lambda p: (-p[0], -p[1], p[2], p[3]))
    taken_new: set[int] = set()
    taken_old: set[str] = set()
    out: dict[int, str] = {}
    for _, _, i, old_id in pairs:
        if i in taken_new or old_id in taken_old:
            continue
        out[i] = old_id
        taken_new.add(i)
        taken_old.add(old_id)
    return out


def assign(vectors: np.ndarray, centroids: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for each vector, or -1 when below that centroid's threshold."""
    if not len(vectors) or not len(centroids):
        return np.full(len(vectors), -1, dtype=np.int64)
    sims = np.asarray(vectors, dtype=np.float32) @ np.asarray(centroids, dtype=np.float32).T
    best = sims.argmax(1)
    ok = sims[np.arange(len(vectors)), best] >= np.asarray(thresholds)[best] - JOIN_TOLERANCE
    return np.where(ok, best, -1)


# A threshold is a member's own similarity (join_threshold), so the same question asked again sits
# exactly on it; float32 products differ in the last bits with the batch they are computed in.
JOIN_TOLERANCE = 1e-5


# A tight group (three copies of one question) would otherwise ask a newcomer for ~1.0: none
# joins until the next rebuild. Capped at 0.7, joins rose 14% on the dev pools (D1 496 -> 565 of
# 880) with the share joining their own topic's group the same or higher in all four shapes;
# at 0.65 it began to fall (bench/README.md, "How the method was chosen").
JOIN_CEILING = 0.7


def join_threshold(member_vectors: np.ndarray, floor: float) -> float:
    """How close a newcomer must be to join: as close as the group's own loosest member, but no
    more than JOIN_CEILING, and at least `floor` (setting cluster_join_similarity)."""
    sims = np.asarray(member_vectors, dtype=np.float32) @ centroid(member_vectors)
    return max(float(floor), min(float(sims.min()), JOIN_CEILING))
