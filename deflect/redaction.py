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
# An IBAN: country code, two check digits, then 11-30 letters and digits, in groups of 4 or not.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b", re.I)
# Seven digits or more, perhaps in groups: a phone, card, account or customer number. Shorter
# numbers (amounts, years, "error 404", a 6-digit code) stay: they say what the question is about.
_LONG_NUMBER = re.compile(r"\+?\(?\d(?:[ \-./()]{0,2}\d){6,}\)?")
# Dates keep their digits: "charged twice on 2026-11-03" is no one's number.
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


def _number(match: re.Match) -> str:
    text = match.group(0)
    return text if _DATE.fullmatch(text) else NUMBER


def _iban(match: re.Match) -> str:
    text = match.group(0)
    # An IBAN has at least 11 characters after the country and check digits, most of them digits;
    # a word such as "AB12 test" or a product code with letters only is no IBAN.
    compact = text.replace(" ", "")
    return IBAN if len(compact) >= 15 and sum(c.isdigit() for c in compact) >= 10 else text


def redact(text: str) -> str:
    """text with email addresses, IBANs and numbers of 7 or more digits replaced by placeholders."""
    if "@" in text:
        text = _EMAIL.sub(EMAIL, text)
    if any(c.isdigit() for c in text):
        text = _IBAN.sub(_iban, text)
        text = _LONG_NUMBER.sub(_number, text)
    return text


# What each placeholder may stand for while the question was still being typed: its prefix was
# stored unmasked ("call 030123") or masked otherwise ("iban de[number]") before the whole was.
_STANDS_FOR = {
    EMAIL: lambda c: not c.isspace(),
    IBAN: lambda c: c.isalnum() or c in " []",
    NUMBER: lambda c: c.isdigit() or c in " -./()+[]" or c in "number",
}
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in _STANDS_FOR))


def extends(later: str, earlier: str) -> bool:
    """Whether `later` could be `earlier` typed on, when either may have been masked.

    Both are normalised questions (deflect.events.normalize_query). Without placeholders this
    is `later.startswith(earlier)`; a placeholder in `later` may stand for any text it masks.
    """
    if later.startswith(earlier):
        return True
    if "[" not in later:
        return False
    parts = _PLACEHOLDER.split(later)
    holders = _PLACEHOLDER.findall(later)

    def match(part: int, at: int) -> bool:
        literal = parts[part]
        rest = earlier[at:]
        if literal.startswith(rest):
            return True  # earlier ends here, inside later's text
        if not rest.startswith(literal):
            return False
        at += len(literal)
        if part == len(holders):
            return False  # earlier goes on past the end of later
        stands_for = _STANDS_FOR[holders[part]]
        end = at
        while True:
            if match(part + 1, end):
                return True
            if end >= len(earlier) or not stands_for(earlier[end]):
                return False
            end += 1

    return match(0, 0)


def without_placeholders(text: str) -> str:
    """text without the placeholders: "[email]" is no keyword, though "email" may be."""
    return _PLACEHOLDER.sub(" ", text) if "[" in text else text
