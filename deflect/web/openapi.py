"""OpenAPI description of the endpoints this server implements."""

_ERROR = {"$ref": "#/components/schemas/Error"}
_ERRORS = {
    code: {"description": text, "content": {"application/json": {"schema": _ERROR}}}
    for code, text in (("400", "bad field"), ("401", "admin token missing or wrong"), ("404", "not found"),
                       ("413", "body over 16 KB"), ("415", "not application/json"))
}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "deflect", "version": "0.1.0", "description": "Knowledge-base deflection engine."},
    "paths": {
        "/healthz": {"get": {"summary": "Liveness and index version", "responses": {"200": {"description": "ok", **_json({"$ref": "#/components/schemas/Health"})}}}},
        "/api/suggest": {
            "post": {
                "summary": "Suggest articles and ideas for a question (records a search)",
                "requestBody": {"required": True, **_json({"$ref": "#/components/schemas/SuggestRequest"})},
                "responses": {"200": {"description": "suggestions", **_json({"$ref": "#/components/schemas/SuggestResponse"})},
                              **{c: _ERRORS[c] for c in ("400", "413", "415")}},
            }
        },
        "/api/articles": {"get": {"summary": "List articles", "responses": {"200": {"description": "articles"}}}},
        "/api/articles/{id}": {
            "get": {
                "summary": "One article with rendered HTML",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "article"}, "404": _ERRORS["404"]},
            }
        },
        "/api/ideas": {"get": {"summary": "List ideas with votes", "responses": {"200": {"description": "ideas"}}}},
        "/api/reindex": {
            "post": {
                "summary": "Re-embed changed articles and swap the index in while serving (admin)",
                "security": [{"bearer": []}],
                "responses": {"200": {"description": "what changed"}, "401": _ERRORS["401"]},
            }
        },
        "/api/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}},
            },
            "Health": {"type": "object", "properties": {
                "status": {"type": "string"}, "articles": {"type": "integer"}, "ideas": {"type": "integer"},
                "index_version": {"type": "string"}}},
            "SuggestRequest": {
                "type": "object",
                "required": ["query"],
                "properties": {
                    "query": {"type": "string", "minLength": 1, "maxLength": 1000},
                    "k": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
                    "types": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["article", "idea"]}},
                    "locale": {"type": "string", "example": "en"},
                    "session": {"type": "string", "maxLength": 200},
                },
            },
            "SuggestResponse": {
                "type": "object",
                "properties": {
                    "search_id": {"type": "string"},
                    "answered": {"type": "boolean"},
                    "results": {"type": "array", "items": {"type": "object", "properties": {
                        "type": {"type": "string", "enum": ["article", "idea"]}, "id": {"type": "string"},
                        "title": {"type": "string"}, "url": {"type": "string"}, "snippet": {"type": "string"},
                        "score": {"type": "number", "minimum": 0, "maximum": 1}}}},
                },
            },
        },
    },
}

from .board_openapi import BOARD_PATHS, BOARD_SCHEMAS  # noqa: E402

for _path, _ops in BOARD_PATHS.items():
    OPENAPI["paths"].setdefault(_path, {}).update(_ops)
OPENAPI["components"]["schemas"].update(BOARD_SCHEMAS)
