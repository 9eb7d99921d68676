"""The token buckets (deflect/ratelimit.py) with a fake clock, and who counts as the client behind proxies."""

from __future__ import annotations

import threading

import pytest

from deflect.ratelimit import Decision, RateLimiter
from deflect.web.limits import client_address, parse_trusted_proxies


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_burst_up_to_the_limit_passes_then_the_next_is_refused():
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)
    assert all(limiter.hit("a").allowed for _ in range(60))
    refused = limiter.hit("a")
    assert not refused.allowed
    # 60 per minute refills one token a second
    assert refused.retry_after == pytest.approx(1.0)
    assert refused.retry_after_seconds == 1


def test_tokens_come_back_at_the_per_minute_rate():
    clock = FakeClock()
    limiter = RateLimiter(120, clock=clock)  # two per second
    for _ in range(120):
        limiter.hit("a")
    assert not limiter.hit("a").allowed
    clock.advance(0.5)
    assert limiter.hit("a").allowed  # one token after half a second
    assert not limiter.hit("a").allowed
    clock.advance(10)
    assert sum(limiter.hit("a").allowed for _ in range(30)) == 20


def test_a_bucket_never_holds_more_than_the_limit():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    limiter.hit("a")
    clock.advance(3600)
    assert sum(limiter.hit("a").allowed for _ in range(25)) == 10


def test_refused_requests_do_not_take_tokens():
    clock = FakeClock()
    limiter = RateLimiter(6, clock=clock)  # one token every 10 s
    for _ in range(6):
        limiter.hit("a")
    for _ in range(50):
        assert not limiter.hit("a").allowed  # hammering while refused does not push the wait out
    clock.advance(10)
    assert limiter.hit("a").allowed


def test_retry_after_says_when_the_next_request_passes():
    clock = FakeClock()
    limiter = RateLimiter(6, clock=clock)
    for _ in range(6):
        limiter.hit("a")
    clock.advance(2.5)
    refused = limiter.hit("a")
    assert refused.retry_after == pytest.approx(7.5)
    assert refused.retry_after_seconds == 8  # rounded up: retrying after Retry-After succeeds
    clock.advance(refused.retry_after_seconds)
    assert limiter.hit("a").allowed


def test_keys_are_independent():
    clock = FakeClock()
    limiter = RateLimiter(3, clock=clock)
    for _ in range(3):
        limiter.hit("office")
    assert not limiter.hit("office").allowed
    assert limiter.hit("home").allowed


def test_memory_is_bounded_by_forgetting_the_least_recently_used_keys():
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock, max_keys=100)
    for _ in range(2):
        limiter.hit("busy")
    for n in range(1000):
        limiter.hit(f"flood-{n}")
        if n % 50 == 0:
            assert not limiter.hit("busy").allowed  # still remembered: recently used
    assert len(limiter) == 100


def test_allowed_decisions_have_no_retry_after():
    decision = RateLimiter(5, clock=FakeClock()).hit("a")
    assert decision == Decision(True, 0.0)
    assert decision.retry_after_seconds == 0


@pytest.mark.parametrize("per_minute", [0, -1])
def test_a_limit_must_be_positive(per_minute):
    with pytest.raises(ValueError):
        RateLimiter(per_minute)


def test_concurrent_hits_never_hand_out_more_than_the_limit():
    limiter = RateLimiter(500, clock=FakeClock())  # frozen clock: no refill during the test
    allowed = []

    def worker():
        allowed.append(sum(limiter.hit("shared").allowed for _ in range(200)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 500


# --- who the client is ----------------------------------------------------------------


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says():
    assert client_address("203.0.113.9", "198.51.100.1", []) == "203.0.113.9"


def test_forwarded_for_from_an_untrusted_peer_is_ignored():
    trusted = parse_trusted_proxies("10.0.0.1")
    assert client_address("203.0.113.9", "198.51.100.1", trusted) == "203.0.113.9"


def test_a_trusted_proxy_names_the_client():
    trusted = parse_trusted_proxies("10.0.0.1")
    assert client_address("10.0.0.1", "198.51.100.1", trusted) == "198.51.100.1"


def test_a_client_cannot_pick_its_address_by_sending_the_header_itself():
    # The client sent "X-Forwarded-For: 1.2.3.4"; the proxy appended the address it really saw.
    trusted = parse_trusted_proxies("10.0.0.1")
    assert client_address("10.0.0.1", "1.2.3.4, 198.51.100.1", trusted) == "198.51.100.1"


def test_a_chain_of_trusted_proxies_and_networks():
    trusted = parse_trusted_proxies(" 10.0.0.0/8 , 192.168.1.5,2001:db8::/32")
    assert client_address("10.1.2.3", "198.51.100.1, 192.168.1.5, 10.9.9.9", trusted) == "198.51.100.1"
    assert client_address("2001:db8::1", "2001:db8:ffff::1, 198.51.100.7", trusted) == "198.51.100.7"


def test_only_trusted_hops_leave_the_leftmost_one():
    trusted = parse_trusted_proxies("10.0.0.0/8")
    assert client_address("10.0.0.1", "10.0.0.7, 10.0.0.8", trusted) == "10.0.0.7"


def test_garbage_in_the_header_keeps_the_last_vouched_address():
    trusted = parse_trusted_proxies("10.0.0.1")
    assert client_address("10.0.0.1", "198.51.100.1, not-an-ip", trusted) == "10.0.0.1"
    assert client_address("10.0.0.1", "<script>, 198.51.100.1", trusted) == "198.51.100.1"
    assert client_address("10.0.0.1", "", trusted) == "10.0.0.1"


def test_no_peer_address_is_one_client():
    assert client_address(None, None, []) == "unknown"


@pytest.mark.parametrize("value", ["proxy.example", "10.0.0.1, nonsense", "10.0.0.0/33"])
def test_bad_trusted_proxies_are_refused_naming_the_entry(value):
    with pytest.raises(ValueError, match="trusted_proxies"):
        parse_trusted_proxies(value)


# --- the defaults against people ------------------------------------------------------------


def _typing(limiter: RateLimiter, clock: FakeClock, people: int, seconds: float, every: float) -> int:
    """`people` typing at once behind one key, one request each `every` seconds; how many were refused."""
    refused = 0
    steps = int(seconds / every)
    for _ in range(steps):
        for _ in range(people):
            refused += not limiter.hit("office").allowed
        clock.advance(every)
    return refused


def test_the_default_session_limit_lets_the_fastest_typist_through():
    from deflect.settings import Settings

    clock = FakeClock()
    limiter = RateLimiter(Settings().rate_limit_per_session, clock=clock)
    # One long question typed for 30 s with a search after every key (a key each 250 ms beats the
    # widget's 200 ms debounce only for a slow, steady typist), then feedback events.
    assert _typing(limiter, clock, people=1, seconds=30, every=0.25) == 0
    assert all(limiter.hit("office").allowed for _ in range(5))


def test_the_default_client_limit_lets_an_office_behind_one_address_through():
    from deflect.settings import Settings

    clock = FakeClock()
    limiter = RateLimiter(Settings().rate_limit_per_client, clock=clock)
    # Ten people behind one NAT address typing at the same time for half a minute...
    assert _typing(limiter, clock, people=10, seconds=30, every=0.25) == 0
    # ...but one script sending 100 requests a second is stopped within a minute.
    assert _typing(limiter, clock, people=1, seconds=60, every=0.01) > 0
