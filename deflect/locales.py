"""Language tags: which ones deflect takes (settings, requests, pages) and when two match.

One rule for every door: `default_locale`, the `locale` of /api/suggest and of the help
pages, and the article filter of the engine all read tags the same way (en_US, POSIX style,
counts as en-US).
"""

from __future__ import annotations

import re

# A language (2-8 letters), or BCP 47's private use "x-..." (x-klingon), then subtags.
LOCALE_TAG = re.compile(r"^(?:[A-Za-z]{2,8}|[xX](?=[-_]))(?:[-_][A-Za-z0-9]{1,8})*$")
MAX_LOCALE_CHARS = 35  # the searches.locale column (BCP 47 tags fit)


def is_language_tag(value: str) -> bool:
    """en, ko-KR, en_US, x-klingon...: letters and digits in dash- or underscore-separated parts."""
    return LOCALE_TAG.match(value) is not None and len(value) <= MAX_LOCALE_CHARS


def locale_matches(item_locale: str, wanted: str) -> bool:
    """Same tag, or same language: ko matches ko-KR; en_US (POSIX style) counts as en-US."""
    return primary_language(item_locale) == primary_language(wanted)


def primary_language(tag: str) -> str:
    """A tag's language in lower case, what locale_matches compares: "ko" for ko-KR, ko_KR and KO."""
    return tag.lower().replace("_", "-").split("-")[0]
