"""The JSON API blueprint: validate, call the core, return JSON."""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, current_app, jsonify, request

from ..gaps import DEFAULT_GAPS, MAX_GAPS
from .errors import ApiError, loggable, not_found
from .limits import client_group, request_client, request_client_group
from .validation import (
    MAX_ID,
    count_param,
    event_request,
    json_body,
    optional_body,
    period_params,
    suggest_request,
)

api = Blueprint("api", __name__)
log = logging.getLogger("deflect.admin")


def runtime():
    return current_app.extensions["deflect"]


def require_admin() -> None:
    token = current_app.extensions["deflect_settings"].admin_token
    if not token:
        raise ApiError(401, "admin_disabled", "admin endpoints are disabled until DEFLECT_ADMIN_TOKEN is set", "Authorization")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    client = request_client()
    group = client_group(client)
    guesses = current_app.extensions["deflect_token_guesses"]  # None: wrong_token_limit_per_client = 0
    waiting = guesses.peek(group) if guesses is not None and given else None
    if waiting is not None and not waiting.allowed:  # not even compared: a script guessing tokens learns nothing more
        if current_app.extensions["deflect_refusal_log"].hit(client).allowed:
            log.warning("admin token refused unread for %s %s from %s: over wrong_token_limit_per_client "
                        "(said once a minute per address)", request.method, loggable(request.path), client)
        raise ApiError(429, "rate_limited", f"too many wrong admin tokens from this address; retry after "
                       f"{waiting.retry_after_seconds} s", "Authorization", retry_after=waiting.retry_after_seconds)  # fmt: skip
    # The scheme is case-insensitive (RFC 9110 section 11.1): "bearer x" is as good as "Bearer x".
    # WSGI hands headers over as Latin-1: their bytes again, compared with the token's UTF-8 ones.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode("latin-1", "replace"), token.encode()):
        if given and guesses is not None:
            guesses.hit(group)
        # A trail of who tried, never the token tried: one line per client address a minute.
        if current_app.extensions["deflect_refusal_log"].hit(client).allowed:
            log.warning("admin token %s for %s %s from %s (said once a minute per address)",
                        "wrong" if given else "missing", request.method, loggable(request.path), client)
        raise ApiError(401, "unauthorized", "missing or wrong admin token (Authorization: Bearer ...)", "Authorization")


@api.get("/healthz")
def healthz():
    return jsonify(runtime().health())


@api.post("/api/suggest")
def suggest():
    params = suggest_request(json_body(request), current_app.extensions["deflect_settings"].max_query_chars)
    return jsonify(runtime().suggest(**params))


@api.post("/api/events")
def post_event():
    from ..events import EventError

    params = event_request(json_body(request))
    try:
        stored = runtime().record_event(**params, client=request_client_group())
    except EventError as exc:
        raise ApiError(exc.status, exc.code, str(exc), exc.field) from None
    return jsonify(stored), 202


@api.get("/api/metrics")
def metrics():
    require_admin()
    since, until = period_params(request.args)
    gaps = count_param(request.args, "gaps", DEFAULT_GAPS, MAX_GAPS)
    board = current_app.extensions.get("deflect_board")  # content gaps group new questions as /api/clusters does
    return jsonify(board.metrics(since, until, gaps) if board is not None else runtime().metrics(since, until, gaps))


@api.get("/api/aliases")
def list_aliases():
    require_admin()
    active = request.args.get("active")
    if active not in (None, "", "true", "false"):
        raise ApiError(400, "invalid_field", "active must be true or false", "active")
    return jsonify({"aliases": runtime().aliases(active=active == "true" if active else None)})


@api.delete("/api/aliases/<alias_id>")
def delete_alias(alias_id: str):
    require_admin()
    if not (alias_id.isascii() and alias_id.isdigit()) or len(alias_id) > 10 or int(alias_id) > MAX_ID:
        raise not_found("alias", alias_id)
    if not runtime().delete_alias(int(alias_id)):
        raise not_found("alias", alias_id)
    return jsonify({"deleted": int(alias_id)})


@api.get("/api/articles")
def list_articles():
    return jsonify({"articles": runtime().articles()})


@api.get("/api/articles/<path:article_id>")
def get_article(article_id: str):
    article = runtime().article(article_id)
    if article is None:
        raise not_found("article", article_id)
    return jsonify(article)


@api.get("/api/ideas")
def list_ideas():
    from ..ideas import list_ideas as load

    return jsonify({"ideas": load(runtime().db)})


@api.post("/api/reindex")
def reindex():
    from ..index import KBFolderMissing
    from ..index_folder import IndexFolderReadOnly

    require_admin()
    optional_body(request)
    try:
        report = runtime().reindex(trigger="POST /api/reindex")
    except IndexFolderReadOnly as exc:
        raise ApiError(409, "index_read_only", str(exc)) from None
    except KBFolderMissing as exc:
        raise ApiError(409, "kb_folder_missing", str(exc)) from None
    return jsonify(
        {
            "index_version": report.version,
            "added": report.added,
            "changed": report.changed,
            "removed": report.removed,
            "unchanged": report.unchanged,
            "warnings": report.warnings,
            "link_warnings": report.link_warnings,
            "alias_warning": runtime().stranded_aliases(),
        }
    )


@api.get("/api/openapi.json")
def openapi():
    from .spec import build_openapi

    if "deflect_openapi" not in current_app.extensions:  # built once the URL map is complete
        current_app.extensions["deflect_openapi"] = build_openapi(current_app, current_app.extensions["deflect_settings"])
    return jsonify(current_app.extensions["deflect_openapi"])
