"""Personal data masked out of questions before they are stored.

People type their email address, phone number, IBAN or card number into a help form. The
suggestion is made from the question as typed; what is stored (the search, and everything
built from it: learned aliases, idea candidates and their labels, content gaps, exports)
reads `[email]`, `[iban]`, `[number]` instead, so no customer's address reaches the admin
views, the public board, or an alias that would let anyone test whether that address asked.

Names cannot be told from words reliably and stay: promoting a candidate therefore needs a
title written by the team (deflect.review), never a customer's question.
"""

from __future__ import annotations

import re

# The placeholders, as they read in stored questions. Clustering leaves them out of keywords.
EMAIL, IBAN, NUMBER = "[email]", "[iban]", "[number]"

# A word with an @ inside: an email address, also half typed ("anna.schmidt@exa"), so the
# prefixes a widget records while someone types are masked too.
_EMAIL = re.compile(r"[^\s@<>()\[\]{},;:\"'`]+@[^\s@<>()\[\]{},;:\"'`]*|(?<!\S)@[^\s@<>()\[\]{},;:\"'`]+\.\w+")
# An IBAN, also while it is typed: country code, two check digits, then groups of letters and
# digits (4 at a time or not); masked from 12 characters on (country, check digits and a German
# bank code: no one's account yet), so a product code ("KB5034441") stays.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){1,7}(?:[ ]?[A-Z0-9]{1,3})?\b", re.I)
# Seven digits or more, perhaps in groups: a phone, card, account or customer number. Shorter
# numbers (amounts, years, "error 404", a 6-digit code) stay: they say what the question is about,
# as do digits that are part of a word ("0x80070005", "order5512345") and dates and times (below).
_LONG_NUMBER = re.compile(r"(?<![\w])\+?\(?\d(?:[ \-./()]{0,2}\d){6,}\)?")
# Dates and times keep their digits: "charged twice on 2026-11-03 10:15" is no one's number. Only
# a whole one: "06.12.34" inside the phone number "06.12.34.56.78" is no date.
_DATE_OR_TIME = re.compile(
    r"(?<![\d.\-/:])"
    r"(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?)?|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d{1,2}:\d{2}(?::\d{2})?)"
    r"(?![\d:]|[-./]\d)"
)


def _iban(match: re.Match) -> str:
    compact = match.group(0).replace(" ", "")
    return IBAN if len(compact) >= 12 and sum(c.isdigit() for c in compact) >= 6 else match.group(0)


def _mask_numbers(text: str) -> str:
    return _LONG_NUMBER.sub(NUMBER, _IBAN.sub(_iban, text))


def redact(text: str) -> str:
    """text with email addresses, IBANs and numbers of 7 or more digits replaced by placeholders."""
    if "@" in text:
        text = _EMAIL.sub(EMAIL, text)
    if any(c.isdigit() for c in text):
        pieces, last = [], 0
        for date in _DATE_OR_TIME.finditer(text):  # the text between dates is masked, dates kept
            pieces += [_mask_numbers(text[last : date.start()]), date.group(0)]
            last = date.end()
        text = "".join(pieces) + _mask_numbers(text[last:])
    return text


_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in (EMAIL, IBAN, NUMBER)))
_NUMBER_CHARS = frozenset("0123456789 -./()+")
# More placeholders than a question typed by a person holds: extends costs placeholders x length.
MAX_PLACEHOLDERS = 16


def _run_ends(holder: str, text: str) -> list[int]:
    """For each position of text, where a run of what `holder` masks (or of placeholders stored for
    its prefix: "de[number]" before "[iban]") starting there ends; one right-to-left pass."""
    n = len(text)
    ends = list(range(n + 1))
    for at in range(n - 1, -1, -1):
        token = next((p for p in (NUMBER, IBAN, EMAIL) if text.startswith(p, at)), None)
        if token is not None:
            ends[at] = ends[at + len(token)]
        elif (
            (holder == EMAIL and not text[at].isspace())
            or (holder == NUMBER and text[at] in _NUMBER_CHARS)
            or (holder == IBAN and (text[at].isalnum() or text[at] == " "))
        ):
            ends[at] = ends[at + 1]
    return ends


def _reach(holder: str, text: str, start: int, ends: list[int]) -> int:
    """The furthest end such that text[start:end] (and every shorter piece) may be what `holder`
    stood for while it was typed; `ends` is _run_ends(holder, text)."""
    if holder != IBAN or _PLACEHOLDER.match(text, start):
        return ends[start]  # (an IBAN's earlier text may already hold placeholders: "[iban] to a")
    at, n = start, len(text)  # an IBAN: two letters of the country code, then digits, letters and spaces
    while at < n and at - start < 2 and text[at].isalpha():
        at += 1
    if at - start < 2 or at >= n or not (text[at].isdigit() or text.startswith(NUMBER, at)):
        return at
    return ends[at]


def extends(later: str, earlier: str) -> bool:
    """Whether `later` could be `earlier` typed on, when either may have been masked.

    Both are normalised questions (deflect.events.normalize_query). Without placeholders this
    is `later.startswith(earlier)`; a placeholder in `later` may stand for the text it masks.
    Positions are tracked as a set, one pass per piece of `later`: at most pieces x length steps,
    never exponential, whatever the placeholders (every stored question passes through here).
    """
    if later.startswith(earlier):
        return True
    if "[" not in later:
        return False
    parts = _PLACEHOLDER.split(later)
    holders = _PLACEHOLDER.findall(later)
    if len(holders) > MAX_PLACEHOLDERS:
        return False  # no one types that: a question built to make this slow counts as final
    n = len(earlier)
    positions = {0}
    run_ends: dict[str, list[int]] = {}
    for index, literal in enumerate(parts):
        after: set[int] = set()
        for at in positions:
            if n - at <= len(literal):
                if literal.startswith(earlier[at:]):
                    return True  # earlier ends here, inside later's text
            elif earlier.startswith(literal, at):
                after.add(at + len(literal))
        if index == len(holders) or not after:
            return False  # earlier goes on past the end of later, or differs from it
        holder = holders[index]
        if holder not in run_ends:
            run_ends[holder] = _run_ends(holder, earlier)
        reachable: set[int] = set()
        furthest = -1
        for at in sorted(after):
            end = _reach(holder, earlier, at, run_ends[holder])
            reachable.update(range(max(at, furthest + 1), end + 1))
            furthest = max(furthest, end)
        positions = {at for at in reachable if at <= n}
        if n in positions:
            return True  # earlier ends inside the placeholder
    return False


def without_placeholders(text: str) -> str:
    """text without the placeholders: "[email]" is no keyword, though "email" may be."""
    return _PLACEHOLDER.sub(" ", text) if "[" in text else text
