"""When two things people typed are the same wording: alias keys and idea-title keys.

events.normalize_query (case and spacing ignored) stays what supersession, candidate exclusions
and the search log compare by: its keys are stored (candidate_exclusions), so it cannot change.
These keys build on it and ignore punctuation too, where that is what a person means:
"How do I export my data?" and "how do I export my data" are one alias, "Dark mode" and
"dark mode." one idea title.
"""

from __future__ import annotations

import unicodedata

from .events import normalize_query

# aliases.query_key is a String(1000). Migration 0009 keeps a copy of alias_key: change both together.
ALIAS_KEY_CHARS = 1000

# Punctuation that carries meaning in a product's words: "C#" is not "C", "100%" not "100".
# (Symbols such as + $ € are no punctuation to Unicode and stay anyway: "C++" is not "C".)
_MEANINGFUL = frozenset("#%&@*")


def _is_punctuation(char: str) -> bool:
    """Unicode punctuation (P*: ?!.,;:'"-()[]… and their full-width and other-script forms), but
    for the marks in _MEANINGFUL."""
    return unicodedata.category(char)[0] == "P" and char not in _MEANINGFUL


def alias_key(text: str) -> str:
    """The key of a learned alias (aliases.query_key): normalize_query, NFKC, every punctuation mark
    read as a space, spaces collapsed. A query of punctuation only keeps its normalize_query form
    ("???" is not "")."""
    plain = unicodedata.normalize("NFKC", normalize_query(text)).casefold()
    spaced = "".join(" " if _is_punctuation(c) else c for c in plain)
    return (" ".join(spaced.split()) or plain)[:ALIAS_KEY_CHARS]


def title_key(title: str) -> str:
    """The key two idea titles are the same by: case, spacing and the punctuation around the title
    ignored ("Dark mode?" is "dark mode"), punctuation inside it kept ("e-mail digest" is not
    "e mail digest"). A title of punctuation only keeps its normalize_query form."""
    plain = unicodedata.normalize("NFKC", normalize_query(title)).casefold()
    start, end = 0, len(plain)
    while start < end and (_is_punctuation(plain[start]) or plain[start].isspace()):
        start += 1
    while end > start and (_is_punctuation(plain[end - 1]) or plain[end - 1].isspace()):
        end -= 1
    return plain[start:end] or plain
