"""JSON errors for every failure: {"error": {"code", "message", "field"?, ...details}}; no tracebacks."""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from ..ideas import show_id
from ..outage import RETRY_AFTER_SECONDS, is_database_unavailable, log_failure, short_reason

log = logging.getLogger(__name__)


PAYLOAD_TOO_LARGE = "payload_too_large"
BODY_TOO_LARGE_MESSAGE = "request body is larger than 16 KB"


def loggable(text: str) -> str:
    """`text` from a request (a path, an Origin) with quotes, backslashes and control characters as
    \\xNN: one request stays one log line, and nobody can write a line of their own into the log."""
    return "".join(c if c.isprintable() and c not in '"\\' else f"\\x{ord(c):02x}" for c in text)


class ApiError(Exception):
    """`details`: more keys of the error object, for a client to act on (a duplicate title's `idea_id`)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        details: dict | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.details = details or {}
        self.retry_after = retry_after  # seconds, sent as Retry-After


def not_found(noun: str, item_id: str) -> ApiError:
    """The 404 for an id in the path that names nothing: "no idea with id 'x'", field "id"."""
    return ApiError(404, "not_found", f"no {noun} with id {show_id(item_id)}", "id")


def error_response(status: int, code: str, message: str, field: str | None = None, details: dict | None = None):
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    error |= details or {}
    return jsonify({"error": error}), status


class _EveryFewSeconds:
    """One log line per key every `seconds`, saying how many it stood for: a database restart gave
    one WARNING per request (162 identical lines in 21 s)."""

    def __init__(self, seconds: float = 10.0):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last logged, requests since)

    def due(self, key: str) -> int | None:
        """None: stay quiet; else how many requests this line stands for (1 + those held back in
        the window just before; an older window's are no part of this outage)."""
        now = time.monotonic()
        with self._lock:
            last, waiting = self._seen.get(key, (-2 * self.seconds, 0))
            if now - last < self.seconds:
                self._seen[key] = (last, waiting + 1)
                return None
            if len(self._seen) > 1000:  # keys are routes, but keep it bounded whatever comes
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < 2 * self.seconds}
            self._seen[key] = (now, 0)
            return 1 + (waiting if now - last < 2 * self.seconds else 0)



def _is_page_path(path: str) -> bool:
    return not (path.startswith(("/api/", "/static/")) or path == "/healthz")


def register_error_handlers(app: Flask) -> None:
    unavailable_log = _EveryFewSeconds()  # this app's own (a process may hold several)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        body, status = error_response(exc.status, exc.code, exc.message, exc.field, exc.details)
        if status == 401:  # tells HTTP clients which credentials to send (RFC 9110 section 11.6.1)
            body.headers["WWW-Authenticate"] = 'Bearer realm="deflect admin"'
        if exc.retry_after is not None:
            body.headers["Retry-After"] = str(exc.retry_after)
        return body, status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if exc.code == 404 and _is_page_path(request.path):
            # People mistype page addresses: they get the site's "not found" page, programs get JSON.
            return render_template("not_found.html", what="page", nav=""), 404
        if exc.code == 413:  # werkzeug's (a body over MAX_CONTENT_LENGTH), said as deflect's own check says it
            return error_response(413, PAYLOAD_TOO_LARGE, BODY_TOO_LARGE_MESSAGE, "body")
        code = (exc.name or "error").lower().replace(" ", "_")
        body, status = error_response(exc.code or 500, code, exc.description)
        if "Allow" in (exc_headers := dict(exc.get_headers())):  # a 405 says which methods are (RFC 9110 15.5.6)
            body.headers["Allow"] = exc_headers["Allow"]
        return body, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if is_database_unavailable(exc):
            # A known condition (database restarting, unreachable, locked): one line, no traceback;
            # the client may retry (Retry-After), and a load balancer sees 503, not a crash.
            count = unavailable_log.due(f"{request.method} {request.url_rule.rule if request.url_rule else request.path}")
            if count is not None:
                log.warning("%s %s: 503, database unavailable: %s%s", request.method, loggable(request.path), short_reason(exc),
                            f" ({count} requests since the last line)" if count > 1 else "")
            if _is_page_path(request.path):  # a person's browser: a page that says so, not JSON
                page = render_template("unavailable.html", nav="")
                return page, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
            body, status = error_response(
                503, "database_unavailable", "the database is unavailable for a moment; try again shortly"
            )
            body.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return body, status
        log_failure(log, logging.ERROR, "unhandled error", exc)
        return error_response(500, "internal_error", "internal error; the server log has the details")
