"""Rate limits over real HTTP: 429 + Retry-After per session and per client, and getting through again."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time

import pytest
import requests
from conftest import ADMIN_TOKEN

TIMEOUT = 60
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ORIGIN = "https://help.customer.example"


@contextlib.contextmanager
def limited_server(runtime, **limits):
    """The sample runtime behind an app of its own with these limit settings (the index is shared),
    served by the waitress server `deflect serve` runs (it decides which proxy headers reach the app)."""
    from deflect.web import create_app, make_server

    settings = dataclasses.replace(runtime.settings, **limits)
    server = make_server(create_app(settings, runtime), "127.0.0.1", 0, threads=8)
    closing = threading.Event()

    def run() -> None:
        try:
            server.run()
        except OSError:  # its select() saw the socket close under it (EBADF): that is the stop
            if not closing.is_set():
                raise

    thread = threading.Thread(target=run, name="deflect-test-waitress", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.effective_port}"
    try:
        requests.get(base + "/healthz", timeout=TIMEOUT).raise_for_status()
        yield base
    finally:
        closing.set()
        server.close()
        thread.join(timeout=10)


def bad_event(base: str, session: str | None = None, **kwargs) -> requests.Response:
    """A cheap public request: counted by the limits first, then refused by validation (400)."""
    body = {"search_id": "not-hex", "type": "click", "item_id": "x"}
    if session is not None:
        body["session"] = session
    return requests.post(f"{base}/api/events", json=body, timeout=TIMEOUT, **kwargs)


def until_refused(send, most: int = 400) -> tuple[int, requests.Response]:
    """Send until the first 429; return how many passed before it and the 429 itself."""
    for n in range(most):
        r = send()
        if r.status_code == 429:
            return n, r
    pytest.fail(f"no 429 after {most} requests")


def assert_rate_limited(r: requests.Response, field: str) -> int:
    assert r.status_code == 429
    assert r.headers["Content-Type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["field"] == field
    assert error["message"]
    retry_after = r.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    return int(retry_after)


def test_one_session_is_limited_and_others_are_not(sample_runtime):
    with limited_server(sample_runtime, rate_limit_per_client=0, rate_limit_per_session=30) as base:
        started = time.monotonic()
        passed, refused = until_refused(lambda: bad_event(base, session="chatty"))
        elapsed = time.monotonic() - started
        # a burst of 30, plus whatever refilled (one every 2 s) while sending
        assert 30 <= passed <= 30 + int(elapsed / 2) + 1
        wait = assert_rate_limited(refused, "session")
        assert wait <= 2
        # the same session is refused on /api/suggest too
        r = requests.post(f"{base}/api/suggest", json={"query": "refund", "session": "chatty"}, timeout=TIMEOUT)
        assert_rate_limited(r, "session")
        # another session, and a request without a session, are not
        ok = requests.post(f"{base}/api/suggest", json={"query": "refund", "session": "quiet"}, timeout=TIMEOUT)
        assert ok.status_code == 200
        assert bad_event(base).status_code == 400
        time.sleep(wait)
        assert bad_event(base, session="chatty").status_code == 400  # through again: validation answers


def test_one_client_is_limited_on_every_public_endpoint(sample_runtime):
    with limited_server(sample_runtime, rate_limit_per_client=30, rate_limit_per_session=0) as base:
        passed, refused = until_refused(lambda: requests.get(f"{base}/api/articles", timeout=TIMEOUT))
        assert passed >= 30
        wait = assert_rate_limited(refused, "client")
        public = [
            ("POST", "/api/suggest", {"query": "refund"}),
            ("POST", "/api/events", {"search_id": "ab", "type": "click", "item_id": "x"}),
            ("GET", "/api/articles/account/reset-password", None),
            ("GET", "/api/ideas", None),
            ("GET", "/api/ideas/some-idea", None),
            ("POST", "/api/ideas/some-idea/vote", {}),
        ]
        for method, path, body in public:
            r = requests.request(method, base + path, json=body, timeout=TIMEOUT)
            assert_rate_limited(r, "client")
        # admin endpoints need the token instead, and health checks, the API description and pages are free
        assert requests.get(f"{base}/api/metrics", headers=ADMIN, timeout=TIMEOUT).status_code == 200
        assert requests.get(f"{base}/api/aliases", headers=ADMIN, timeout=TIMEOUT).status_code == 200
        assert requests.get(f"{base}/healthz", timeout=TIMEOUT).status_code == 200
        assert requests.get(f"{base}/api/openapi.json", timeout=TIMEOUT).status_code == 200
        assert requests.get(f"{base}/help", timeout=TIMEOUT).status_code == 200
        time.sleep(wait)
        assert requests.get(f"{base}/api/articles", timeout=TIMEOUT).status_code == 200


def test_a_client_over_its_limit_is_refused_whatever_session_it_claims(sample_runtime):
    with limited_server(sample_runtime, rate_limit_per_client=20, rate_limit_per_session=1000) as base:
        counter = iter(range(10**6))
        _, refused = until_refused(lambda: bad_event(base, session=f"fresh-{next(counter)}"))
        assert_rate_limited(refused, "client")


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(sample_runtime):
    with limited_server(sample_runtime, rate_limit_per_client=20, rate_limit_per_session=0,
                        trusted_proxies="127.0.0.1") as base:
        office = {"X-Forwarded-For": "198.51.100.1"}
        _, refused = until_refused(lambda: bad_event(base, headers=office))
        assert_rate_limited(refused, "client")
        assert bad_event(base, headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 400
        # a client prepending its own X-Forwarded-For is still the address the proxy saw
        assert_rate_limited(bad_event(base, headers={"X-Forwarded-For": "203.0.113.5, 198.51.100.1"}), "client")


def test_forwarded_for_is_ignored_from_an_untrusted_peer(sample_runtime):
    with limited_server(sample_runtime, rate_limit_per_client=20, rate_limit_per_session=0) as base:
        _, refused = until_refused(lambda: bad_event(base, headers={"X-Forwarded-For": "198.51.100.1"}))
        assert_rate_limited(refused, "client")
        assert_rate_limited(bad_event(base, headers={"X-Forwarded-For": "198.51.100.2"}), "client")


def test_a_widget_on_a_listed_origin_can_read_the_429(sample_runtime):
    with limited_server(sample_runtime, rate_limit_per_client=20, rate_limit_per_session=0, cors_origins=ORIGIN) as base:
        _, refused = until_refused(lambda: bad_event(base, headers={"Origin": ORIGIN}))
        assert_rate_limited(refused, "client")
        assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Retry-After" in refused.headers["Access-Control-Expose-Headers"]
        # a preflight is never counted or refused
        preflight = requests.options(
            f"{base}/api/events",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
            timeout=TIMEOUT,
        )
        assert preflight.status_code == 204


def test_zero_turns_both_limits_off(sample_runtime):
    with limited_server(sample_runtime, rate_limit_per_client=0, rate_limit_per_session=0) as base:
        statuses = {bad_event(base, session="same").status_code for _ in range(300)}
        assert statuses == {400}


def test_an_ipv6_client_is_its_64_for_the_limits():
    from deflect.web.limits import client_group

    assert client_group("2001:db8:1:2:aaaa::1") == client_group("2001:db8:1:2:ffff:1:2:3") == "2001:db8:1:2::/64"
    assert client_group("2001:db8:1:3::1") != client_group("2001:db8:1:2::1")
    assert client_group("::ffff:198.51.100.7") == "198.51.100.7"  # an IPv4 client on a dual-stack socket
    assert client_group("198.51.100.7") == "198.51.100.7" and client_group("unknown") == "unknown"


def test_ipv6_addresses_of_one_64_share_a_limit(sample_runtime):
    with limited_server(sample_runtime, rate_limit_per_client=20, rate_limit_per_session=0,
                        trusted_proxies="127.0.0.1") as base:
        counter = iter(range(1, 10**6))
        _, refused = until_refused(lambda: bad_event(base, headers={"X-Forwarded-For": f"2001:db8:7:7::{next(counter):x}"}))
        assert_rate_limited(refused, "client")
        assert bad_event(base, headers={"X-Forwarded-For": "2001:db8:7:8::1"}).status_code == 400  # another /64


def test_wrong_admin_tokens_are_limited_per_client_and_never_logged(sample_runtime, caplog):
    with limited_server(sample_runtime, trusted_proxies="127.0.0.1", wrong_token_limit_per_client=30) as base:
        guesser = {"X-Forwarded-For": "198.51.100.9"}

        def guess(token: str, path: str = "/api/metrics", who: dict = guesser) -> requests.Response:
            return requests.get(base + path, headers=who | {"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)

        with caplog.at_level("WARNING", logger="deflect"):
            # The path is escaped in the log: a request cannot write a log line of its own.
            forged = "/api/clusters/x%0a2026-11-24 23:59:59 INFO deflect.admin: admin signed in"
            assert guess("x", forged, {"X-Forwarded-For": "198.51.100.11"}).status_code == 401
            answers = [guess(f"guess-{n}").status_code for n in range(30)]
            assert answers == [401] * 30
            refused = guess(ADMIN_TOKEN)  # past the limit the token is not even compared, the right one neither
            assert_rate_limited(refused, "Authorization")
        said = [r.getMessage() for r in caplog.records if "admin token" in r.getMessage()]
        assert len(said) == 2 and not any("guess-" in line for line in said), said  # once a minute per address
        assert "/api/clusters/x\\x0a2026-11-24 23:59:59 INFO" in said[0] and "\n" not in said[0], said
        assert "198.51.100.9" in said[1]
        # Another address is not held up, and a missing token is not a guess.
        other = requests.get(base + "/api/metrics", headers={"X-Forwarded-For": "198.51.100.10"} | ADMIN, timeout=TIMEOUT)
        assert other.status_code == 200
        missing = requests.get(base + "/api/metrics", headers=guesser, timeout=TIMEOUT)
        assert missing.status_code == 401


def test_a_non_ascii_admin_token_works_as_curl_sends_it(sample_runtime):
    token = "tökén-한국어-0123456789abcdef"
    with limited_server(sample_runtime, admin_token=token) as base:
        raw = f"Bearer {token}".encode()  # UTF-8 on the wire, as curl and browsers' fetch send it
        r = requests.get(base + "/api/metrics", headers={"Authorization": raw}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        wrong = requests.get(base + "/api/metrics", headers={"Authorization": "Bearer tökén".encode()}, timeout=TIMEOUT)
        assert wrong.status_code == 401
