"""Data-protection requests over a real server's store (SQLite and PostgreSQL): `deflect person show`
finds everything tied to one person, `deflect person forget` leaves nothing of them and moves no
figure, `deflect searches forget --before` does the same for old searches (retention)."""

from __future__ import annotations

import json
import time

import requests
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import ADMIN_TOKEN

from deflect import db
from deflect.cli import main
from deflect.metrics import compute_metrics

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ANNA = {"customer_id": "cust-4711", "email": "Anna.Schmidt@example.de", "mrr": 99.0}
BOB = {"customer_id": "cust-0815", "email": "bob@example.com", "mrr": 20.0}


def ask(base: str, query: str, session: str) -> dict:
    """The widget's way: every prefix a few hundred ms apart would be recorded; three of them here."""
    answer = {}
    for cut in (len(query) // 3, 2 * len(query) // 3, len(query)):
        answer = requests.post(f"{base}/api/suggest", json={"query": query[:cut], "session": session}, timeout=30).json()
    return answer


def event(base: str, **body) -> dict:
    response = requests.post(f"{base}/api/events", json=body, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def every_text(engine: sa.Engine) -> str:
    """Every value of every table, as one lower-cased text: what a search for a name would find."""
    from deflect import aliases, candidates, ideas, outbox, votes  # noqa: F401 (their tables join db.metadata)

    parts = []
    with engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                parts += [str(v) for v in row if not isinstance(v, bytes)]
    return "\n".join(parts).lower()


def figures(engine: sa.Engine) -> dict:
    metrics = compute_metrics(engine, now=time.time() + 3600)
    return {k: metrics[k] for k in ("totals", "events", "articles", "ideas", "series")}


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_a_person_is_shown_then_forgotten_and_no_figure_moves(served):
    base, runtime = served()
    url = runtime.settings.database_url
    assert requests.post(f"{base}/api/ideas", json={"id": "gantt", "title": "Gantt charts"}, headers=ADMIN,
                         timeout=30).status_code == 201
    assert requests.post(f"{base}/api/ideas", json={"id": "vip-export", "title": "Exports for Anna Schmidt"},
                         headers=ADMIN, timeout=30).status_code == 201
    # Anna: a ticket anyway, a confirmed answer (an alias), a vote, a question with her name in it.
    first = ask(base, "my name is Anna Schmidt and I was charged twice", "s-anna")
    event(base, search_id=first["search_id"], type="ticket_created", requester=ANNA)
    second = ask(base, "the purple elephant code from Anna's conference", "s-anna")
    assert event(base, search_id=second["search_id"], type="helpful", item_id="billing/refunds",
                 item_type="article")["alias"]["status"] == "learned"
    voted = requests.post(f"{base}/api/ideas/gantt/vote", json={"requester": ANNA}, timeout=30).json()
    # Bob asks alike, and someone else mentions Anna in a search of their own.
    bob = ask(base, "I was charged twice this month", "s-bob")
    event(base, search_id=bob["search_id"], type="ticket_created", requester=BOB)
    requests.post(f"{base}/api/ideas/gantt/vote", json={"requester": BOB}, timeout=30)
    ask(base, "is Anna Schmidt on your support team", "s-carol")
    shipped = requests.patch(f"{base}/api/ideas/gantt", json={"status": "shipped"}, headers=ADMIN, timeout=30).json()
    assert shipped["notifications_queued"] == 2 and voted["votes"] == 1
    runtime.search_log.flush()
    before = figures(runtime.db)
    assert "anna" in every_text(runtime.db)

    code, out = cli("person", "show", "--email", "anna.schmidt@EXAMPLE.de", "--mentioning", "Anna Schmidt",
                    "--database-url", url)
    assert code == 0, out
    shown = json.loads(out)
    # Her two questions (3 prefixes each) and the one that names her; her ticket; her vote; her notification; her alias.
    assert shown["counts"] == {"searches": 9, "requester_events": 1, "votes": 1, "notifications": 1, "aliases": 1,
                               "candidates": 0}
    assert {s["session"] for s in shown["searches"]} == {"s-anna", "s-carol"}
    assert shown["votes"][0]["idea_title"] == "Gantt charts" and shown["notifications"][0]["email"] == ANNA["email"]
    assert shown["aliases"][0]["query"] == "the purple elephant code from Anna's conference"

    code, out = cli("person", "forget", "--email", "anna.schmidt@example.de", "--mentioning", "Anna Schmidt",
                    "--database-url", url, "--yes")
    assert code == 0, out
    assert "forgotten: 9 searches, 1 requester events, 1 votes, 1 notifications, 1 aliases" in out
    assert "their rows also name --customer-id cust-4711: add those" in out  # named for the operator, not followed
    assert "idea vip-export ('Exports for Anna Schmidt') mentions them" in out  # the team's text: named, not changed
    text = every_text(runtime.db).replace("exports for anna schmidt", "")  # the team's idea title: theirs to edit
    assert "anna" not in text and "cust-4711" not in text and "elephant" not in text
    assert "bob@example.com" in text and "charged twice this month" in text  # nobody else's data goes
    assert figures(runtime.db) == before  # searches, deflections, tickets, per article, per day: as they were
    with runtime.db.connect() as conn:
        assert conn.execute(sa.select(db.ideas.c.votes).where(db.ideas.c.id == "gantt")).scalar_one() == 2
    again = json.loads(cli("person", "show", "--email", ANNA["email"], "--database-url", url)[1])
    assert set(again["counts"].values()) == {0}
    # The alias is gone from the running server too (at its next sync).
    deadline = time.time() + 10
    while requests.get(f"{base}/healthz", timeout=30).json()["aliases"] and time.time() < deadline:
        time.sleep(0.2)
    assert requests.get(f"{base}/healthz", timeout=30).json()["aliases"] == 0


def test_naming_nobody_is_a_usage_error(served):
    _, runtime = served()
    code, out = cli("person", "forget", "--database-url", runtime.settings.database_url, "--yes")
    assert code == 2 and "--email" in out


def test_old_searches_are_forgotten_and_their_figures_stay(served):
    base, runtime = served()
    first = ask(base, "Carla Rossi here, I was charged twice", "s-carla")
    event(base, search_id=first["search_id"], type="ticket_created", requester={"email": "carla@example.it"})
    taught = ask(base, "the purple elephant code from the conference", "s-dan")
    event(base, search_id=taught["search_id"], type="helpful", item_id="billing/refunds", item_type="article")
    runtime.search_log.flush()
    before = figures(runtime.db)
    code, out = cli("searches", "forget", "--before", f"{time.time():.3f}", "--database-url", runtime.settings.database_url,
                    "--yes")
    assert code == 0 and "forgotten: 6 searches" in out and "1 requester events" in out, out
    text = every_text(runtime.db)
    assert "carla" not in text and "s-carla" not in text and "charged twice" not in text
    assert figures(runtime.db) == before
    # What deflect learned stays: the alias, worded as the (masked) question, not who asked.
    assert [a["query"] for a in requests.get(f"{base}/api/aliases", headers=ADMIN, timeout=30).json()["aliases"]] == [
        "the purple elephant code from the conference"]
    bad = cli("searches", "forget", "--before", "last week", "--database-url", runtime.settings.database_url, "--yes")
    assert bad[0] == 2 and "--before" in bad[1]
    ahead = cli("searches", "forget", "--before", "2999-01-01", "--database-url", runtime.settings.database_url, "--yes")
    assert ahead[0] == 2 and "is in the future" in ahead[1]


def test_an_alias_someone_else_also_asked_stays(served):
    base, runtime = served()
    words = "the purple elephant code from the conference"
    mine = ask(base, words, "s-erin")
    event(base, search_id=mine["search_id"], type="ticket_created", requester={"email": "erin@example.com"})
    event(base, search_id=mine["search_id"], type="helpful", item_id="billing/refunds", item_type="article")
    ask(base, words, "s-frank")  # the same words, from someone who asked nothing of deflect
    runtime.search_log.flush()
    code, out = cli("person", "forget", "--email", "erin@example.com", "--database-url", runtime.settings.database_url,
                    "--yes")
    assert code == 0 and "3 searches" in out and "0 aliases" in out, out
    assert [a["query"] for a in requests.get(f"{base}/api/aliases", headers=ADMIN, timeout=30).json()["aliases"]] == [words]


def test_a_forgotten_voter_still_counts_once_with_their_mrr_and_hears_nothing(served):
    base, runtime = served()
    url = runtime.settings.database_url
    for idea in ("gantt", "sso"):
        assert requests.post(f"{base}/api/ideas", json={"id": idea, "title": idea.upper()}, headers=ADMIN,
                             timeout=30).status_code == 201
    # Anna votes for gantt from two searches (counted once) and for sso; Bob votes for gantt.
    for question in ("gantt charts please", "a gantt view for my projects"):
        found = ask(base, question, "s-anna")
        event(base, search_id=found["search_id"], type="vote", item_id="gantt", item_type="idea", requester=ANNA)
    requests.post(f"{base}/api/ideas/sso/vote", json={"requester": ANNA}, timeout=30)
    bob = ask(base, "gantt please", "s-bob")
    event(base, search_id=bob["search_id"], type="vote", item_id="gantt", item_type="idea", requester=BOB)
    runtime.search_log.flush()

    def board() -> list[dict]:
        return [requests.get(f"{base}/api/ideas/{idea}", timeout=30).json() for idea in ("gantt", "sso")]

    before, counted = board(), figures(runtime.db)
    assert [(i["requesters"], i["mrr"]) for i in before] == [(2, 119.0), (1, 99.0)]
    code, out = cli("person", "forget", "--customer-id", "cust-4711", "--database-url", url, "--yes")
    assert code == 0 and "2 votes" in out, out
    assert board() == before and figures(runtime.db) == counted  # votes, requesters, MRR, per-idea votes
    listed = requests.get(f"{base}/api/ideas/gantt/requesters", headers=ADMIN, timeout=30).json()["requesters"]
    assert listed[0]["customer_id"].startswith("erased-") and listed[0]["email"] is None and listed[0]["mrr"] == 99.0
    assert "anna" not in every_text(runtime.db) and "cust-4711" not in every_text(runtime.db)
    # Shipping tells Bob; nothing is queued for the pseudonym.
    shipped = requests.patch(f"{base}/api/ideas/gantt", json={"status": "shipped"}, headers=ADMIN, timeout=30).json()
    assert shipped["notifications_queued"] == 1
    assert requests.patch(f"{base}/api/ideas/sso", json={"status": "shipped"}, headers=ADMIN,
                          timeout=30).json()["notifications_queued"] == 0
