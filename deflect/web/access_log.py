"""One line per request (`deflect serve --access-log`): what an operator greps when a client says
"it failed at 10:42". waitress writes none of its own.

A line carries the client address (as the rate limits see it, so behind a trusted proxy the
visitor's), method, path, status, response size and time taken, never the query string nor the
body: a link may carry an email or a token, and a search's text goes through the database's
redaction, which a log file would bypass.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from .errors import loggable
from .limits import request_client

ACCESS_LOGGER = "deflect.access"

log = logging.getLogger(ACCESS_LOGGER)


def install_access_log(app: Flask) -> None:
    """Log every request the app answers, errors included, at INFO on the `deflect.access` logger."""

    @app.before_request
    def _note_start() -> None:
        g.deflect_request_started = time.perf_counter()

    @app.after_request
    def _log_request(response: Response) -> Response:
        log.info(access_line(response))
        return response


def access_line(response: Response) -> str:
    """`127.0.0.1 "POST /api/suggest" 200 412 B 8.4 ms` for the current request."""
    started = g.get("deflect_request_started")
    took = f"{(time.perf_counter() - started) * 1000:.1f} ms" if started is not None else "- ms"
    # What the headers say (a file's size too); never counted by reading a streamed body. A HEAD
    # answer sends no body.
    size = 0 if request.method == "HEAD" else response.content_length
    size_text = f"{size} B" if size is not None else "- B"
    return f'{request_client()} "{request.method} {loggable(request.path)}" {response.status_code} {size_text} {took}'
