"""Request validation: every bad field becomes a 4xx ApiError naming it."""

from __future__ import annotations

import json
import re

from flask import Flask, Request, request

from ..db import UNSTORABLE_TEXT
from ..locales import MAX_LOCALE_CHARS, is_language_tag
from ..suggest import MAX_K, is_blank_question
from . import MAX_BODY_BYTES
from .errors import BODY_TOO_LARGE_MESSAGE, PAYLOAD_TOO_LARGE, ApiError

ITEM_TYPES = ("article", "idea")
MAX_SESSION_CHARS = 200
MAX_ID = 2**31 - 1  # row ids are INTEGER columns: 32 bits on PostgreSQL


def bad_text_field(value, path: str = "") -> str | None:
    """The dotted path of the first key or string in a JSON value that holds NUL or a lone surrogate."""
    if isinstance(value, str):
        return path or "body" if UNSTORABLE_TEXT.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if UNSTORABLE_TEXT.search(str(key)):
                return path or "body"
            found = bad_text_field(item, here)
            if found:
                return found
    if isinstance(value, list):
        for item in value:
            found = bad_text_field(item, path)
            if found:
                return found
    return None


def parsed_json(request: Request):
    """The body parsed as JSON, once per request (the rate limiter reads its session first).

    Raises ValueError or RecursionError, again on every call, when the body is not JSON.
    """
    key = "deflect.parsed_json"
    if key not in request.environ:
        request.environ[key] = json.loads(request.get_data(cache=True), parse_int=_json_int)
    return request.environ[key]


def _json_int(digits: str) -> int | float:
    """An integer literal; one too long for Python to convert (over 4,300 digits) is valid JSON but
    out of range of every field: infinity, so the field's own check refuses it, naming the field."""
    return int(digits) if len(digits) <= 100 else float("inf")


def json_body(request: Request) -> dict:
    """The request's JSON object, or a 415/400 naming what is wrong with it."""
    if not request.mimetype or request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json", "Content-Type")
    if len(request.get_data(cache=True)) > MAX_BODY_BYTES:
        raise ApiError(413, PAYLOAD_TOO_LARGE, BODY_TOO_LARGE_MESSAGE, "body")
    try:
        data = parsed_json(request)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "request body is not valid JSON", "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "request body must be a JSON object", "body")
    field = bad_text_field(data)
    if field:
        raise _bad(field, f"{field} must not contain NUL or unpaired surrogate characters")
    return data


def install_input_guards(app: Flask) -> None:
    """Refuse API path and query parameters that no stored thing can match, before any handler runs.

    A path id with NUL (or an integer id past MAX_ID) cannot name anything: 404. A query
    parameter with NUL is never a valid value: 400 naming it.
    """

    @app.before_request
    def _guard():
        if not request.path.startswith("/api/"):
            return None
        for value in (request.view_args or {}).values():
            if (isinstance(value, str) and UNSTORABLE_TEXT.search(value)) or (isinstance(value, int) and value > MAX_ID):
                raise ApiError(404, "not_found", "no item with that id", "id")
        for name, value in request.args.items(multi=True):
            if UNSTORABLE_TEXT.search(name) or UNSTORABLE_TEXT.search(value):
                raise ApiError(400, "invalid_field", f"{name!r} must not contain NUL characters", name)
        known = QUERY_PARAMETERS.get(request.endpoint or "", ())
        unknown = sorted(name for name in request.args if name not in known)
        if unknown:  # `?sinse=` would otherwise give all-time metrics without a word
            takes = f"this request takes {', '.join(known)}" if known else "this request takes no query parameters"
            raise _bad(unknown[0], f"unknown query parameter {unknown[0][:50]!r}; {takes}")
        return None


# The query parameters each API endpoint takes; any other one is a 400 naming it.
QUERY_PARAMETERS = {
    "api.metrics": ("since", "until", "gaps"),
    "api.list_aliases": ("active",),
    "board_api.list_clusters": ("status",),
    "board_api.list_outbox": ("status", "limit", "after_id"),
}


def _bad(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_field", message, field)


SUGGEST_FIELDS = ("query", "k", "types", "locale", "session")
# `session` on an event is only counted by the per-session rate limit (the search has its own).
EVENT_FIELDS = ("search_id", "type", "item_id", "item_type", "requester", "session")


def only_known_fields(data: dict, known: tuple[str, ...]) -> None:
    """A misspelt field ("local" for "locale") is an error, not a setting silently left out."""
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        takes = f"this request takes {', '.join(known)}" if known else "this request takes no fields"
        raise _bad(unknown[0], f"unknown field {unknown[0][:50]!r}; {takes}")


def optional_body(request: Request, allowed: tuple[str, ...] = (), json_only: bool = False) -> dict:
    """The body of an action whose fields are all optional: none, or a JSON object with only `allowed`
    keys. `{"full": true}` on a reindex is refused naming `full`, rather than run as if it were honoured.

    json_only: Content-Type application/json even without a body. A public action a browser could be
    made to send from any site (a form or a "simple" fetch needs no CORS preflight) then needs one.
    """
    if json_only and request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json", "Content-Type")
    data = json_body(request) if request.get_data(cache=True).strip() else {}
    only_known_fields(data, allowed)
    return data


def suggest_request(data: dict, max_query_chars: int) -> dict:
    only_known_fields(data, SUGGEST_FIELDS)
    query = data.get("query")
    if query is None:
        raise _bad("query", "query is required")
    if not isinstance(query, str):
        raise _bad("query", "query must be a string")
    if is_blank_question(query):
        raise _bad("query", "query must not be empty (nor only spaces or invisible characters)")
    if len(query) > max_query_chars:
        raise _bad("query", f"query must be at most {max_query_chars} characters")
    k = data.get("k", 5)
    if not isinstance(k, int) or isinstance(k, bool):
        raise _bad("k", f"k must be an integer from 1 to {MAX_K}")
    if not 1 <= k <= MAX_K:
        raise _bad("k", f"k must be between 1 and {MAX_K}")
    types = data.get("types", list(ITEM_TYPES))
    if not isinstance(types, list) or not types:
        raise _bad("types", 'types must be a non-empty list of "article" and/or "idea"')
    for item_type in types:
        if item_type not in ITEM_TYPES:
            raise _bad("types", f'unknown type {item_type!r}; use "article" and/or "idea"')
    locale = data.get("locale")
    if locale is not None and (not isinstance(locale, str) or not is_language_tag(locale)):
        raise _bad("locale", f"locale must be a language tag such as en or ko-KR (at most {MAX_LOCALE_CHARS} characters)")
    if locale is not None:
        locale = locale.replace("_", "-")  # en_US (POSIX style) is recorded and matched as en-US
    session = data.get("session")
    if session is not None and (not isinstance(session, str) or not 1 <= len(session) <= MAX_SESSION_CHARS):
        raise _bad("session", f"session must be a string of 1-{MAX_SESSION_CHARS} characters")
    return {"query": query.strip(), "k": k, "types": tuple(dict.fromkeys(types)), "locale": locale, "session": session}


EVENT_TYPES = ("click", "helpful", "not_helpful", "ticket_created", "vote")


def _optional_string(data: dict, field: str, max_len: int = 200) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise _bad(field, f"{field} must be a string of 1-{max_len} characters")
    return value


def requester_fields(data) -> dict | None:
    """The optional requester {customer_id?, email?, mrr?} of a vote or event."""
    from ..requesters import RequesterError, check_requester

    try:
        return check_requester(data)
    except RequesterError as exc:
        raise _bad(exc.field, str(exc)) from None


def event_request(data: dict) -> dict:
    only_known_fields(data, EVENT_FIELDS)
    search_id = data.get("search_id")
    if search_id is None:
        raise _bad("search_id", "search_id is required")
    if not isinstance(search_id, str) or not re.fullmatch(r"[0-9a-f]{1,64}", search_id):
        raise _bad("search_id", "search_id must be the id returned by /api/suggest")
    event_type = data.get("type")
    if event_type is None:
        raise _bad("type", "type is required")
    if event_type not in EVENT_TYPES:
        raise _bad("type", f"type must be one of {', '.join(EVENT_TYPES)}")
    item_id = _optional_string(data, "item_id")
    item_type = data.get("item_type")
    if item_type is not None and item_type not in ITEM_TYPES:
        raise _bad("item_type", 'item_type must be "article" or "idea"')
    if event_type == "vote" and item_id is None:
        raise _bad("item_id", "a vote event needs item_id (the idea voted for)")
    _optional_string(data, "session")  # only counted by the per-session rate limit (the search has its session)
    return {
        "search_id": search_id,
        "event_type": event_type,
        "item_id": item_id,
        "item_type": item_type,
        "requester": requester_fields(data.get("requester")),
    }


def count_param(args, field: str, default: int, most: int) -> int:
    """A row count from the query string, 1..most (`default` when absent)."""
    raw = args.get(field)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= most:
        raise _bad(field, f"{field} must be an integer from 1 to {most}")
    return int(raw)


def period_params(args) -> tuple[float | None, float | None]:
    """The since/until of a report from the query string (periods.parse_period), 400 naming the bad one."""
    from ..periods import PeriodError, parse_period

    try:
        return parse_period(args.get("since"), args.get("until"))
    except PeriodError as exc:
        raise _bad(exc.bound, str(exc)) from None
