"""OpenAPI paths and schemas of the ideas board, idea candidates and the outbox (merged into OPENAPI)."""

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_E = {code: {"description": text, **_ERROR} for code, text in (
    ("400", "bad field"), ("401", "admin token missing or wrong"), ("404", "no such candidate or idea"),
    ("409", "not allowed in the current status (e.g. merging into a shipped, declined or merged idea, voting on a "
            "shipped one, retrying a delivered notification)"),
    ("415", "not application/json"))}
# A title another idea has (case, spacing and surrounding punctuation ignored): one idea per request.
_TITLE_409 = {"description": _E["409"]["description"] + "; or the title of another idea (case, spacing and the "
              "punctuation around it ignored): field title, and idea_id names that idea (or the one it was merged "
              "into), to use or merge into instead", **_ERROR}


def _title_409(op: dict) -> dict:
    """`op` whose 409 also means "another idea has this title" (promote, create, edit)."""
    op["responses"]["409"] = _TITLE_409
    return op
_ADMIN = [{"bearer": []}]


def _ref(name: str) -> dict:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def _id(name: str = "id") -> list[dict]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


def _admin(summary: str, ok: dict, *errors: str, body: dict | None = None, params: list | None = None) -> dict:
    op = {"summary": summary, "security": _ADMIN, "responses": {"200": ok, **{c: _E[c] for c in ("401", *errors)}}}
    if body is not None:
        op["requestBody"] = {"required": bool(body.get("required")), "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


_CANDIDATE_ACTION = {"description": "the candidate and its idea", **_ref("CandidateAction")}
_NO_FIELDS = {"type": "object", "additionalProperties": False, "properties": {},
              "description": "no body, or {}: any field is a 400 naming it"}
_EXCLUDE = {"type": "array", "maxItems": 1000, "items": {"type": "string", "minLength": 1},
            "description": "search ids of the candidate's questions that are not about the idea: they do not "
                           "become its aliases, and whoever asked only them is not its requester"}

BOARD_PATHS = {
    "/api/clusters/rebuild": {"post": _admin(
        "Re-cluster every unanswered search into idea candidates (ids and review decisions carry over)",
        {"description": "what happened: pool, candidates, new, kept, returned, retired (reviewed ones with no "
                        "question left in the pool), revived (retired reviewed candidates taken back), notifications",
         **_ref("RebuildReport")}, "400", "415", body=_NO_FIELDS)},
    "/api/clusters": {"get": _admin(
        "Idea candidates, largest first (new unanswered searches join their nearest candidate first)",
        {"description": "candidates", "content": {"application/json": {"schema": {"type": "object", "properties": {
            "clusters": {"type": "array", "items": {"$ref": "#/components/schemas/Candidate"}}}}}}},
        "400", params=[{"name": "status", "in": "query", "required": False, "schema": {
            "type": "string", "enum": ["new", "promoted", "merged", "dismissed", "all"]},
            "description": "default: every active candidate that is not dismissed"}])},
    "/api/clusters/{id}": {"get": _admin("One candidate", {"description": "candidate", **_ref("Candidate")}, "404",
                                         params=_id())},
    "/api/clusters/{id}/promote": {"post": _title_409(_admin(
        "Create an idea from the candidate (indexed at once); its requesters become the idea's votes",
        _CANDIDATE_ACTION, "400", "404", "409", params=_id(),
        body={"type": "object", "additionalProperties": False, "properties": {
            "title": {"type": "string", "maxLength": 300}, "description": {"type": "string", "maxLength": 5000},
            "exclude": _EXCLUDE}}))},
    "/api/clusters/{id}/merge": {"post": _admin(
        "Fold the candidate into an existing open idea (its requesters become votes there)",
        _CANDIDATE_ACTION, "400", "404", "409", "415", params=_id(),
        body={"type": "object", "required": ["idea_id"], "additionalProperties": False,
              "properties": {"idea_id": {"type": "string"}, "exclude": _EXCLUDE}})},
    "/api/clusters/{id}/dismiss": {"post": _admin(
        "Hide the candidate until it grows markedly (cluster_regrow_factor)", _CANDIDATE_ACTION, "400", "404", "409",
        params=_id(), body={"type": "object", "additionalProperties": False, "properties": {},
                            "description": "no fields (the body may be left out)"})},
    "/api/ideas": {"post": _title_409({
        "summary": "Create an idea (admin); suggested at once while open, planned or in progress",
        "security": _ADMIN,
        "requestBody": {"required": True, **_ref("IdeaInput")},
        "responses": {"201": {"description": "the idea", **_ref("Idea")}, **{c: _E[c] for c in ("400", "401", "409", "415")}},
    })},
    "/api/ideas/{id}": {
        "get": {"summary": "One idea with votes, requesters and cumulative MRR", "parameters": _id(),
                "responses": {"200": {"description": "idea", **_ref("Idea")}, "404": _E["404"]}},
        "patch": {
            "summary": "Edit an idea (admin): title, description, status; merged_into moves votes and requesters. "
                       "Becoming shipped notifies every requester through the outbox.",
            "security": _ADMIN, "parameters": _id(),
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "properties": {
                    "title": {"type": "string", "minLength": 1, "maxLength": 300, "pattern": "\\S"},
                    "description": {"type": "string"},
                    "status": {"type": "string", "enum": ["open", "planned", "in_progress", "shipped", "declined", "merged"]},
                    "merged_into": {"type": "string", "nullable": True}}}}}},
            "responses": {"200": {"description": "the idea (+ notifications_queued: requesters told of shipping)", "content": {
                "application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/Idea"}, {
                    "type": "object", "properties": {"notifications_queued": {"type": "integer", "minimum": 0}}}]}}}},
                          **{c: _E[c] for c in ("400", "401", "404", "409", "415")} | {"409": _TITLE_409}},
        },
    },
    "/api/ideas/{id}/requesters": {"get": _admin(
        "Who asked for the idea (admin): every requester with their details, highest MRR first; the public "
        "idea shows only their count and MRR. A merged idea's requesters are on its target.",
        {"description": "the idea's requesters", **_ref("IdeaRequesters")}, "404", params=_id())},
    "/api/ideas/{id}/vote": {"post": {
        "summary": "Vote for an idea, optionally as a requester (a merged idea's votes go to its target). "
                   "One vote per requester (customer_id, else email, case-insensitive): voting again counts "
                   "nothing (counted: false) and changes nothing about the requester, unless sent with the "
                   "admin token (from your own server): then a higher MRR and a missing email are taken. "
                   "Voting is closed (409) on shipped and declined ideas.",
        "security": [{}, *_ADMIN],  # public; the admin token is optional (401 when given and wrong)
        "parameters": _id(),
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "properties": {
                "requester": {"$ref": "#/components/schemas/Requester"}}}}}},
        "responses": {"200": {"description": "the idea voted for (+ counted)", **_ref("Idea")},
                      **{c: _E[c] for c in ("400", "401", "404", "409", "415")}},
    }},
    "/api/outbox": {"get": _admin(
        "Notifications to requesters and their webhook delivery state: the most recent `limit`, or, with "
        "`after_id`, the first `limit` after that id, oldest first (a mailer of your own polls with the last id "
        "it saw, sends, then marks each delivered)",
        {"description": "counts and notifications", **_ref("Outbox")},
        "400", params=[{"name": "status", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["pending", "delivered", "failed"]}},
                       {"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200}},
                       {"name": "after_id", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 0}}])},
    "/api/outbox/{id}/delivered": {"post": _admin(
        "Mark a notification delivered by your own mailer: deflect will not send it (again marking one "
        "delivered changes nothing)",
        {"description": "the notification", **_ref("Notification")},
        "400", "404", "415", body=_NO_FIELDS,
        params=[{"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}])},
    "/api/outbox/{id}/retry": {"post": _admin(
        "Send a failed or pending notification again now with a fresh attempt budget",
        {"description": "the notification", **_ref("Notification")},
        "400", "404", "409", "415", body=_NO_FIELDS,
        params=[{"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}])},
}

_PERSON = {"type": "object", "properties": {
    "customer_id": {"type": "string", "nullable": True}, "email": {"type": "string", "nullable": True},
    "mrr": {"type": "number", "nullable": True}}}

BOARD_SCHEMAS = {
    "IdeaRequesters": {"type": "object", "properties": {
        "idea_id": {"type": "string"}, "status": {"type": "string"}, "merged_into": {"type": "string", "nullable": True},
        "requesters": {"type": "array", "items": _PERSON}, "mrr": {"type": "number"}}},
    "Requester": {"type": "object", "additionalProperties": False, "properties": {
        "customer_id": {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 200}, {"type": "integer"}],
                        "description": "an integer is stored as its decimal string (a CRM's numeric id)"},
        "email": {"type": "string", "format": "email", "maxLength": 320},
        "mrr": {"type": "number", "minimum": 0, "maximum": 1e12, "exclusiveMaximum": True}}},
    "IdeaInput": {"type": "object", "required": ["title"], "additionalProperties": False, "properties": {
        "id": {"type": "string", "pattern": "^[\\w.-]{1,200}$"},
        "title": {"type": "string", "minLength": 1, "maxLength": 300, "pattern": "\\S"}, "description": {"type": "string"},
        "status": {"type": "string", "enum": ["open", "planned", "in_progress", "shipped", "declined"]},
        "votes": {"type": "integer", "minimum": 0, "maximum": 1000000000}}},
    "Idea": {"type": "object", "required": ["id", "title", "description", "status", "votes"], "properties": {
        "id": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
        "status": {"type": "string"}, "merged_into": {"type": "string", "nullable": True},
        "votes": {"type": "integer"}, "requesters": {"type": "integer"}, "mrr": {"type": "number"},
        "counted": {"type": "boolean", "description": "votes only: false when this requester had voted already"},
        "created_at": {"type": "number"}, "updated_at": {"type": "number"},
        "shipped_at": {"type": "number", "nullable": True, "description": "when it became shipped"}}},
    "Candidate": {"type": "object", "properties": {
        "id": {"type": "string"}, "label": {"type": "string"}, "keywords": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string", "enum": ["new", "promoted", "merged", "dismissed"]}, "active": {"type": "boolean"},
        "size": {"type": "integer"}, "first_seen": {"type": "number"}, "last_seen": {"type": "number"},
        "weekly": {"type": "array", "items": {"type": "object", "properties": {
            "week": {"type": "string", "example": "2026-W47"}, "count": {"type": "integer"}}}},
        "requesters": {"type": "integer"}, "mrr": {"type": "number"},
        "top_requesters": {"type": "array", "items": _PERSON,
                           "description": "up to 10 requesters, highest MRR first (not those of left-out questions)"},
        "queries": {"type": "array", "items": {"type": "object", "properties": {
            "search_id": {"type": "string"}, "text": {"type": "string"}, "joined": {"type": "boolean"},
            "excluded": {"type": "boolean", "description": "Left out by an admin when promoting or merging: "
                         "not about the idea; its askers are not the idea's requesters."},
            "answered_by_article": {"type": "string", "nullable": True, "description": "the article a helpful "
                                    "event on this search named: no alias is learned from such a question"}}}},
        "created_at": {"type": "number"}, "updated_at": {"type": "number"},
        "dismissed_size": {"type": "integer", "description": "dismissed ones: their size when dismissed "
                           "(they come back once grown by cluster_regrow_factor)"},
        "nearest": {"type": "object", "nullable": True, "properties": {
            "type": {"type": "string", "enum": ["article", "idea"]}, "id": {"type": "string"},
            "title": {"type": "string"}, "score": {"type": "number"}}},
        "idea_id": {"type": "string", "nullable": True}, "answered_by": {"type": "string", "nullable": True}}},
    "RebuildReport": {"type": "object", "properties": {
        name: {"type": "integer"} for name in (
            "pool", "candidates", "new", "kept", "returned", "retired", "revived", "notifications",
            "requesters_added")}},
    "Notification": {"type": "object", "required": ["id", "kind", "status", "attempts"], "properties": {
        "id": {"type": "integer"}, "kind": {"type": "string", "enum": ["idea_shipped", "article_published"]},
        "dedupe_key": {"type": "string"}, "customer_id": {"type": "string", "nullable": True},
        "email": {"type": "string", "nullable": True}, "payload": {"type": "object"},
        "status": {"type": "string", "enum": ["pending", "delivered", "failed"]}, "attempts": {"type": "integer"},
        "next_attempt_at": {"type": "number"}, "last_error": {"type": "string", "nullable": True},
        "last_status_code": {"type": "integer", "nullable": True}, "created_at": {"type": "number"},
        "delivered_at": {"type": "number", "nullable": True}}},
    "Outbox": {"type": "object", "required": ["counts", "notifications"], "properties": {
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "notifications": {"type": "array", "items": {"$ref": "#/components/schemas/Notification"}},
        "webhook_configured": {"type": "boolean"}}},
    "CandidateAction": {"type": "object", "properties": {
        "candidate": {"$ref": "#/components/schemas/Candidate"}, "idea": {"$ref": "#/components/schemas/Idea"},
        "requesters_added": {"type": "integer"},
        "aliases_added": {"type": "integer", "description": "promote, merge: candidate questions that became "
                          "active aliases of the idea (at most 50, the most recent distinct ones)"}}},
}
