"""Idea candidates in the store (SQLite and PostgreSQL): pool, rebuild, stable ids, review, joins."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from conftest import DATA, read_jsonl

from deflect import candidates as cand
from deflect import db, review
from deflect.events import insert_event, record_search
from deflect.ideas import get_idea
from deflect.settings import Settings

MODEL = "test-model"
QUESTIONS = read_jsonl(DATA / "cluster_questions.jsonl")
# Customers asking the time-tracking questions again, in their own words. ("log time" / "timer"
# phrasings are left out: five of them make a sub-group of their own with int8 vectors, and
# this test is about a dismissed candidate coming back, not about where that split falls.)
MORE_TIME_TRACKING = [
    "can i track the hours i spend on tasks?",
    "is there time tracking for tasks",
    "track how many hours each task took",
    "tracking time per project",
    "can I track hours spent on each task",
    "built-in time tracking please",
]


def ask(engine, text: str, answered: bool = False, session: str | None = None, ticket: dict | None = None,
        at: float | None = None) -> str:
    search_id = record_search(engine, text, session, None, answered, [], "v1")
    if at is not None:
        with db.writing(engine) as conn:
            conn.execute(db.searches.update().where(db.searches.c.id == search_id).values(created_at=at))
    if ticket is not None:
        with db.writing(engine) as conn:
            insert_event(conn, {"id": search_id, "session": session}, "ticket_created", None, None, ticket)
    return search_id


def by_topic(engine, listed: list[dict]) -> dict[str, dict]:
    """Candidate per topic (the topic most of its queries belong to)."""
    label_of = {q["text"]: q["label"] for q in QUESTIONS} | {t: "time_tracking" for t in MORE_TIME_TRACKING}
    out = {}
    for c in listed:
        labels = [label_of.get(q["text"]) for q in c["queries"]]
        top = max(set(labels), key=labels.count)
        out[top] = c
    return out


def test_pool_follows_design_section_7(store):
    unanswered = ask(store, "do you have a gantt chart")
    ticketed = ask(store, "gantt chart view", answered=True, ticket={"email": "a@example.com"})
    answered = ask(store, "reset my password", answered=True)
    not_helpful = ask(store, "export to pdf", answered=True)
    rescued = ask(store, "export to csv", answered=True)
    with db.writing(store) as conn:
        insert_event(conn, {"id": not_helpful, "session": None}, "not_helpful", "article", "x", None)
        insert_event(conn, {"id": rescued, "session": None}, "not_helpful", "article", "x", None)
        insert_event(conn, {"id": rescued, "session": None}, "helpful", "article", "y", None)
    now = time.time()
    typed = ask(store, "gan", session="s1", at=now)  # superseded by its extension 2 s later
    final = ask(store, "gantt please", session="s1", at=now + 2)
    pool = {r["id"] for r in cand.load_pool(store)}
    assert pool == {unanswered, ticketed, not_helpful, final}
    assert answered not in pool and rescued not in pool and typed not in pool


def test_rebuild_keeps_ids_and_decisions_and_dismissed_returns_only_when_it_grows(store, embedder):
    settings = Settings(cluster_min_size=3, cluster_regrow_factor=1.5)
    for i, q in enumerate(QUESTIONS):
        ask(store, q["text"], ticket={"customer_id": f"cust-{i}", "mrr": 10.0} if i % 2 == 0 else None)
    first = cand.rebuild(store, embedder.encode, MODEL, settings)
    assert first["candidates"] == 4 and first["new"] == 4 and first["pool"] == len(QUESTIONS)
    listed = cand.list_candidates(store)
    topics = by_topic(store, listed)
    assert set(topics) == {"gantt", "offline", "invoice_vat", "time_tracking"}
    for c in listed:
        assert c["label"] and c["keywords"] and c["status"] == "new"
        assert c["size"] == len(c["queries"]) >= 5
        assert c["first_seen"] <= c["last_seen"] and sum(w["count"] for w in c["weekly"]) == c["size"]
        assert c["mrr"] == 10.0 * c["requesters"]
    ids = {t: c["id"] for t, c in topics.items()}
    gaps = cand.content_gaps(store, limit=2)
    assert [g["size"] for g in gaps] == sorted((c["size"] for c in listed), reverse=True)[:2]
    assert {g["candidate_id"] for g in gaps} <= set(ids.values()) and all(g["label"] for g in gaps)

    promoted = review.promote(store, ids["gantt"])
    assert promoted["idea"]["status"] == "open" and promoted["candidate"]["status"] == "promoted"
    assert promoted["idea"]["votes"] == promoted["requesters_added"] == topics["gantt"]["requesters"]
    review.dismiss(store, ids["time_tracking"])

    # Same pool -> same ids, decisions kept; dismissed ones out of the default list.
    second = cand.rebuild(store, embedder.encode, MODEL, settings)
    assert second["kept"] == 4 and second["new"] == 0
    again = {c["id"]: c for c in cand.list_candidates(store, "all")}
    assert set(again) == set(ids.values())
    assert again[ids["gantt"]]["status"] == "promoted" and again[ids["gantt"]]["idea_id"] == promoted["idea"]["id"]
    assert again[ids["time_tracking"]]["status"] == "dismissed"
    assert ids["time_tracking"] not in {c["id"] for c in cand.list_candidates(store)}
    assert {g["candidate_id"] for g in cand.content_gaps(store)} == {ids["offline"], ids["invoice_vat"]}

    # A little growth does not bring the dismissed candidate back ...
    ask(store, MORE_TIME_TRACKING[0])
    cand.rebuild(store, embedder.encode, MODEL, settings)
    assert cand.get_candidate(store, ids["time_tracking"])["status"] == "dismissed"
    # ... growing by half does (cluster_regrow_factor 1.5).
    for text in MORE_TIME_TRACKING[1:]:
        ask(store, text)
    third = cand.rebuild(store, embedder.encode, MODEL, settings)
    back = cand.get_candidate(store, ids["time_tracking"])
    assert third["returned"] == 1 and back["status"] == "new" and back["size"] >= 9


def test_new_searches_join_the_nearest_candidate_between_rebuilds(store, embedder):
    settings = Settings()
    for q in QUESTIONS:
        ask(store, q["text"])
    cand.rebuild(store, embedder.encode, MODEL, settings)
    offline = by_topic(store, cand.list_candidates(store))["offline"]
    idea_id = review.promote(store, offline["id"])["idea"]["id"]
    assert get_idea(store, idea_id)["votes"] == 0  # nobody had left contact details
    late = ask(store, "is there an offline mode for the iphone app when travelling", ticket={"email": "late@example.com"})
    stray = ask(store, "what is the capital of peru")
    assert cand.join_new(store, embedder.encode, MODEL) == 1
    # Who asks after the promotion is recorded on the idea too (once).
    assert review.sync_requesters(store) == 1 and review.sync_requesters(store) == 0
    assert get_idea(store, idea_id)["votes"] == 1
    now = cand.get_candidate(store, offline["id"])
    assert now["size"] == offline["size"] + 1
    assert {"search_id": late, "text": "is there an offline mode for the iphone app when travelling", "joined": True} in now["queries"]
    assert stray not in {q["search_id"] for c in cand.list_candidates(store) for q in c["queries"]}
    assert cand.join_new(store, embedder.encode, MODEL) == 0  # nothing new the second time


def test_merge_and_review_errors(store, embedder):
    for i, q in enumerate(QUESTIONS):
        ask(store, q["text"], ticket={"email": f"user{i}@example.com", "mrr": 5.0})
    cand.rebuild(store, embedder.encode, MODEL, Settings())
    topics = by_topic(store, cand.list_candidates(store))
    now = time.time()
    with db.writing(store) as conn:
        conn.execute(db.ideas.insert(), [
            {"id": "offline-mode", "title": "Offline mode", "status": "planned", "votes": 3, "created_at": now, "updated_at": now},
            {"id": "old", "title": "Old", "status": "shipped", "votes": 0, "created_at": now, "updated_at": now},
        ])
    with pytest.raises(cand.CandidateError) as missing:
        review.merge(store, topics["offline"]["id"], "no-such-idea")
    assert missing.value.status == 404 and missing.value.field == "idea_id"
    with pytest.raises(cand.CandidateError) as closed:
        review.merge(store, topics["offline"]["id"], "old")
    assert closed.value.status == 409
    merged = review.merge(store, topics["offline"]["id"], "offline-mode")
    assert merged["candidate"]["status"] == "merged"
    assert merged["idea"]["votes"] == 3 + topics["offline"]["requesters"]
    with pytest.raises(cand.CandidateError) as twice:
        review.promote(store, topics["offline"]["id"])
    assert twice.value.status == 409
    with pytest.raises(cand.CandidateError) as unknown:
        review.dismiss(store, "c-nope")
    assert unknown.value.status == 404
    assert get_idea(store, "offline-mode")["status"] == "planned"


def test_migration_0003_keeps_earlier_data(database_url):
    engine = db.make_engine(database_url)
    db.upgrade(engine, "0002")
    search_id = record_search(engine, "kept question", None, None, False, [], "v0")
    db.upgrade(engine)
    assert db.current_revision(engine) == "0003"
    assert {"candidates", "candidate_members", "pool_vectors", "outbox"} <= set(sa.inspect(engine).get_table_names())
    assert [r["id"] for r in cand.load_pool(engine)] == [search_id]
    engine.dispose()


def test_concurrent_rebuilds_and_joins_do_not_collide(store, embedder):
    import threading

    settings = Settings()
    for q in QUESTIONS:
        ask(store, q["text"])
    cand.rebuild(store, embedder.encode, MODEL, settings)
    for text in ("does the app work on a plane without wifi", "gantt timeline of the whole project"):
        ask(store, text)
    errors: list[BaseException] = []

    def run(fn):
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 (collected and asserted below)
            errors.append(exc)

    jobs = [lambda: cand.rebuild(store, embedder.encode, MODEL, settings) for _ in range(2)]
    jobs += [lambda: cand.join_new(store, embedder.encode, MODEL) for _ in range(2)]
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    listed = cand.list_candidates(store)
    assert len(listed) == 4
    members = [q["search_id"] for c in listed for q in c["queries"]]
    assert len(members) == len(set(members))
    with store.connect() as conn:  # the stored sizes agree with the members
        stored = dict(conn.execute(sa.select(cand.candidates.c.id, cand.candidates.c.size)).all())
    assert all(stored[c["id"]] == len(c["queries"]) for c in listed)
