"""Flask app factory: thin handlers over deflect's core."""

from __future__ import annotations

from flask import Flask

from ..runtime import Runtime
from ..settings import Settings, load_settings

MAX_BODY_BYTES = 16 * 1024


def create_app(settings: Settings | None = None, runtime: Runtime | None = None, access_log: bool = False) -> Flask:
    """The deflect app; `access_log` logs one line per request (deflect.web.access_log)."""
    settings = settings or (runtime.settings if runtime else load_settings())
    app = Flask(__name__)
    # One byte over the limit so a truncated chunked body is still seen as too large.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1
    app.json.ensure_ascii = False  # Korean as UTF-8, not \uXXXX: readable with curl, half the bytes
    if runtime is None:  # the WSGI entry point (server.py): this app owns its runtime
        runtime = Runtime(settings)
        if settings.watch_kb:
            runtime.watch_kb()
        _close_when_the_process_stops(runtime)
    app.extensions["deflect"] = runtime
    app.extensions["deflect_settings"] = settings
    # "Contact support" on article pages: the deployment's own help desk, else the demo form.
    app.jinja_env.globals["support_url"] = settings.support_url.strip()
    app.jinja_env.globals["assumed_window"] = _duration(settings.assumed_window_seconds)  # the dashboard's terms

    from .api import api
    from .errors import register_error_handlers
    from .limits import install_limits
    from .pages import pages
    from .security import install_security
    from .validation import install_input_guards

    if access_log:  # first, so its clock starts before a rate limit or a guard can answer
        from .access_log import install_access_log

        install_access_log(app)
    app.register_blueprint(api)
    app.register_blueprint(pages)
    from .board_api import init_board

    init_board(app)
    register_error_handlers(app)
    install_security(app, settings.cors_origin_list)
    install_limits(app, settings)  # after security: a preflight is answered before it counts
    install_input_guards(app)
    return app


def _duration(seconds: int) -> str:
    """1800 -> "30 minutes", 3600 -> "1 hour", 90 -> "90 seconds": as a support lead reads it."""
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def _close_when_the_process_stops(runtime: Runtime) -> None:
    """Under a WSGI server (server.py) the process owns the runtime: searches still queued for the
    database are written when it stops, as `deflect serve` does. gunicorn's workers exit through
    sys.exit on SIGTERM (atexit runs); waitress-serve keeps Python's default SIGTERM, which kills
    the process without any cleanup, so it is made a SystemExit here (only when nobody set a handler)."""
    import atexit
    import signal
    import sys
    import threading

    atexit.register(runtime.close)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))


def make_server(app: Flask, host: str, port: int, threads: int, sock=None):
    """The waitress server `deflect serve` runs.

    waitress removes X-Forwarded-For and the other proxy headers before the app sees them
    (clear_untrusted_proxy_headers) unless it was told of a proxy itself; deflect reads them
    only from the proxies of setting trusted_proxies (limits.request_client), so waitress
    must pass them on, or every visitor behind a proxy would share the proxy's rate limits.
    """
    from waitress import create_server

    where = {"sockets": [sock]} if sock is not None else {"host": host, "port": port}  # sock: a --workers worker's
    return create_server(app, threads=threads, ident="deflect", clear_untrusted_proxy_headers=False, **where)
