"""Who asked: the requester {customer_id?, email?, mrr?} of a vote, an event or an imported idea.

Checked in one place, so the API and `deflect ideas import` accept and refuse the same people.
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"^[^@\s]{1,200}@[^@\s]{1,200}\.[^@\s]{1,60}$")
FIELDS = ("customer_id", "email", "mrr")


class RequesterError(ValueError):
    """A bad requester; `field` names the offending field (e.g. requester.email)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def check_requester(data, field: str = "requester") -> dict | None:
    """The requester as stored (customer_id as a string, mrr as a float), or None when absent."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise RequesterError(field, f"{field} must be an object with customer_id, email and/or mrr")
    unknown = set(data) - set(FIELDS)
    if unknown:
        raise RequesterError(f"{field}.{sorted(unknown)[0]}", f"{field} takes only customer_id, email and mrr")
    customer_id = data.get("customer_id")
    if customer_id is not None and (not isinstance(customer_id, str | int) or isinstance(customer_id, bool)):
        raise RequesterError(f"{field}.customer_id", f"{field}.customer_id must be a string (or an integer)")
    if customer_id is not None and not 1 <= len(str(customer_id)) <= 200:
        raise RequesterError(f"{field}.customer_id", f"{field}.customer_id must be 1-200 characters")
    email = data.get("email")
    if email is not None and (not isinstance(email, str) or not EMAIL.match(email) or len(email) > 320):
        raise RequesterError(f"{field}.email", f"{field}.email must be an email address")
    mrr = data.get("mrr")
    if mrr is not None and (not isinstance(mrr, int | float) or isinstance(mrr, bool) or not 0 <= mrr < 1e12 or mrr != mrr):
        raise RequesterError(f"{field}.mrr", f"{field}.mrr must be a non-negative number")
    return {
        "customer_id": None if customer_id is None else str(customer_id),
        "email": email,
        "mrr": None if mrr is None else float(mrr),
    }
