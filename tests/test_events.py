"""POST /api/events, learned aliases, /api/metrics and /api/aliases over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
import requests
import sqlalchemy as sa
from conftest import ADMIN_TOKEN

from deflect import db

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Unrelated to every article of the tiny KB, so only a learned alias can tie it to one.
ODD_QUERY = "the purple elephant code from the conference"


def suggest(base, query, session=None, **extra):
    body = {"query": query, **extra}
    if session:
        body["session"] = session
    response = requests.post(f"{base}/api/suggest", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def post_event(base, **body):
    return requests.post(f"{base}/api/events", json=body, timeout=30)


def count_events(runtime) -> int:
    with runtime.db.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(db.events)).scalar_one()


def test_event_is_stored_before_it_is_acknowledged(served):
    base, runtime = served()
    answer = suggest(base, "I forgot my password", session="s1")
    top = answer["results"][0]
    # Posted immediately: the search may still be in the background writer's queue.
    response = post_event(base, search_id=answer["search_id"], type="click", item_id=top["id"])
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["type"] == "click" and body["item_type"] == top["type"]
    with runtime.db.connect() as conn:
        row = conn.execute(sa.select(db.events).where(db.events.c.id == body["event_id"])).one()
    assert (row.search_id, row.type, row.item_id, row.session) == (answer["search_id"], "click", top["id"], "s1")
    ticket = post_event(base, search_id=answer["search_id"], type="ticket_created")
    assert ticket.status_code == 202
    assert count_events(runtime) == 2


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"type": "click", "item_id": "billing/refunds"}, 400, "search_id"),
        ({"search_id": 7, "type": "click", "item_id": "billing/refunds"}, 400, "search_id"),
        ({"search_id": "0" * 32, "type": "click", "item_id": "billing/refunds"}, 404, "search_id"),
        ({"search_id": "SEARCH", "type": "bounce", "item_id": "billing/refunds"}, 400, "type"),
        ({"search_id": "SEARCH"}, 400, "type"),
        ({"search_id": "SEARCH", "type": "vote"}, 400, "item_id"),
        ({"search_id": "SEARCH", "type": "helpful", "item_id": "no/such-article"}, 404, "item_id"),
        ({"search_id": "SEARCH", "type": "click", "item_id": ["x"]}, 400, "item_id"),
        ({"search_id": "SEARCH", "type": "click", "item_id": "billing/refunds", "item_type": "faq"}, 400, "item_type"),
        ({"search_id": "SEARCH", "type": "vote", "item_id": "billing/refunds"}, 400, "item_type"),
        ({"search_id": "SEARCH", "type": "ticket_created", "requester": "me"}, 400, "requester"),
        ({"search_id": "SEARCH", "type": "ticket_created", "requester": {"email": "nope"}}, 400, "requester.email"),
        ({"search_id": "SEARCH", "type": "ticket_created", "requester": {"mrr": -5}}, 400, "requester.mrr"),
        ({"search_id": "SEARCH", "type": "ticket_created", "requester": {"plan": "pro"}}, 400, "requester.plan"),
        ({"search_id": "SEARCH", "type": "ticket_created", "searchId": "x"}, 400, "searchId"),  # misspelt: not ignored
        ({"search_id": "SEARCH", "type": "click", "item_id": "billing/refunds", "itemType": "article"}, 400, "itemType"),
        # a real article, but not the one result of that search: nothing a visitor saw
        ({"search_id": "SEARCH", "type": "helpful", "item_id": "account/reset-password"}, 409, "item_id"),
        ({"search_id": "SEARCH", "type": "click", "item_id": "account/reset-password"}, 409, "item_id"),
        ({"search_id": "SEARCH", "type": "not_helpful", "item_id": "account/reset-password"}, 409, "item_id"),
    ],
)
def test_bad_events_name_the_field_and_store_nothing(served, body, status, field):
    base, runtime = served()
    search_id = suggest(base, "refund", k=1, types=["article"])["search_id"]  # shows billing/refunds only
    if body.get("search_id") == "SEARCH":
        body = body | {"search_id": search_id}
    response = post_event(base, **body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert count_events(runtime) == 0


def _idea(base, idea_id: str, **extra) -> None:
    body = {"id": idea_id, "title": idea_id.replace("-", " ").title(), **extra}
    response = requests.post(f"{base}/api/ideas", json=body, headers=ADMIN, timeout=30)
    assert response.status_code == 201, response.text


def _votes(base, idea_id: str) -> int:
    return requests.get(f"{base}/api/ideas/{idea_id}", timeout=30).json()["votes"]


def test_vote_events_follow_the_vote_rules(served):
    """A vote event counts like POST /api/ideas/<id>/vote: once per requester, never on a closed idea."""
    base, runtime = served()
    _idea(base, "dark-mode")
    _idea(base, "old-theme")
    search_id = suggest(base, "dark mode please")["search_id"]

    def vote(idea_id, requester=None):
        body = {"search_id": search_id, "type": "vote", "item_id": idea_id, "item_type": "idea"}
        if requester:
            body["requester"] = requester
        return post_event(base, **body)

    stuffed = [vote("dark-mode", {"email": email}) for email in ("same@x.test",) * 3 + ("SAME@X.TEST",) * 2]
    assert [r.status_code for r in stuffed] == [202] * 5
    assert [r.json()["vote"]["counted"] for r in stuffed] == [True, False, False, False, False]
    assert all(r.json()["vote"] == {"idea_id": "dark-mode", "votes": 1, "counted": r.json()["vote"]["counted"]}
               for r in stuffed)
    assert _votes(base, "dark-mode") == 1
    assert vote("dark-mode").json()["vote"]["votes"] == 2  # anonymous votes count, as before
    assert count_events(runtime) == 6  # every event is kept; the vote is counted once

    for status in ("shipped", "declined"):
        requests.patch(f"{base}/api/ideas/dark-mode", json={"status": status}, headers=ADMIN, timeout=30)
        closed = vote("dark-mode", {"email": "late@x.test"})
        assert closed.status_code == 409, closed.text
        assert closed.json()["error"]["code"] == "conflict" and closed.json()["error"]["field"] == "item_id"
        assert "voting is closed" in closed.json()["error"]["message"]
        # the same answer as the vote endpoint
        direct = requests.post(f"{base}/api/ideas/dark-mode/vote", json={}, timeout=30)
        assert direct.status_code == 409 and direct.json()["error"]["code"] == "conflict"
    assert _votes(base, "dark-mode") == 2 and count_events(runtime) == 6  # nothing stored

    # Merged into an idea that has shipped since: closed too.
    _idea(base, "themes")
    requests.patch(f"{base}/api/ideas/old-theme", json={"merged_into": "themes"}, headers=ADMIN, timeout=30)
    assert vote("old-theme").json()["vote"]["idea_id"] == "themes"
    requests.patch(f"{base}/api/ideas/themes", json={"status": "shipped"}, headers=ADMIN, timeout=30)
    assert vote("old-theme").status_code == 409
    assert _votes(base, "themes") == 1 and count_events(runtime) == 7


def test_events_reject_non_json(served):
    base, _ = served()
    response = requests.post(f"{base}/api/events", data="type=click", timeout=30)
    assert response.status_code == 415
    assert response.json()["error"]["field"] == "Content-Type"


def test_helpful_teaches_an_alias_used_at_once_and_admins_can_delete_it(served):
    base, runtime = served()
    before = suggest(base, ODD_QUERY, types=["article"])
    assert before["results"][0]["id"] != "billing/refunds"  # precondition: the KB alone does not tie them
    before_score = next(r["score"] for r in before["results"] if r["id"] == "billing/refunds")

    response = post_event(base, search_id=before["search_id"], type="helpful", item_id="billing/refunds")
    assert response.status_code == 202
    assert response.json()["alias"]["status"] == "learned"

    after = suggest(base, ODD_QUERY.upper() + "  ", types=["article"])
    assert after["results"][0]["id"] == "billing/refunds"
    assert after["results"][0]["score"] > before_score
    assert requests.get(f"{base}/healthz", timeout=30).json()["aliases"] == 1

    listed = requests.get(f"{base}/api/aliases", headers=ADMIN, timeout=30)
    assert listed.status_code == 200
    [alias] = listed.json()["aliases"]
    assert (alias["item_id"], alias["query"], alias["active"], alias["confirmations"]) == (
        "billing/refunds", ODD_QUERY, True, 1)

    def listed_ids(active: str) -> list[int]:
        return [a["id"] for a in requests.get(f"{base}/api/aliases?active={active}", headers=ADMIN, timeout=30).json()["aliases"]]

    assert listed_ids("true") == [alias["id"]] and listed_ids("false") == []

    assert requests.get(f"{base}/api/aliases", timeout=30).status_code == 401
    assert requests.delete(f"{base}/api/aliases/{alias['id']}", timeout=30).status_code == 401
    deleted = requests.delete(f"{base}/api/aliases/{alias['id']}", headers=ADMIN, timeout=30)
    assert deleted.status_code == 200
    again = requests.delete(f"{base}/api/aliases/{alias['id']}", headers=ADMIN, timeout=30)
    assert again.status_code == 404 and again.json()["error"]["field"] == "id"
    assert requests.delete(f"{base}/api/aliases/abc", headers=ADMIN, timeout=30).status_code == 404

    gone = suggest(base, ODD_QUERY, types=["article"])
    assert gone["results"][0]["id"] == before["results"][0]["id"]
    assert requests.get(f"{base}/api/aliases", headers=ADMIN, timeout=30).json()["aliases"] == []


def test_min_confirmations_counts_distinct_sessions_and_addresses(served):
    # Behind a trusted proxy (here the test client itself), X-Forwarded-For names each visitor.
    base, runtime = served(min_confirmations=2, trusted_proxies="127.0.0.1")

    def confirm(session, address):
        search_id = suggest(base, ODD_QUERY, session=session)["search_id"]
        response = requests.post(
            f"{base}/api/events", json={"search_id": search_id, "type": "helpful", "item_id": "billing/refunds"},
            headers={"X-Forwarded-For": address}, timeout=30,
        )  # fmt: skip
        assert response.status_code == 202
        return response.json()["alias"]["status"]

    assert confirm("first", "198.51.100.1") == "confirmed"
    assert confirm("first", "198.51.100.2") == "already_confirmed"  # the same session
    assert confirm("renamed", "198.51.100.1") == "already_confirmed"  # the same address, a new session name
    assert runtime.engine.alias_count == 0
    assert confirm("second", "198.51.100.2") == "learned"
    assert runtime.engine.alias_count == 1
    assert suggest(base, ODD_QUERY, types=["article"])["results"][0]["id"] == "billing/refunds"


def test_one_person_cannot_overturn_a_confident_answer(served):
    """With min_confirmations 1, one "this answered it" on another item than deflect's confident
    answer would re-route the question for everyone (anyone with a script): that takes two people."""
    base, runtime = served(trusted_proxies="127.0.0.1")
    question = "how do I reset my password"

    def helpful(item_id, address, session):
        shown = suggest(base, question, session=session, k=20)
        assert shown["answered"] and shown["results"][0]["id"] == "account/reset-password"  # precondition
        assert item_id in {r["id"] for r in shown["results"]}
        response = requests.post(
            f"{base}/api/events", json={"search_id": shown["search_id"], "type": "helpful", "item_id": item_id},
            headers={"X-Forwarded-For": address}, timeout=30,
        )  # fmt: skip
        assert response.status_code == 202
        return response.json()["alias"]["status"]

    assert helpful("integrations/slack", "198.51.100.7", "attacker-1") == "confirmed"
    assert helpful("integrations/slack", "198.51.100.7", "attacker-2") == "already_confirmed"  # same address
    assert runtime.engine.alias_count == 0
    assert suggest(base, question)["results"][0]["id"] == "account/reset-password"
    # Agreeing with the answer given teaches at once, as min_confirmations says.
    assert helpful("account/reset-password", "198.51.100.8", "customer-1") == "learned"
    # A second, distinct person confirming the other item: it is learned.
    assert helpful("integrations/slack", "198.51.100.9", "customer-2") == "learned"
    assert runtime.engine.alias_count == 2


def test_overturn_confirmations_1_lets_one_person_teach_against_the_answer(served):
    """Where every visitor is signed in and trusted, the operator may let one "Yes" count again."""
    base, runtime = served(overturn_confirmations=1)
    shown = suggest(base, "how do I reset my password", k=20)
    assert shown["answered"] and shown["results"][0]["id"] == "account/reset-password"
    response = post_event(base, search_id=shown["search_id"], type="helpful", item_id="integrations/slack")
    assert response.json()["alias"]["status"] == "learned" and runtime.engine.alias_count == 1


def test_a_session_cannot_flood_aliases(served):
    base, runtime = served(alias_limit_per_session=2)
    statuses = []
    for n in range(4):
        search_id = suggest(base, f"{ODD_QUERY} number {n}", session="flooder")["search_id"]
        response = post_event(base, search_id=search_id, type="helpful", item_id="integrations/slack")
        assert response.status_code == 202  # the event itself is always kept
        statuses.append(response.json()["alias"]["status"])
    assert statuses == ["learned", "learned", "rate_limited", "rate_limited"]
    assert runtime.engine.alias_count == 2
    assert count_events(runtime) == 4
    other = suggest(base, f"{ODD_QUERY} number 9", session="someone-else")["search_id"]
    assert post_event(base, search_id=other, type="helpful", item_id="integrations/slack").json()["alias"]["status"] == "learned"


def test_a_client_cannot_flood_aliases_with_a_new_session_per_search(served):
    """DESIGN 5: "rate-limited ... so one client cannot flood them": a script that names a new
    session for every search is still one address (every request here comes from 127.0.0.1)."""
    base, runtime = served(alias_limit_per_session=2, alias_limit_per_client=3)
    statuses = []
    for n in range(5):
        search_id = suggest(base, f"{ODD_QUERY} number {n}", session=f"fresh-{n}")["search_id"]
        response = post_event(base, search_id=search_id, type="helpful", item_id="integrations/slack")
        assert response.status_code == 202
        statuses.append(response.json()["alias"]["status"])
    assert statuses == ["learned"] * 3 + ["rate_limited"] * 2
    assert runtime.engine.alias_count == 3 and count_events(runtime) == 5


def test_metrics_endpoint(served):
    base, _ = served()
    for partial in ("reset", "reset my pass", "reset my password"):
        last = suggest(base, partial, session="typing")
    post_event(base, search_id=last["search_id"], type="click", item_id=last["results"][0]["id"])
    post_event(base, search_id=last["search_id"], type="helpful", item_id=last["results"][0]["id"])
    lost = suggest(base, "can I pay with bitcoin", session="other")
    post_event(base, search_id=lost["search_id"], type="ticket_created")

    assert requests.get(f"{base}/api/metrics", timeout=30).status_code == 401
    response = requests.get(f"{base}/api/metrics", headers=ADMIN, timeout=30)
    assert response.status_code == 200
    m = response.json()
    assert m["totals"]["searches"] == 2
    assert m["totals"]["superseded_searches"] == 2
    assert m["totals"]["confirmed_deflections"] == 1
    assert m["totals"]["tickets"] == 1
    assert m["totals"]["deflection_rate"] == 0.5
    assert m["events"] == {"click": 1, "helpful": 1, "not_helpful": 0, "ticket_created": 1, "vote": 0}
    top = next(r for r in m["articles"] if r["id"] == last["results"][0]["id"])
    assert top["helpful"] == 1 and top["title"]
    assert set(m) >= {"totals", "events", "articles", "ideas", "content_gaps", "series"}

    future = requests.get(f"{base}/api/metrics?since=2099-01-01", headers=ADMIN, timeout=30).json()
    assert future["totals"]["searches"] == 0
    bad = requests.get(f"{base}/api/metrics?since=yesterday", headers=ADMIN, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "since"
    backwards = requests.get(f"{base}/api/metrics?since=2026-02-01&until=2026-01-01", headers=ADMIN, timeout=30)
    assert backwards.status_code == 400 and backwards.json()["error"]["field"] == "since"
    today = requests.get(f"{base}/api/metrics?since={time.strftime('%Y-%m-%d', time.gmtime())}"
                         f"&until={time.strftime('%Y-%m-%d', time.gmtime())}", headers=ADMIN, timeout=30)  # fmt: skip
    assert today.status_code == 200 and today.json()["totals"]["searches"] == m["totals"]["searches"], today.text
    basic = requests.get(f"{base}/api/metrics?until={time.strftime('%Y%m%d', time.gmtime())}", headers=ADMIN, timeout=30)
    assert basic.status_code == 200 and basic.json()["totals"]["searches"] == m["totals"]["searches"], basic.text
    no_day = requests.get(f"{base}/api/metrics?until=20261301", headers=ADMIN, timeout=30)
    assert no_day.status_code == 400 and no_day.json()["error"]["field"] == "until", no_day.text
    one_gap = requests.get(f"{base}/api/metrics?gaps=1", headers=ADMIN, timeout=30)
    assert one_gap.status_code == 200 and len(one_gap.json()["content_gaps"]) <= 1
    for wrong in ("0", "101", "ten", "1.5", "-3", "١"):
        refused = requests.get(f"{base}/api/metrics?gaps={wrong}", headers=ADMIN, timeout=30)
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "gaps", wrong


def test_32_concurrent_clients_lose_no_event(served):
    base, runtime = served()
    per_client = 8
    # Each client's own searches (one event kind per search and item: the same event twice is one).
    searches_of = [
        [suggest(base, f"question {n} {m}", session=f"c{n}-{m}", types=["article"]) for m in range(per_client // 2)]
        for n in range(32)
    ]
    failures: list[str] = []

    def client(answers: list[dict]) -> None:
        with requests.Session() as http:
            for n in range(per_client):
                answer = answers[n // 2]
                kind = ("click", "ticket_created", "not_helpful", "click")[n % 4]
                body = {"search_id": answer["search_id"], "type": kind}
                if kind != "ticket_created":
                    body["item_id"] = answer["results"][n % 4 // 2]["id"]  # shown in that search
                response = http.post(f"{base}/api/events", json=body, timeout=60)
                if response.status_code != 202 or response.json().get("duplicate"):
                    failures.append(f"{response.status_code} {response.text}")

    threads = [threading.Thread(target=client, args=(answers,)) for answers in searches_of]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert count_events(runtime) == 32 * per_client


def test_a_search_the_database_refuses_is_dropped_alone(store):
    """One bad row must not block the background writer (it used to retry that batch forever)."""
    from deflect.events import SearchLog, get_search

    log = SearchLog(store, linger=0.5)  # long enough that all three land in one batch
    shown = [{"type": "article", "id": "billing/refunds", "score": 0.9}]
    first = log.record("first", "s1", None, True, shown, "v1")
    refused = log.record("refused", "s1", None, True, [{"type": "article", "id": None, "score": 0.9}], "v1")
    last = log.record("last", "s1", None, True, shown, "v1")
    try:
        assert log.flush(timeout=30), "the writer is stuck"
        assert get_search(store, first)["query"] == "first"
        assert get_search(store, last)["query"] == "last"
        assert get_search(store, refused) is None
    finally:
        log.close()


def test_a_helpful_event_on_an_item_the_search_did_not_show_teaches_nothing(served):
    """One anonymous event used to make any article the answer to any question for everyone."""
    base, runtime = served()
    answer = suggest(base, "how do I get my money back", types=["article"], k=1)
    shown = [r["id"] for r in answer["results"]]
    assert "account/reset-password" not in shown
    response = post_event(base, search_id=answer["search_id"], type="helpful", item_id="account/reset-password")
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_shown", response.text
    assert "was not among this search's results" in response.json()["error"]["message"]
    assert runtime.engine.alias_count == 0 and count_events(runtime) == 0
    again = suggest(base, "how do I get my money back", types=["article"], k=1)
    assert [r["id"] for r in again["results"]] == shown


def test_events_about_the_whole_search_need_no_item(served):
    """DESIGN 5 makes item_id optional: a widget's "Did this answer your question? Yes / No" is
    about the search as a whole. It counts in the search's outcome, in no item's row, and
    teaches no alias (that needs the item that answered)."""
    base, runtime = served()
    yes = suggest(base, "I forgot my password", session="yes")
    no = suggest(base, "how do I get my money back", session="no")
    for search, kind in ((yes, "click"), (yes, "helpful"), (no, "not_helpful")):
        response = post_event(base, search_id=search["search_id"], type=kind)
        assert response.status_code == 202, response.text
        assert "item_id" not in response.json()
    again = post_event(base, search_id=yes["search_id"], type="helpful", item_type="article")  # names no item either
    assert again.json().get("duplicate") is True
    assert count_events(runtime) == 3 and runtime.engine.alias_count == 0
    metrics = runtime.metrics()
    totals = metrics["totals"]
    assert (totals["searches"], totals["click_rate"], totals["confirmed_deflections"]) == (2, 0.5, 1)
    assert metrics["events"] == {"click": 1, "helpful": 1, "not_helpful": 1, "ticket_created": 0, "vote": 0}
    assert metrics["articles"] and all(r["clicks"] == r["helpful"] == r["not_helpful"] == 0 for r in metrics["articles"])


def test_the_same_event_twice_is_stored_once(served):
    """A retry or a double click: the second answer is the first event, marked duplicate."""
    base, runtime = served()
    answer = suggest(base, "I forgot my password", session="twice")
    top = answer["results"][0]["id"]
    first = post_event(base, search_id=answer["search_id"], type="click", item_id=top)
    second = post_event(base, search_id=answer["search_id"], type="click", item_id=top)
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json() | {"duplicate": True}
    assert "duplicate" not in first.json()
    tickets = [post_event(base, search_id=answer["search_id"], type="ticket_created") for _ in range(3)]
    assert [t.json().get("duplicate", False) for t in tickets] == [False, True, True]
    other = post_event(base, search_id=answer["search_id"], type="click", item_id=answer["results"][1]["id"])
    assert "duplicate" not in other.json()  # another item is another event
    assert count_events(runtime) == 3
    metrics = runtime.metrics()
    assert metrics["events"]["click"] == 2 and metrics["events"]["ticket_created"] == 1


def test_a_duplicate_ticket_that_says_who_asked_keeps_the_requester(served):
    """The help form reports the ticket, then the ticketing system reports it again with the
    customer: stored once, and the customer is kept (DESIGN 7: requesters hear back)."""
    base, runtime = served()
    search_id = suggest(base, "can I pay with bitcoin", session="pay")["search_id"]
    first = post_event(base, search_id=search_id, type="ticket_created")
    second = post_event(base, search_id=search_id, type="ticket_created",
                        requester={"email": "Ana@Example.com", "customer_id": "c-42", "mrr": 99.5})
    third = post_event(base, search_id=search_id, type="ticket_created", requester={"email": "other@example.com"})
    assert first.status_code == second.status_code == third.status_code == 202
    assert second.json() == third.json() == first.json() | {"duplicate": True}
    # Someone else's details never fill in the rest of a named requester (c-7 would get B's mail).
    named = suggest(base, "can I pay with bitcoin", session="pay-2")["search_id"]
    post_event(base, search_id=named, type="ticket_created", requester={"email": "a@example.com"})
    post_event(base, search_id=named, type="ticket_created", requester={"customer_id": "c-7", "email": "b@example.com"})
    with runtime.db.connect() as conn:
        rows = conn.execute(
            sa.select(db.events.c.email, db.events.c.customer_id, db.events.c.mrr).order_by(db.events.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [("Ana@Example.com", "c-42", 99.5), ("a@example.com", None, None)]


def test_a_misspelt_suggest_field_is_an_error_not_ignored(served):
    base, _ = served()
    response = requests.post(f"{base}/api/suggest", json={"query": "refund", "local": "ko"}, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "local" and "unknown field 'local'" in error["message"] and "locale" in error["message"]


def test_copies_of_one_event_sent_at_once_are_stored_once(served):
    """Two tabs, or a retry racing the original: the search's row is locked while one is stored."""
    base, runtime = served()
    answer = suggest(base, "I forgot my password", session="racing")
    body = {"search_id": answer["search_id"], "type": "click", "item_id": answer["results"][0]["id"]}
    answers: list = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        answers.append(post_event(base, **body))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r.status_code for r in answers] == [202] * 8
    assert len({r.json()["event_id"] for r in answers}) == 1
    assert sum(1 for r in answers if r.json().get("duplicate")) == 7
    assert count_events(runtime) == 1


def test_an_idea_shown_under_an_id_an_article_also_has_is_the_item_of_the_event():
    """An article at the KB's root can be named like an idea: the event is about what was shown."""
    from types import SimpleNamespace

    from deflect.feedback import _item_type

    runtime = SimpleNamespace(engine=SimpleNamespace(articles=SimpleNamespace(position={"refunds": 0})), db=None)
    search = {"results": [{"item_type": "idea", "item_id": "refunds"}]}
    assert _item_type(runtime, search, "refunds", None) == "idea"
    assert _item_type(runtime, {"results": []}, "refunds", None) == "article"  # not shown: what exists


def test_an_event_on_a_search_still_in_a_backlog_is_asked_to_retry_not_refused(store):
    """After an outage the writer may still be writing the searches made meanwhile: 503, not 404."""
    from types import SimpleNamespace

    from deflect.events import EventError
    from deflect.feedback import record_event
    from deflect.outage import DatabaseUnavailable

    backlog = SimpleNamespace(db=store, search_log=SimpleNamespace(flush=lambda: False))
    with pytest.raises(DatabaseUnavailable):
        record_event(backlog, "ab" * 16, "ticket_created")
    written = SimpleNamespace(db=store, search_log=SimpleNamespace(flush=lambda: True))
    with pytest.raises(EventError) as refused:
        record_event(written, "ab" * 16, "ticket_created")
    assert refused.value.status == 404
