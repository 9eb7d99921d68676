"""Response headers: CORS for the public API (listed origins only) and browser hardening for everything."""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

from flask import Flask, Response, request

from .errors import loggable

log = logging.getLogger(__name__)

# Pages run only our own static scripts and styles; nothing inline, nothing from a CDN.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# JSON never needs to run anything, so API answers get the strictest policy.
API_CSP = "default-src 'none'; frame-ancestors 'none'"

# Cross-origin callers may send JSON but not credentials or an Authorization header, so a
# listed origin can use the public API from a visitor's browser but never the admin one.
CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Content-Type"
CORS_MAX_AGE = "600"
# A widget on a listed origin may read how long to wait after a 429.
CORS_EXPOSE = "Retry-After"


# The widget's own files are public and the same for every page: any origin may read them, so a
# host page can load them with integrity="sha384-..." crossorigin="anonymous" (SRI).
WIDGET_FILES = frozenset({"/static/deflect-widget.js", "/static/deflect-widget.css"})


def _is_cors_path(path: str) -> bool:
    return path.startswith("/api/") or path == "/healthz"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_key(value: str) -> str | None:
    """An origin as browsers send it ("https://support.example.com", "http://localhost:8711"):
    scheme and host in lower case, no default port, no trailing slash. None if `value` is not one."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in _DEFAULT_PORTS or not host or "*" in host or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[scheme] else "")


def allowed_origins(entries: list[str]) -> tuple[set[str], list[str]]:
    """The cors_origins setting as origin keys ("*" kept), and the entries that are not origins."""
    keys, unusable = set(), []
    for entry in entries:
        key = "*" if entry.strip() == "*" else origin_key(entry)
        if key is None:
            unusable.append(entry)
        else:
            keys.add(key)
    return keys, unusable


def allowed_origin(origin: str | None, allowed: set[str]) -> str | None:
    """The value for Access-Control-Allow-Origin, or None when this origin is not listed."""
    if not origin:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin_key(origin) in allowed else None


def install_security(app: Flask, cors_origins: list[str]) -> None:
    """Answer CORS preflights for the API and add CORS and hardening headers to every response."""
    allowed, unusable = allowed_origins(cors_origins)
    for entry in unusable:
        log.warning(
            "cors_origins: %r is not an origin like https://support.example.com (scheme, host, optional port); ignored",
            entry,
        )

    refused = RefusedOrigins()

    @app.before_request
    def _preflight():
        if request.method == "OPTIONS" and _is_cors_path(request.path):
            # Answered here so a preflight never depends on the route (or reaches a handler).
            return Response(status=204)
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        if request.path.startswith("/api/") and request.path != "/api/openapi.json":
            # Answers about someone (requesters' emails, questions, a search's results): no cache
            # between here and the caller keeps them.
            headers.setdefault("Cache-Control", "no-store")
        if _is_cors_path(request.path):
            headers.setdefault("Content-Security-Policy", API_CSP)
            response.vary.add("Origin")
            origin = allowed_origin(request.headers.get("Origin"), allowed)
            if origin is None and request.method == "OPTIONS" and request.headers.get("Origin"):
                # Only a preflight: a browser never sends one for deflect's own pages (same origin),
                # whatever host a proxy in front makes deflect see.
                refused.note(request.headers["Origin"])
            if origin:
                headers["Access-Control-Allow-Origin"] = origin
                headers["Access-Control-Expose-Headers"] = CORS_EXPOSE
                if request.method == "OPTIONS":
                    headers["Access-Control-Allow-Methods"] = CORS_METHODS
                    headers["Access-Control-Allow-Headers"] = CORS_HEADERS
                    headers["Access-Control-Max-Age"] = CORS_MAX_AGE
        elif request.path in WIDGET_FILES:
            headers["Access-Control-Allow-Origin"] = "*"
        elif response.mimetype == "text/html":
            headers.setdefault("Content-Security-Policy", PAGE_CSP)
            headers.setdefault("X-Frame-Options", "DENY")
        return response


class RefusedOrigins:
    """Says once per origin (for the first MAX_SAID origins) that a browser on a page outside
    cors_origins called the API: the widget there only says suggestions are unavailable, and
    whoever mistyped the setting would otherwise find nothing in the log."""

    MAX_SAID = 20

    def __init__(self) -> None:
        self._said: set[str] = set()
        self._lock = threading.Lock()

    def note(self, origin: str) -> None:
        key = origin_key(origin)
        if key is None:
            return
        with self._lock:
            if key in self._said or len(self._said) >= self.MAX_SAID:
                return
            self._said.add(key)
        log.warning(
            "CORS: a page on %s called the API and was refused: it is not in cors_origins "
            "(said once per origin); add it there if the widget is meant to work on it", loggable(key),
        )  # fmt: skip

