"""Access review over real HTTP, driven by the app's own URL map: a route added later without the
admin check, or without a description in /api/openapi.json, fails here."""

from __future__ import annotations

import dataclasses

import pytest
import requests
from conftest import ADMIN_TOKEN, serve_app

from deflect.web.limits import RATE_LIMITED, UNLIMITED_PUBLIC
from deflect.web.spec import openapi_path

TIMEOUT = 60
ROUTE_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


@pytest.fixture(scope="module")
def app_and_base(sample_runtime):
    from deflect.web import create_app

    app = create_app(sample_runtime.settings, sample_runtime)
    with serve_app(app) as base:
        yield app, base


def _url(rule) -> str:
    """A concrete URL for a rule: every path parameter filled with something that names nothing."""
    values = {name: (424242 if type(conv).__name__ == "IntegerConverter" else "no-such-thing")
              for name, conv in rule._converters.items()}
    return rule.build(values, append_unknown=False)[1]


def api_routes(app) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every API route (pages and static files are not API)."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/") or rule.rule == "/healthz"):
            continue
        for method in sorted(set(rule.methods) & set(ROUTE_METHODS)):
            routes.append((rule.endpoint, method, _url(rule)))
    return routes


def admin_routes(app) -> list[tuple[str, str, str]]:
    return [r for r in api_routes(app) if r[0] not in RATE_LIMITED | UNLIMITED_PUBLIC]


def _call(base: str, method: str, url: str, headers: dict | None = None) -> requests.Response:
    # A well-formed body, so a handler that forgot the check would get far enough to answer 2xx/404.
    body = {} if method in ("POST", "PATCH", "PUT") else None
    return requests.request(method, base + url, json=body, headers=headers or {}, timeout=TIMEOUT)


def test_the_url_map_has_the_admin_routes_we_know(app_and_base):
    app, _ = app_and_base
    endpoints = {endpoint for endpoint, _, _ in admin_routes(app)}
    assert {"api.metrics", "api.reindex", "api.list_aliases", "api.delete_alias", "board_api.create_idea",
            "board_api.patch_idea", "board_api.rebuild_clusters", "board_api.list_outbox"} <= endpoints
    assert len(admin_routes(app)) >= 14


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
        {"Authorization": "Bearer "},
    ],
    ids=["none", "wrong", "longer", "basic", "no-scheme", "empty"],
)
def test_every_admin_route_refuses_without_the_right_token(app_and_base, headers):
    app, base = app_and_base
    for endpoint, method, url in admin_routes(app):
        r = _call(base, method, url, headers)
        assert r.status_code == 401, (endpoint, method, url, r.status_code, r.text[:200])
        error = r.json()["error"]
        assert (error["code"], error["field"]) == ("unauthorized", "Authorization"), (endpoint, error)
        assert r.headers["WWW-Authenticate"].startswith("Bearer "), endpoint


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(app_and_base, scheme):
    _, base = app_and_base
    r = _call(base, "GET", "/api/metrics", {"Authorization": f"{scheme} {ADMIN_TOKEN}"})
    assert r.status_code == 200, r.text[:200]


def test_every_admin_route_refuses_while_no_token_is_configured(sample_runtime):
    from deflect.web import create_app

    settings = dataclasses.replace(sample_runtime.settings, admin_token="")
    app = create_app(settings, sample_runtime)
    with serve_app(app) as base:
        for endpoint, method, url in admin_routes(app):
            for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
                r = _call(base, method, url, headers)
                assert r.status_code == 401, (endpoint, method, r.status_code)
                assert r.json()["error"]["code"] == "admin_disabled", endpoint


def test_public_routes_need_no_token(app_and_base):
    app, base = app_and_base
    public = [r for r in api_routes(app) if r[0] in RATE_LIMITED | UNLIMITED_PUBLIC]
    assert {endpoint for endpoint, _, _ in public} == RATE_LIMITED | {"api.healthz", "api.openapi"}
    for endpoint, method, url in public:
        r = _call(base, method, url)
        assert r.status_code != 401 and r.status_code < 500, (endpoint, method, r.status_code)


# --- the OpenAPI document against the URL map ---------------------------------------------


def _operations(app) -> set[tuple[str, str]]:
    return {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in set(rule.methods) & set(ROUTE_METHODS)
    }


def test_openapi_describes_every_route_and_nothing_else(app_and_base):
    app, base = app_and_base
    doc = requests.get(f"{base}/api/openapi.json", timeout=TIMEOUT).json()
    described = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert described == _operations(app)


def test_openapi_marks_admin_operations_and_their_answers(app_and_base):
    app, base = app_and_base
    doc = requests.get(f"{base}/api/openapi.json", timeout=TIMEOUT).json()
    admin = {(openapi_path(rule.rule), m.lower()) for rule in app.url_map.iter_rules()
             for m in set(rule.methods) & set(ROUTE_METHODS)
             if rule.rule.startswith("/api/") and rule.endpoint not in RATE_LIMITED | UNLIMITED_PUBLIC}
    limited = {(openapi_path(rule.rule), m.lower()) for rule in app.url_map.iter_rules()
               for m in set(rule.methods) & set(ROUTE_METHODS) if rule.endpoint in RATE_LIMITED}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = (path, method)
            responses = op["responses"]
            # An admin operation requires the token; a public one takes none, or takes it optionally
            # (an empty requirement among the alternatives: a vote sent from your own server).
            required = "security" in op and {} not in op["security"]
            assert required == (where in admin), where
            if where in admin:
                assert "401" in responses, where
            if where in limited:
                assert responses["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer", where
            else:
                assert "429" not in responses, where
            body = op.get("requestBody", {}).get("content", {})
            if "application/json" in body:
                assert {"400", "413", "415"} <= set(responses), where
            if any(p["in"] == "path" for p in op.get("parameters", [])) and path.startswith("/api/"):
                assert "404" in responses, where
            if any(p["in"] == "query" for p in op.get("parameters", [])) and path.startswith("/api/"):
                assert "400" in responses, where
            assert any(code.startswith("2") or code.startswith("3") for code in responses), where


def test_openapi_states_the_configured_query_length(sample_runtime):
    from deflect.web import create_app

    settings = dataclasses.replace(sample_runtime.settings, max_query_chars=321)
    with serve_app(create_app(settings, sample_runtime)) as base:
        doc = requests.get(f"{base}/api/openapi.json", timeout=TIMEOUT).json()
        assert doc["components"]["schemas"]["SuggestRequest"]["properties"]["query"]["maxLength"] == 321


# --- headers on every kind of answer ------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/api/metrics", 401),
        ("GET", "/api/no-such-endpoint", 404),
        ("POST", "/api/suggest", 415),
        ("GET", "/api/articles", 200),
    ],
)
def test_api_answers_of_every_kind_carry_the_hardening_headers(app_and_base, method, path, status):
    _, base = app_and_base
    r = requests.request(method, base + path, data="x", timeout=TIMEOUT)
    assert r.status_code == status
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert r.headers["Referrer-Policy"]
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["Cache-Control"] == "no-store"  # about someone: no cache in between keeps it


@pytest.mark.parametrize("path", ["/no-such-page", "/articles/no/such", "/ideas?status=nope"])
def test_unknown_pages_are_html_not_found_pages_with_the_page_policy(app_and_base, path):
    _, base = app_and_base
    r = requests.get(base + path, timeout=TIMEOUT)
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"


def test_refused_admin_tokens_leave_a_trail_without_the_token(sample_runtime, caplog):
    """Who tried, on what, from where: once a minute per address, never the token tried."""
    from deflect.web import create_app

    app = create_app(sample_runtime.settings, sample_runtime)  # its own once-a-minute memory
    with serve_app(app) as base, caplog.at_level("WARNING", logger="deflect.admin"):
        for _ in range(3):
            assert _call(base, "GET", "/api/metrics", {"Authorization": "Bearer guess-123"}).status_code == 401
        assert _call(base, "GET", "/api/metrics", {"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    trail = [r.getMessage() for r in caplog.records if r.name == "deflect.admin"]
    assert trail == ["admin token wrong for GET /api/metrics from 127.0.0.1 (said once a minute per address)"]
    assert "guess-123" not in caplog.text


def test_a_short_admin_token_is_warned_about_at_start(capsys):
    from deflect.cli import _say_if_admin_disabled
    from deflect.settings import Settings

    _say_if_admin_disabled(Settings(admin_token="a"))
    assert "admin_token has 1 characters" in capsys.readouterr().err
    _say_if_admin_disabled(Settings(admin_token="x" * 32))
    assert capsys.readouterr().err == ""
