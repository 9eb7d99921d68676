"""Flask app factory: thin handlers over deflect's core."""

from __future__ import annotations

from flask import Flask

from ..runtime import Runtime
from ..settings import Settings, load_settings

MAX_BODY_BYTES = 16 * 1024


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = settings or (runtime.settings if runtime else load_settings())
    app = Flask(__name__)
    # One byte over the limit so a truncated chunked body is still seen as too large.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1
    if runtime is None:  # the WSGI entry point (server.py): this app owns its runtime
        runtime = Runtime(settings)
        if settings.watch_kb:
            runtime.watch_kb()
    app.extensions["deflect"] = runtime
    app.extensions["deflect_settings"] = settings

    from .api import api
    from .errors import register_error_handlers
    from .pages import pages
    from .security import install_security

    app.register_blueprint(api)
    app.register_blueprint(pages)
    from .board_api import init_board

    init_board(app)
    register_error_handlers(app)
    install_security(app, settings.cors_origin_list)
    return app
