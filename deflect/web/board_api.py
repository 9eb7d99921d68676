"""Ideas board, idea candidates and the outbox over HTTP (DESIGN sections 3, 5, 7): thin handlers."""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, current_app, jsonify, request

from .api import require_admin, runtime
from .errors import ApiError, not_found
from .validation import MAX_ID, count_param, json_body, only_known_fields, optional_body, requester_fields

log = logging.getLogger(__name__)

board_api = Blueprint("board_api", __name__)
CANDIDATE_STATUSES = ("new", "promoted", "merged", "dismissed", "all")
OUTBOX_STATUSES = ("pending", "delivered", "failed")


def board():
    return current_app.extensions["deflect_board"]


def _candidate_call(fn, *args):
    from ..candidates import CandidateError

    try:
        return fn(*args)
    except CandidateError as exc:
        code = {404: "not_found", 409: "conflict"}.get(exc.status, "invalid_field")
        raise ApiError(exc.status, code, str(exc), exc.field, exc.details) from None


def _idea_call(fn, *args):
    from ..ideas import DuplicateTitle, IdeaConflict, IdeaError, IdeaNotFound

    try:
        return fn(*args)
    except IdeaNotFound as exc:
        raise ApiError(404, "not_found", str(exc), exc.field) from None
    except DuplicateTitle as exc:  # names the idea with that title, to use instead
        raise ApiError(409, "conflict", f"{exc}; use that idea, or choose another title", "title",
                       {"idea_id": exc.idea_id}) from None
    except IdeaConflict as exc:
        raise ApiError(409, "conflict", str(exc), exc.field) from None
    except IdeaError as exc:
        raise ApiError(400, "invalid_field", str(exc), exc.field) from None


def _string_field(data: dict, field: str, max_len: int) -> str | None:
    value = data.get(field)
    if value is not None and (not isinstance(value, str) or len(value) > max_len):
        raise ApiError(400, "invalid_field", f"{field} must be a string of at most {max_len} characters", field)
    return value


MAX_EXCLUDE = 1000


def _exclude_field(data: dict) -> tuple[str, ...]:
    """`exclude`: search ids of the candidate's questions that are not about the idea (review.promote)."""
    value = data.get("exclude", [])
    if not isinstance(value, list) or len(value) > MAX_EXCLUDE or not all(isinstance(v, str) and v for v in value):
        raise ApiError(400, "invalid_field", f"exclude must be a list of at most {MAX_EXCLUDE} search ids", "exclude")
    return tuple(value)


# --- candidates ------------------------------------------------------------------------------


@board_api.post("/api/clusters/rebuild")
def rebuild_clusters():
    require_admin()
    optional_body(request)
    return jsonify(board().rebuild())


@board_api.get("/api/clusters")
def list_clusters():
    require_admin()
    status = request.args.get("status") or None
    if status is not None and status not in CANDIDATE_STATUSES:
        raise ApiError(400, "invalid_field", f"status must be one of {', '.join(CANDIDATE_STATUSES)}", "status")
    return jsonify({"clusters": board().candidates(status)})


@board_api.get("/api/clusters/<candidate_id>")
def get_cluster(candidate_id: str):
    require_admin()
    found = board().candidate(candidate_id)
    if found is None:
        raise not_found("candidate", candidate_id)
    return jsonify(found)


@board_api.post("/api/clusters/<candidate_id>/promote")
def promote_cluster(candidate_id: str):
    require_admin()
    data = optional_body(request, ("title", "description", "exclude"))
    title = _string_field(data, "title", 300)
    description = _string_field(data, "description", 5000)
    return jsonify(_candidate_call(board().promote, candidate_id, title, description, _exclude_field(data)))


@board_api.post("/api/clusters/<candidate_id>/merge")
def merge_cluster(candidate_id: str):
    require_admin()
    data = json_body(request)
    only_known_fields(data, ("idea_id", "exclude"))
    if "idea_id" not in data:
        raise ApiError(400, "invalid_field", "idea_id is required", "idea_id")
    return jsonify(_candidate_call(board().merge, candidate_id, data["idea_id"], _exclude_field(data)))


@board_api.post("/api/clusters/<candidate_id>/dismiss")
def dismiss_cluster(candidate_id: str):
    require_admin()
    optional_body(request)
    return jsonify(_candidate_call(board().dismiss, candidate_id))


# --- ideas -----------------------------------------------------------------------------------


@board_api.post("/api/ideas")
def create_idea():
    require_admin()
    data = json_body(request)
    unknown = set(data) - {"id", "title", "description", "status", "votes"}
    if unknown:
        field = sorted(unknown)[0]
        raise ApiError(400, "invalid_field", "an idea takes id, title, description, status and votes", field)
    return jsonify(_idea_call(board().create_idea, data)), 201


@board_api.get("/api/ideas/<idea_id>")
def get_idea(idea_id: str):
    from ..ideas import get_idea as load
    from ..votes import with_requesters

    db = runtime().db
    idea = load(db, idea_id)
    if idea is None:
        raise not_found("idea", idea_id)
    with db.connect() as conn:
        return jsonify(with_requesters(conn, idea))


@board_api.get("/api/ideas/<idea_id>/requesters")
def idea_requesters(idea_id: str):
    """Who asked for the idea, with their details (admin): the public idea shows only counts."""
    require_admin()
    found = board().requesters(idea_id)
    if found is None:
        raise not_found("idea", idea_id)
    return jsonify(found)


@board_api.patch("/api/ideas/<idea_id>")
def patch_idea(idea_id: str):
    require_admin()
    return jsonify(_idea_call(board().update_idea, idea_id, json_body(request)))


@board_api.post("/api/ideas/<idea_id>/vote")
def vote_idea(idea_id: str):
    # JSON only, so another site cannot make its visitors' browsers vote (cross-site vote stuffing).
    data = optional_body(request, ("requester",), json_only=True)
    requester = requester_fields(data.get("requester"))
    if requester is not None and not any(requester.values()):
        requester = None
    # With the admin token (a vote from your own server) a repeat vote may update what is known
    # of the requester; a wrong token is refused rather than quietly taken as a public vote.
    trusted = "Authorization" in request.headers
    if trusted:
        require_admin()
    return jsonify(_idea_call(board().vote, idea_id, requester, trusted))


# --- outbox ----------------------------------------------------------------------------------


@board_api.get("/api/outbox")
def list_outbox():
    from ..outbox import list_outbox as load

    require_admin()
    status = request.args.get("status") or None
    if status is not None and status not in OUTBOX_STATUSES:
        raise ApiError(400, "invalid_field", f"status must be one of {', '.join(OUTBOX_STATUSES)}", "status")
    limit = count_param(request.args, "limit", 200, 1000)
    after_id = _after_id(request.args.get("after_id"))
    settings = current_app.extensions["deflect_settings"]
    found = load(runtime().db, status, limit=limit, after_id=after_id)
    return jsonify(found | {"webhook_configured": bool(settings.webhook_url)})


def _after_id(given: str | None) -> int | None:
    if given is None or given == "":
        return None
    if not (given.isascii() and given.isdigit() and len(given) <= 12 and int(given) <= MAX_ID):
        raise ApiError(400, "invalid_field", f"after_id must be a notification id (a whole number up to {MAX_ID})", "after_id")
    return int(given)


def _on_notification(action, notification_id: str):
    """Run `action(engine, id)` on one notification: 404 naming `id` when there is none, 409 on a conflict."""
    from ..outbox import OutboxConflict

    require_admin()
    optional_body(request)
    digits = notification_id.isascii() and notification_id.isdigit() and len(notification_id) <= 10
    if not digits or int(notification_id) > MAX_ID:
        raise not_found("notification", notification_id)
    try:
        row = action(runtime().db, int(notification_id))
    except OutboxConflict as exc:
        raise ApiError(409, "conflict", str(exc), "id") from None
    if row is None:
        raise not_found("notification", notification_id)
    return jsonify(row)


@board_api.post("/api/outbox/<notification_id>/retry")
def retry_notification(notification_id: str):
    from ..outbox import retry

    return _on_notification(retry, notification_id)


@board_api.post("/api/outbox/<notification_id>/delivered")
def notification_delivered(notification_id: str):
    """For a mailer of your own that reads the outbox instead of receiving the webhook."""
    from ..outbox import mark_delivered

    return _on_notification(mark_delivered, notification_id)


def init_board(app: Flask) -> None:
    """Register the blueprint and the Board; check candidates after every index change (filling the
    outbox); with a webhook URL, start the delivery worker."""
    from ..board import Board
    from ..outbox import OutboxWorker

    rt = app.extensions["deflect"]
    the_board = Board(rt)
    app.extensions["deflect_board"] = the_board
    app.register_blueprint(board_api)
    # An index change may publish an article that answers a candidate: its requesters are
    # queued then, with or without a webhook (`deflect outbox deliver` can send them later).
    the_board.watch_index()
    rt.on_close(the_board.close)  # stops before the runtime it uses
    settings = app.extensions["deflect_settings"]
    if settings.webhook_url:
        worker = app.extensions["deflect_outbox"] = OutboxWorker(rt.db, settings, interval=1.0).start()
        rt.on_close(worker.stop)
