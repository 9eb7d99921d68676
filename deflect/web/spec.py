"""The OpenAPI document an app serves: each endpoint's description (openapi.py, board_openapi.py)
completed with what endpoints share, read from the app itself so it cannot drift from the code.

From the URL map and the settings this adds: 401 on every admin operation, 429 (+ Retry-After)
on every rate-limited one, 413/415 on every operation with a body, 400 on every GET (a query
parameter it does not take) and every operation with a parameter or body, 404 on every operation with a path parameter, 503 (+ Retry-After) on every
one that needs the database, the configured query length, and the HTML pages. tests/test_access.py checks that every route of the URL map is described.
"""

from __future__ import annotations

import copy
import re

from flask import Flask

from ..settings import Settings
from .limits import RATE_LIMITED
from .openapi import OPENAPI

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_HTML = {"text/html": {"schema": {"type": "string"}}}
_SHARED = {
    "400": "a bad field, parameter or body; error.field names it",
    "401": "admin token missing or wrong (or no admin_token configured); error.field is Authorization",
    "404": "no such item; error.field names the path parameter",
    "413": "body over 16 KB",
    "415": "body not application/json",
}
_RATE_LIMITED = {
    "description": "rate limited (rate_limit_per_client / rate_limit_per_session); error.field is client or session",
    "headers": {"Retry-After": {"required": True, "description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}},
    "content": _ERROR,
}

# Every other API operation needs the database: while it is out of reach they answer 503.
_NO_DATABASE = {"/healthz", "/api/openapi.json", "/api/suggest", "/api/articles", "/api/articles/{id}"}
_UNAVAILABLE = _RATE_LIMITED | {"description": "the database is unavailable for a moment (error.code database_unavailable)"}


def _page(summary: str, *, params: list | None = None, not_found: bool = False, extra: dict | None = None) -> dict:
    responses: dict = {"200": {"description": "an HTML page", "content": _HTML}}
    if not_found:
        responses["404"] = {"description": "an HTML 'not found' page", "content": _HTML}
    op = {"summary": summary, "tags": ["pages"], "responses": responses | (extra or {})}
    if params:
        op["parameters"] = params
    return op


_PATH_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_REDIRECT = {"description": "a redirect", "headers": {"Location": {"required": True, "schema": {"type": "string"}}}}

PAGES = {
    "/": {"get": {"summary": "Redirect to the help form", "tags": ["pages"], "responses": {"302": _REDIRECT}}},
    "/favicon.ico": {"get": {"summary": "Redirect to the icon", "tags": ["pages"], "responses": {"302": _REDIRECT}}},
    "/help": {
        "get": _page("The demo help form with the widget", params=[{
            "name": "locale", "in": "query", "required": False, "schema": {"type": "string"},
            "description": "passed to the widget when it is a language tag; ignored otherwise"}]),
        "post": {
            "summary": "The demo form's target (a real help desk creates the ticket here)",
            "tags": ["pages"],
            "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "properties": {
                    "subject": {"type": "string", "maxLength": 300}, "details": {"type": "string", "maxLength": 5000},
                    "email": {"type": "string"}}}}}},
            "responses": {
                "200": {"description": "the 'sent' page", "content": _HTML},
                "400": {"description": "the form again, naming what is missing or too long", "content": _HTML},
                "413": {"description": "body over 16 KB: the form again, saying the message is too long", "content": _HTML},
            },
        },
    },
    "/articles": {"get": _page("The knowledge base, by topic")},
    "/articles/{id}": {"get": _page("One article rendered from Markdown (inert HTML)", params=_PATH_ID, not_found=True)},
    "/ideas": {"get": _page("The idea board", not_found=True, params=[{
        "name": "status", "in": "query", "required": False,
        "schema": {"type": "string", "enum": ["", "open", "planned", "in_progress", "shipped", "declined"]},
        "description": "show one status; another value is a 404 page"}])},
    "/admin": {"get": _page("The admin dashboard (asks for the admin token)")},
    "/kb-images/{name}": {"get": {
        "summary": "An image that a published article shows, from kb_dir (png, jpg, gif, webp, avif, svg; never hidden or outside)",
        "tags": ["pages"],
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": "the image's path relative to kb_dir"}],
        "responses": {"200": {"description": "the image, with its type"},
                      "404": {"description": "an HTML 'not found' page", "content": _HTML}},
    }},
    "/static/{filename}": {"get": {
        "summary": "deflect's own scripts, styles and icon (the widget is /static/deflect-widget.js)",
        "tags": ["pages"],
        "parameters": [{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the file"}, "404": {"description": "no such file", "content": _ERROR}},
    }},
}


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: /api/ideas/<idea_id>/vote -> /api/ideas/{id}/vote."""

    def name(match: re.Match) -> str:
        param = match.group(1)
        return "{id}" if param == "id" or param.endswith("_id") else "{" + param + "}"

    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", name, rule)


def _response(code: str) -> dict:
    return {"description": _SHARED[code], "content": _ERROR}


def build_openapi(app: Flask, settings: Settings) -> dict:
    """The whole document for this app: every route of its URL map, with the shared answers filled in."""
    doc = copy.deepcopy(OPENAPI)
    doc["paths"].update(copy.deepcopy(PAGES))
    query = doc["components"]["schemas"]["SuggestRequest"]["properties"]["query"]
    query["maxLength"] = settings.max_query_chars
    limited = {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint in RATE_LIMITED
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "pages" in op.get("tags", ()):
                continue
            responses = op.setdefault("responses", {})
            params = op.get("parameters", [])
            needed = []
            if op.get("security"):
                needed.append("401")
            if "requestBody" in op:
                needed += ["400", "413", "415"]
            if (method == "get" and path.startswith("/api/")) or any(p["in"] == "query" for p in params):
                needed.append("400")  # a query parameter an operation does not take is named in a 400
            if any(p["in"] == "path" for p in params):
                needed.append("404")
            for code in needed:
                responses.setdefault(code, _response(code))
            if (path, method) in limited:
                responses["429"] = copy.deepcopy(_RATE_LIMITED)
            if path not in _NO_DATABASE:
                responses["503"] = copy.deepcopy(_UNAVAILABLE)
    return doc
