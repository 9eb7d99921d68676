"""Rate limits on the public API, per client address and per widget session (429 + Retry-After).

The buckets are in deflect/ratelimit.py; this module decides which requests count, who the
client is (the TCP peer, or X-Forwarded-For from a trusted proxy) and what a refusal looks like.
Admin endpoints are not counted here: they need the admin token instead.
"""

from __future__ import annotations

import ipaddress

from flask import Flask, Request, request

from ..ratelimit import RateLimiter
from ..settings import Settings
from .errors import error_response
from .validation import MAX_SESSION_CHARS, parsed_json

# Endpoints anyone may call, and so the ones a script could hammer. Every other /api route needs
# the admin token (tests/test_access.py checks both against the URL map).
RATE_LIMITED = frozenset(
    {
        "api.suggest",
        "api.post_event",
        "api.list_articles",
        "api.get_article",
        "api.list_ideas",
        "board_api.get_idea",
        "board_api.vote_idea",
    }
)
# Public but never limited: health checks from load balancers, and the API description.
UNLIMITED_PUBLIC = frozenset({"api.healthz", "api.openapi", "static"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(value: str) -> list[Network]:
    """The trusted_proxies setting as networks; a bad entry stops the server with a clear message."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {item!r} is not an IP address or network") from None
    return networks


def _ip(value: str):
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _trusted(address, networks: list[Network]) -> bool:
    return address is not None and any(address in net for net in networks)


def client_address(remote_addr: str | None, forwarded_for: str | None, trusted: list[Network]) -> str:
    """Who sent the request: the peer, or the nearest untrusted hop of X-Forwarded-For behind trusted proxies.

    X-Forwarded-For is read right to left (each proxy appends the address it saw), so a client
    cannot pick its own address by sending the header itself: only hops added by trusted
    proxies are skipped.
    """
    peer = remote_addr or "unknown"
    if not trusted or not forwarded_for or not _trusted(_ip(peer), trusted):
        return peer
    client = peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        address = _ip(hop)
        if address is None:
            break  # garbage in the header: keep the last address a trusted proxy vouched for
        client = str(address)
        if not _trusted(address, trusted):
            break
    return client


def client_group(address: str) -> str:
    """Whom rate limits and alias confirmations count as one client: an IPv4 address, or an IPv6
    /64. One subscriber's line or host gets a whole /64 and may send from any of its 2^64
    addresses, so counting IPv6 addresses one by one would give a script as many "people" as it
    likes (to confirm an alias from several addresses, say)."""
    ip = _ip(address)
    if ip is None or ip.version == 4:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def request_client_group() -> str:
    """client_group of the current request's client."""
    return client_group(request_client())


def request_client(req: Request | None = None) -> str:
    """The client address of the current request, as the rate limits (and alias limits) see it."""
    from flask import current_app

    req = req or request
    trusted = current_app.extensions.get("deflect_trusted_proxies", [])
    return client_address(req.remote_addr, req.headers.get("X-Forwarded-For"), trusted)


def _session_of(req: Request) -> str | None:
    """The body's `session` field when it is a plausible one (anything else is left to validation)."""
    if req.method != "POST" or req.mimetype != "application/json":
        return None
    try:
        data = parsed_json(req)
    except (ValueError, RecursionError):
        return None
    session = data.get("session") if isinstance(data, dict) else None
    return session if isinstance(session, str) and 1 <= len(session) <= MAX_SESSION_CHARS else None


def _refuse(field: str, retry_after: int, who: str):
    body, status = error_response(
        429, "rate_limited", f"too many requests from this {who}; retry after {retry_after} s", field
    )
    body.headers["Retry-After"] = str(retry_after)
    return body, status


def install_limits(app: Flask, settings: Settings) -> None:
    """Count each public API request against its client and its session; refuse with 429 past either limit."""
    app.extensions["deflect_trusted_proxies"] = parse_trusted_proxies(settings.trusted_proxies)
    per_client = RateLimiter(settings.rate_limit_per_client) if settings.rate_limit_per_client > 0 else None
    per_session = RateLimiter(settings.rate_limit_per_session) if settings.rate_limit_per_session > 0 else None
    app.extensions["deflect_limiters"] = {"client": per_client, "session": per_session}
    app.extensions["deflect_refusal_log"] = RateLimiter(1)  # refused admin tokens: logged once a minute per address
    wrong_tokens = settings.wrong_token_limit_per_client
    app.extensions["deflect_token_guesses"] = RateLimiter(wrong_tokens) if wrong_tokens > 0 else None
    if per_client is None and per_session is None:
        return

    @app.before_request
    def _rate_limit():
        if request.endpoint not in RATE_LIMITED or request.method == "OPTIONS":
            return None
        if per_client is not None:
            decision = per_client.hit(request_client_group())
            if not decision.allowed:
                return _refuse("client", decision.retry_after_seconds, "client address")
        if per_session is not None:
            session = _session_of(request)
            if session is not None:
                decision = per_session.hit(session)
                if not decision.allowed:
                    return _refuse("session", decision.retry_after_seconds, "session")
        return None
