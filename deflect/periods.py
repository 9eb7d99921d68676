"""Reporting periods: the since/until of `GET /api/metrics`, `deflect metrics` and the exports,
read one way everywhere (epoch seconds or ISO 8601, UTC unless said otherwise)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DATE_ONLY = re.compile(r"^\d{4}-?\d{2}-?\d{2}$")  # 2026-11-24, or ISO 8601's basic 20261124


class PeriodError(ValueError):
    """A period bound that cannot be read, or a start not before the end; `bound` is since/until."""

    def __init__(self, bound: str, reason: str):
        super().__init__(f"{bound} {reason}")
        self.bound, self.reason = bound, reason


def parse_time(raw: str, end: bool = False) -> float:
    """A period bound: epoch seconds or an ISO 8601 date/time (UTC unless it says otherwise).

    A date alone as the `end` of a period takes in that whole day (`until=2026-11-24` ends at
    midnight after it), as reporting tools read an end date; a date and time is taken as it is.
    Eight digits are a basic-format date (20261124), never epoch seconds in August 1970.
    """
    text = raw.strip()
    if _DATE_ONLY.match(text):
        day = datetime.strptime(text.replace("-", ""), "%Y%m%d").replace(tzinfo=UTC)  # ValueError if no such day
        return (day + timedelta(days=1 if end else 0)).timestamp()
    try:
        value = float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))  # ValueError when malformed
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if value != value or abs(value) > 1e11:
        raise ValueError(f"{raw!r} is not a usable epoch time")
    return value


def parse_period(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    """The (start, end) of a reporting period, each None when not given; PeriodError names the bad bound.

    One reading for `GET /api/metrics`, `deflect metrics` and the exports (`deflect events|searches export`).
    """
    bounds = []
    for name, raw in (("since", since), ("until", until)):
        if raw is None or raw == "":
            bounds.append(None)
            continue
        try:
            bounds.append(parse_time(raw, end=name == "until"))
        except (ValueError, OverflowError):
            raise PeriodError(name, "must be epoch seconds or an ISO 8601 date such as 2026-11-01") from None
    start, end = bounds
    if start is not None and end is not None and start >= end:
        raise PeriodError("since", "must be before until")
    return start, end
