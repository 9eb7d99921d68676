"""Which values a setting allows (deflect/settings.py's table): a test and the words that say so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .locales import is_language_tag


@dataclass(frozen=True)
class Check:
    """Which values a setting allows: test(value) and the words that say so ("from 1 to 65535")."""

    test: Callable[[Any], bool]
    allowed: str


def between(low: float, high: float) -> Check:
    return Check(lambda v: low <= v <= high, f"from {low} to {high}")


def at_least(low: float) -> Check:
    return Check(lambda v: v >= low, f"at least {low}")


def above(low: float) -> Check:
    return Check(lambda v: v > low, f"greater than {low}")


def one_of(*choices: str) -> Check:
    return Check(lambda v: v in choices, "one of " + ", ".join(choices))


NOT_EMPTY = Check(lambda v: bool(v.strip()), "not empty")
LANGUAGE_TAG = Check(is_language_tag, "a language tag such as en or pt-BR")
