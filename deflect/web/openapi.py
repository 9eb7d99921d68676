"""OpenAPI description of the endpoints this server implements."""

_ERROR = {"$ref": "#/components/schemas/Error"}
_ERRORS = {
    code: {"description": text, "content": {"application/json": {"schema": _ERROR}}}
    for code, text in (("400", "bad field"), ("401", "admin token missing or wrong"), ("404", "not found"),
                       ("409", "a vote on a shipped or declined idea; a click, helpful or not_helpful on an item the search did not show"), ("413", "body over 16 KB"),
                       ("415", "not application/json"))
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
        "/api/events": {
            "post": {
                "summary": "Record what the user did after a search (acknowledged once committed)",
                "requestBody": {"required": True, **_json({"$ref": "#/components/schemas/EventRequest"})},
                "responses": {"202": {"description": "stored", **_json({"$ref": "#/components/schemas/EventStored"})},
                              **{c: _ERRORS[c] for c in ("400", "404", "409", "413", "415")}},
            }
        },
        "/api/metrics": {
            "get": {
                "summary": "Deflection metrics for a period (admin)",
                "security": [{"bearer": []}],
                "parameters": [
                    {"name": "since", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "ISO 8601 date/time (UTC unless given) or epoch seconds"},
                    {"name": "until", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "exclusive end (a date alone includes that day); default now"},
                    {"name": "gaps", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                     "description": "content gap rows, largest first"},
                ],
                "responses": {"200": {"description": "totals, events, articles, ideas, content_gaps, series",
                                      **_json({"$ref": "#/components/schemas/Metrics"})},
                              "400": _ERRORS["400"], "401": _ERRORS["401"]},
            }
        },
        "/api/aliases": {
            "get": {
                "summary": "Learned aliases (admin)",
                "security": [{"bearer": []}],
                "parameters": [{"name": "active", "in": "query", "required": False,
                                "description": "true: only the aliases confirmed enough to be used; false: only the others; absent: all",
                                "schema": {"type": "string", "enum": ["true", "false"]}}],
                "responses": {"200": {"description": "aliases", **_json({"type": "object", "required": ["aliases"], "properties": {
                    "aliases": {"type": "array", "items": {"$ref": "#/components/schemas/Alias"}}}})},
                              "400": _ERRORS["400"], "401": _ERRORS["401"]},
            }
        },
        "/api/aliases/{id}": {
            "delete": {
                "summary": "Delete a learned alias (admin)",
                "security": [{"bearer": []}],
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "deleted", **_json({"type": "object", "required": ["deleted"], "properties": {
                    "deleted": {"type": "integer"}}})}, "401": _ERRORS["401"], "404": _ERRORS["404"]},
            }
        },
        "/api/articles": {"get": {"summary": "List articles", "responses": {"200": {"description": "articles", **_json({
            "type": "object", "required": ["articles"], "properties": {
                "articles": {"type": "array", "items": {"$ref": "#/components/schemas/ArticleSummary"}}}})}}}},
        "/api/articles/{id}": {
            "get": {
                "summary": "One article with rendered HTML",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "article", **_json({"$ref": "#/components/schemas/Article"})},
                              "404": _ERRORS["404"]},
            }
        },
        "/api/ideas": {"get": {"summary": "List ideas with votes", "responses": {"200": {"description": "ideas", **_json({
            "type": "object", "required": ["ideas"], "properties": {
                "ideas": {"type": "array", "items": {"$ref": "#/components/schemas/Idea"}}}})}}}},
        "/api/reindex": {
            "post": {
                "summary": "Re-embed changed articles and swap the index in while serving (admin)",
                "security": [{"bearer": []}],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False, "properties": {},
                    "description": "no body, or {}: any field is a 400 naming it"}}}},
                "responses": {"200": {"description": "what changed", **_json({"$ref": "#/components/schemas/ReindexReport"})},
                              "401": _ERRORS["401"], "400": _ERRORS["400"], "415": _ERRORS["415"],
                              "409": {"description": "the index must be rebuilt but its folder is read-only "
                                                     "(index_read_only), or the KB folder is missing "
                                                     "(kb_folder_missing)",
                                      **_json(_ERROR)}},
            }
        },
        "/api/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI", **_json({
            "type": "object", "required": ["openapi", "paths"]})}}}},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"},
                    "field": {"type": "string", "description": "the request field (or header, or client/session) at fault"},
                    "idea_id": {"type": "string", "description": "409 on title: the idea that has this title already"}}}},
            },
            "Health": {"type": "object", "required": ["status", "articles", "ideas", "index_version"], "properties": {
                "status": {"type": "string", "enum": ["ok", "degraded"]}, "articles": {"type": "integer"}, "ideas": {"type": "integer"},
                "index_version": {"type": "string"}, "aliases": {"type": "integer"},
                "database": {"type": "string", "enum": ["ok", "unavailable"], "description": "unavailable: status is degraded, ideas is the last count seen; suggest still works"},
                "kb": {"type": "string", "enum": ["ok", "missing"], "description": "missing: the kb_dir folder is gone (status is degraded); the index version already built keeps serving, reindexes fail until it is back"}}},
            "ArticleSummary": {"type": "object", "required": ["id", "title", "url", "locale", "tags"], "properties": {
                "id": {"type": "string"}, "title": {"type": "string"}, "url": {"type": "string"},
                "locale": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}},
            "Article": {"allOf": [{"$ref": "#/components/schemas/ArticleSummary"}, {
                "type": "object", "required": ["markdown", "html"], "properties": {
                    "markdown": {"type": "string"},
                    "html": {"type": "string", "description": "rendered inert: raw HTML through an allowlist (setting article_raw_html; or shown as text), no script, event handler or script-capable URL"}}}]},
            "Alias": {"type": "object", "required": ["id", "item_type", "item_id", "query", "confirmations", "active"],
                      "properties": {
                          "id": {"type": "integer"}, "item_type": {"type": "string", "enum": ["article", "idea"]},
                          "item_id": {"type": "string"}, "query": {"type": "string"}, "confirmations": {"type": "integer"},
                          "active": {"type": "boolean"},
                          "in_use": {"type": "boolean", "description": "active, and its article is in the index served "
                                     "(or its idea is suggested): retrieval uses it now"},
                          "source": {"type": "string", "enum": ["feedback", "review", "import"], "description":
                                     "feedback: confirmed by helpful events; review: a question of an idea "
                                     "candidate promoted or merged into the idea (candidate_id); import: "
                                     "added by `deflect aliases import`"},
                          "candidate_id": {"type": "string", "nullable": True},
                          "created_at": {"type": "number"}, "updated_at": {"type": "number"}}},
            "EventStored": {"type": "object", "required": ["event_id", "search_id", "type"], "properties": {
                "event_id": {"type": "integer"}, "search_id": {"type": "string"}, "type": {"type": "string"},
                "item_type": {"type": "string"}, "item_id": {"type": "string"},
                "duplicate": {"type": "boolean", "description": "true: the same event was stored before; not stored again (a requester it names fills in a stored event that names nobody)"},
                "alias": {"type": "object", "properties": {"status": {"type": "string", "enum": [
                    "learned", "confirmed", "already_confirmed", "rate_limited"]}, "alias_id": {"type": "integer"}}},
                "vote": {"type": "object", "description": "a vote event: the idea that got it and its votes now; "
                         "counted is false when this requester had voted for it already", "properties": {
                             "idea_id": {"type": "string"}, "votes": {"type": "integer"}, "counted": {"type": "boolean"}}}}},
            "Metrics": {"type": "object", "required": ["totals", "events", "articles", "ideas", "content_gaps", "series"],
                        "properties": {
                            "since": {"type": "number", "nullable": True}, "until": {"type": "number", "nullable": True},
                            "totals": {"type": "object", "required": [
                                "searches", "answered_rate", "click_rate", "confirmed_deflections", "assumed_deflections",
                                "tickets", "deflection_rate"], "additionalProperties": {"type": "number"}},
                            "events": {"type": "object", "additionalProperties": {"type": "integer"}},
                            "articles": {"type": "array", "items": {"type": "object"}},
                            "ideas": {"type": "array", "items": {"type": "object"}},
                            "content_gaps": {"type": "array", "items": {"type": "object"}},
                            "series": {"type": "array", "items": {"type": "object"}}}},
            "ReindexReport": {"type": "object", "required": ["index_version", "added", "changed", "removed", "unchanged", "warnings"],
                              "properties": {
                                  "index_version": {"type": "string"}, "added": {"type": "array", "items": {"type": "string"}},
                                  "changed": {"type": "array", "items": {"type": "string"}},
                                  "removed": {"type": "array", "items": {"type": "string"}},
                                  "unchanged": {"type": "integer"}, "warnings": {"type": "array", "items": {"type": "string"}},
                                  "link_warnings": {"type": "array", "items": {"type": "string"},
                                                    "description": "links and images in articles that lead nowhere"},
                                  "alias_warning": {"type": "string", "nullable": True,
                                                    "description": "learned aliases point at articles not in the KB"}}},
            "SuggestRequest": {
                "type": "object",
                "required": ["query"],
                "additionalProperties": False,
                "properties": {
                    "query": {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": "\\S",
                              "description": "maxLength is the max_query_chars setting"},
                    "k": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
                    "types": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["article", "idea"]}},
                    "locale": {"type": "string", "nullable": True, "example": "en", "pattern": "^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$", "maxLength": 35,
                               "description": "only articles in this locale (ideas have none)"},
                    "session": {"type": "string", "nullable": True, "minLength": 1, "maxLength": 200,
                                "description": "one question's searches share it (as-you-type prefixes are superseded)"},
                },
            },
            "EventRequest": {
                "type": "object",
                "required": ["search_id", "type"],
                "additionalProperties": False,
                "description": "click, helpful and not_helpful without item_id are about the search as a whole "
                               "(\"this answered my question\"); with item_id they must name an item the search "
                               "showed (409 otherwise); a vote needs item_id; "
                               "the same event again (search, type, item) is stored once and answered with "
                               "the first one's event_id and duplicate: true",
                "properties": {
                    "search_id": {"type": "string", "pattern": "^[0-9a-f]{1,64}$"},
                    "type": {"type": "string", "enum": ["click", "helpful", "not_helpful", "ticket_created", "vote"]},
                    "item_id": {"type": "string", "minLength": 1, "maxLength": 200},
                    "item_type": {"type": "string", "enum": ["article", "idea"]},
                    "requester": {"type": "object", "nullable": True, "additionalProperties": False, "properties": {
                        "customer_id": {"type": "string", "nullable": True, "minLength": 1, "maxLength": 200,
                                        "description": "an integer is accepted and stored as its text"},
                        "email": {"type": "string", "nullable": True, "format": "email", "maxLength": 320},
                        "mrr": {"type": "number", "nullable": True, "minimum": 0, "maximum": 1e12, "exclusiveMaximum": True}}},
                    "session": {"type": "string", "nullable": True, "minLength": 1, "maxLength": 200,
                                "description": "the widget session; counted by the per-session rate limit"},
                },
            },
            "SuggestResponse": {
                "type": "object",
                "required": ["search_id", "answered", "results"],
                "properties": {
                    "search_id": {"type": "string"},
                    "answered": {"type": "boolean"},
                    "results": {"type": "array", "items": {"type": "object", "required": ["type", "id", "title", "score"], "properties": {
                        "type": {"type": "string", "enum": ["article", "idea"]}, "id": {"type": "string"},
                        "title": {"type": "string"}, "url": {"type": "string"}, "snippet": {"type": "string"},
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                        "locale": {"type": "string", "description": "an article's language tag (ideas have none)"}}}},
                },
            },
        },
    },
}

from .board_openapi import BOARD_PATHS, BOARD_SCHEMAS  # noqa: E402

for _path, _ops in BOARD_PATHS.items():
    OPENAPI["paths"].setdefault(_path, {}).update(_ops)
OPENAPI["components"]["schemas"].update(BOARD_SCHEMAS)
