"""Which values a setting allows (deflect/settings.py's table): its type, and a test with the words that say so."""

from __future__ import annotations

import math
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
# A link shown to visitors: a web address, an email address or a path on this site, never
# javascript: or the like.
LINK = Check(lambda v: not v.strip() or v.strip().lower().startswith(("https://", "http://", "mailto:", "/")),
             "empty, an http(s):// or mailto: address, or a path starting with /")


# --- types: what a value must be before its check ---------------------------------------------

_BOOLEAN_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
_TOML_TYPES = {bool: ((bool,), "true or false"), int: ((int, float), "a whole number"), float: ((int, float), "a number")}


def check_toml_type(kind_of: type, value: Any) -> None:
    """A TOML value must have the setting's own type (TOML has types; the environment is text)."""
    accepted, kind = _TOML_TYPES.get(kind_of, ((str,), "a quoted string"))
    if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):  # True is an int
        raise ValueError(f"{value!r} is not {kind} (a TOML value of the wrong type)")


def typed_value(kind_of: type, value: Any) -> Any:
    """`value` (from TOML, the environment or an argument) as a setting of type `kind_of`; ValueError if it is not one."""
    if kind_of is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in _BOOLEAN_WORDS:
            raise ValueError(f"{value!r} is not a boolean (use true or false)")
        return _BOOLEAN_WORDS[text]
    if kind_of in (int, float):
        kind = "a whole number" if kind_of is int else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float | str):  # TOML true would pass as 1
            raise ValueError(f"{value!r} is not a number")
        try:
            number = value if isinstance(value, int) else _number(value)
        except ValueError:
            raise ValueError(f"{value!r} is not {kind}") from None
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        if kind_of is int:
            if number != int(number):  # 8601.9 is refused, not truncated
                raise ValueError(f"{value!r} is not a whole number")
            return int(number)
        return float(number)
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"{value!r} is not text")
    # A line ending is no part of a value: a token read from a secret file ends in one, and an admin
    # token with it would refuse every admin. Spaces stay (a webhook secret is what it is).
    return str(value).strip("\r\n")


def _number(value: float | str) -> int | float:
    if isinstance(value, str):
        try:
            return int(value)  # "8000" exactly, however many digits
        except ValueError:
            pass
    return float(value)
