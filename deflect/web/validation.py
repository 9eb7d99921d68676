"""Request validation: every bad field becomes a 4xx ApiError naming it."""

from __future__ import annotations

import json
import re

from flask import Request

from .errors import ApiError

ITEM_TYPES = ("article", "idea")
_LOCALE = re.compile(r"^[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*$")


def json_body(request: Request) -> dict:
    """The request's JSON object, or a 415/400 naming what is wrong with it."""
    if not request.mimetype or request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json", "Content-Type")
    raw = request.get_data(cache=True)
    if len(raw) > 16 * 1024:
        raise ApiError(413, "payload_too_large", "request body is larger than 16 KB", "body")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "request body is not valid JSON", "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "request body must be a JSON object", "body")
    return data


def _bad(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_field", message, field)


def suggest_request(data: dict, max_query_chars: int) -> dict:
    query = data.get("query")
    if query is None:
        raise _bad("query", "query is required")
    if not isinstance(query, str):
        raise _bad("query", "query must be a string")
    if not query.strip():
        raise _bad("query", "query must not be empty")
    if len(query) > max_query_chars:
        raise _bad("query", f"query must be at most {max_query_chars} characters")
    k = data.get("k", 5)
    if not isinstance(k, int) or isinstance(k, bool):
        raise _bad("k", "k must be an integer from 1 to 20")
    if not 1 <= k <= 20:
        raise _bad("k", "k must be between 1 and 20")
    types = data.get("types", list(ITEM_TYPES))
    if not isinstance(types, list) or not types:
        raise _bad("types", 'types must be a non-empty list of "article" and/or "idea"')
    for item_type in types:
        if item_type not in ITEM_TYPES:
            raise _bad("types", f'unknown type {item_type!r}; use "article" and/or "idea"')
    locale = data.get("locale")
    if locale is not None and (not isinstance(locale, str) or not _LOCALE.match(locale)):
        raise _bad("locale", "locale must be a language tag such as en or ko-KR")
    session = data.get("session")
    if session is not None and (not isinstance(session, str) or not 1 <= len(session) <= 200):
        raise _bad("session", "session must be a string of 1-200 characters")
    return {"query": query.strip(), "k": k, "types": tuple(dict.fromkeys(types)), "locale": locale, "session": session}
