"""The JSON API blueprint: validate, call the core, return JSON."""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request

from .errors import ApiError
from .openapi import OPENAPI
from .validation import json_body, suggest_request

api = Blueprint("api", __name__)


def runtime():
    return current_app.extensions["deflect"]


def require_admin() -> None:
    token = current_app.extensions["deflect_settings"].admin_token
    if not token:
        raise ApiError(401, "admin_disabled", "admin endpoints are disabled until DEFLECT_ADMIN_TOKEN is set", "Authorization")
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), token.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong admin token (Authorization: Bearer ...)", "Authorization")


@api.get("/healthz")
def healthz():
    return jsonify(runtime().health())


@api.post("/api/suggest")
def suggest():
    params = suggest_request(json_body(request), current_app.extensions["deflect_settings"].max_query_chars)
    return jsonify(runtime().suggest(**params))


@api.get("/api/articles")
def list_articles():
    return jsonify({"articles": runtime().articles()})


@api.get("/api/articles/<path:article_id>")
def get_article(article_id: str):
    article = runtime().article(article_id)
    if article is None:
        raise ApiError(404, "not_found", f"no article with id {article_id!r}", "id")
    return jsonify(article)


@api.get("/api/ideas")
def list_ideas():
    from ..ideas import list_ideas as load

    return jsonify({"ideas": load(runtime().db)})


@api.post("/api/reindex")
def reindex():
    require_admin()
    report = runtime().reindex()
    return jsonify(
        {
            "index_version": report.version,
            "added": report.added,
            "changed": report.changed,
            "removed": report.removed,
            "unchanged": report.unchanged,
            "warnings": report.warnings,
        }
    )


@api.get("/api/openapi.json")
def openapi():
    return jsonify(OPENAPI)
