"""Lexical (BM25) channel with language-agnostic tokenisation.

Latin-script text is split into words; scripts written without spaces between words
(Hangul, Han, Kana, Thai...) become overlapping character bigrams, so "비밀번호를" still
matches "비밀번호" without a language-specific analyser.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain

import numpy as np

_STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for from with about into over under is are was "
    "were be been being am do does did doing have has had having i me my mine we us our you "
    "your he him his she her it its they them their this that these those there here what "
    "which who whom how why when where can could would should will shall may might must not "
    "no so than too very just also any some all each get got please hi hello thanks thank".split()
)


def _is_bigram_script(char: str) -> bool:
    code = ord(char)
    return (
        0xAC00 <= code <= 0xD7AF  # Hangul syllables
        or 0x1100 <= code <= 0x11FF  # Hangul jamo
        or 0x3040 <= code <= 0x30FF  # Hiragana, Katakana
        or 0x3400 <= code <= 0x9FFF  # CJK ideographs
        or 0x0E00 <= code <= 0x0E7F  # Thai
    )


def _is_word_char(char: str) -> bool:
    """Letters, digits and combining marks (Thai vowels, Devanagari matras) all build words."""
    return unicodedata.category(char)[0] in "LNM"


# In ASCII text the word characters are exactly the letters and digits, and NFKC changes nothing.
_ASCII_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lowercased words for spaced scripts, character bigrams for unspaced ones."""
    if text.isascii():  # the common case, without the per-character loop (same tokens)
        return [token for word in _ASCII_WORD.findall(text.lower()) for token in _word_token(word)]
    return _tokenize_chars(text)


def _tokenize_chars(text: str) -> list[str]:
    """tokenize for any script, one character at a time."""
    tokens: list[str] = []
    word = ""
    run = ""
    for char in unicodedata.normalize("NFKC", text).lower() + " ":
        if _is_bigram_script(char):
            if word:
                tokens.extend(_word_token(word))
                word = ""
            run += char
            continue
        if run:
            tokens.extend(run[i : i + 2] for i in range(max(1, len(run) - 1)))
            run = ""
        if _is_word_char(char):
            word += char
        elif word:
            tokens.extend(_word_token(word))
            word = ""
    return tokens


def unspaced_share(tokens: Sequence[str]) -> float:
    """Share of tokenize()'s tokens that are bigrams of a script written without spaces."""
    if not tokens:
        return 0.0
    return sum(_is_bigram_script(token[0]) for token in tokens) / len(tokens)


def _word_token(word: str) -> list[str]:
    if word in _STOPWORDS or (len(word) < 2 and not word.isdigit()):
        return []
    return [_light_stem(word)]


def _light_stem(word: str) -> str:
    """Fold the commonest English plural/verb endings: cards/card, charged/charge, invoices/invoice."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)] + keep
            break
    if word.endswith("e") and len(word) >= 4 and word.isascii():
        word = word[:-1]
    return word


class BM25:
    """Okapi BM25 over a fixed list of documents; scores normalised to 0..1 per query."""

    def __init__(self, documents: Sequence[Iterable[str]], k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.term_counts = [Counter(doc) for doc in documents]
        self.lengths = np.array([sum(c.values()) for c in self.term_counts], dtype=np.float32)
        self.avg_length = float(self.lengths.mean()) if len(self.lengths) else 1.0
        n = len(self.term_counts)
        # Postings in one compressed-sparse layout (term -> slice of doc ids and term frequencies),
        # built with a few array operations instead of a Python loop per (document, term) pair.
        self.vocabulary: dict[str, int] = {}
        term_ids = np.array(
            [self.vocabulary.setdefault(t, len(self.vocabulary)) for counts in self.term_counts for t in counts],
            dtype=np.int64,
        )
        frequencies = chain.from_iterable(c.values() for c in self.term_counts)
        tfs = np.fromiter(frequencies, dtype=np.float32, count=len(term_ids))
        docs = np.repeat(np.arange(n, dtype=np.int64), [len(c) for c in self.term_counts])
        order = np.argsort(term_ids, kind="stable")  # within a term, documents stay in ascending order
        self._doc_ids, self._tfs = docs[order], tfs[order]
        doc_freq = np.bincount(term_ids, minlength=len(self.vocabulary))
        self._starts = np.concatenate([[0], np.cumsum(doc_freq)]).tolist()
        self.idf = {
            t: math.log(1 + (n - df + 0.5) / (df + 0.5)) for t, df in zip(self.vocabulary, doc_freq.tolist())
        }

    def posting(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The documents containing term (ascending) and its frequency in each, or None."""
        i = self.vocabulary.get(term)
        if i is None:
            return None
        start, end = self._starts[i], self._starts[i + 1]
        return self._doc_ids[start:end], self._tfs[start:end]

    def __len__(self) -> int:
        return len(self.term_counts)

    def _term_weight(self, tf: np.ndarray, length: np.ndarray) -> np.ndarray:
        norm = self.k1 * (1 - self.b + self.b * length / self.avg_length)
        return tf * (self.k1 + 1) / (tf + norm)

    def max_score(self, query_tokens: Sequence[str]) -> float:
        """Upper bound of a document's score for this query (every term, infinite tf)."""
        return sum(self.idf.get(t, 0.0) for t in set(query_tokens)) * (self.k1 + 1)

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """Normalised scores (0..1) of every document for the query."""
        out = np.zeros(len(self.term_counts), dtype=np.float32)
        for term in set(query_tokens):
            posting = self.posting(term)
            if posting is None:
                continue
            ids, tfs = posting
            out[ids] += self.idf[term] * self._term_weight(tfs, self.lengths[ids])
        bound = self.max_score(query_tokens)
        return out / bound if bound > 0 else out

    def score_without(self, query_tokens: Sequence[str], doc_id: int, removed: Counter) -> float:
        """Score of one document as if `removed` tokens were not in it (leave-one-out calibration)."""
        counts = self.term_counts[doc_id] - removed
        length = np.float32(max(1, sum(counts.values())))
        total = 0.0
        for term in set(query_tokens):
            tf = counts.get(term, 0)
            if tf:
                total += self.idf[term] * float(self._term_weight(np.float32(tf), length))
        bound = self.max_score(query_tokens)
        return total / bound if bound > 0 else 0.0
