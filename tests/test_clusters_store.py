"""Idea candidates in the store (SQLite and PostgreSQL): pool, rebuild, stable ids, review, joins."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from conftest import DATA, read_jsonl

from deflect import candidate_views as views
from deflect import candidates as cand
from deflect import db, review
from deflect.events import insert_event, record_search
from deflect.ideas import get_idea
from deflect.metrics import compute_metrics
from deflect.pool import load_pool
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


def ask_all_and_rebuild(store, embedder, settings: Settings) -> dict[str, dict]:
    """Every QUESTIONS search, one rebuild: the candidates by topic."""
    for q in QUESTIONS:
        ask(store, q["text"])
    cand.rebuild(store, embedder.encode, MODEL, settings)
    return by_topic(store, views.list_candidates(store))


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
    pool = {r["id"] for r in load_pool(store)}
    assert pool == {unanswered, ticketed, not_helpful, final}
    assert answered not in pool and rescued not in pool and typed not in pool


def test_rebuild_keeps_ids_and_decisions_and_dismissed_returns_only_when_it_grows(store, embedder):
    settings = Settings(cluster_min_size=3, cluster_regrow_factor=1.5)
    for i, q in enumerate(QUESTIONS):
        ask(store, q["text"], ticket={"customer_id": f"cust-{i}", "mrr": 10.0} if i % 2 == 0 else None)
    first = cand.rebuild(store, embedder.encode, MODEL, settings)
    assert first["candidates"] == 4 and first["new"] == 4 and first["pool"] == len(QUESTIONS)
    listed = views.list_candidates(store)
    topics = by_topic(store, listed)
    assert set(topics) == {"gantt", "offline", "invoice_vat", "time_tracking"}
    for c in listed:
        assert c["label"] and c["keywords"] and c["status"] == "new"
        assert c["size"] == len(c["queries"]) >= 5
        assert c["first_seen"] <= c["last_seen"] and sum(w["count"] for w in c["weekly"]) == c["size"]
        assert c["mrr"] == 10.0 * c["requesters"]
    ids = {t: c["id"] for t, c in topics.items()}
    gaps = compute_metrics(store)["content_gaps"][:2]
    assert [g["count"] for g in gaps] == sorted((c["size"] for c in listed), reverse=True)[:2]
    assert {g["candidate_id"] for g in gaps} <= set(ids.values()) and all(g["label"] for g in gaps)

    promoted = review.promote(store, ids["gantt"], "Gantt charts")
    assert promoted["idea"]["status"] == "open" and promoted["candidate"]["status"] == "promoted"
    assert promoted["idea"]["votes"] == promoted["requesters_added"] == topics["gantt"]["requesters"]
    review.dismiss(store, ids["time_tracking"])

    # Same pool -> same ids, decisions kept; dismissed ones out of the default list.
    second = cand.rebuild(store, embedder.encode, MODEL, settings)
    assert second["kept"] == 4 and second["new"] == 0
    again = {c["id"]: c for c in views.list_candidates(store, "all")}
    assert set(again) == set(ids.values())
    assert again[ids["gantt"]]["status"] == "promoted" and again[ids["gantt"]]["idea_id"] == promoted["idea"]["id"]
    assert again[ids["time_tracking"]]["status"] == "dismissed"
    assert ids["time_tracking"] not in {c["id"] for c in views.list_candidates(store)}
    open_gaps = {g["candidate_id"] for g in compute_metrics(store)["content_gaps"] if "candidate_id" in g}
    assert open_gaps == {ids["offline"], ids["invoice_vat"]}  # the rest: searches in no candidate, by query

    # A little growth does not bring the dismissed candidate back ...
    ask(store, MORE_TIME_TRACKING[0])
    cand.rebuild(store, embedder.encode, MODEL, settings)
    assert views.get_candidate(store, ids["time_tracking"])["status"] == "dismissed"
    # ... growing by half does (cluster_regrow_factor 1.5).
    for text in MORE_TIME_TRACKING[1:]:
        ask(store, text)
    third = cand.rebuild(store, embedder.encode, MODEL, settings)
    back = views.get_candidate(store, ids["time_tracking"])
    assert third["returned"] == 1 and back["status"] == "new" and back["size"] >= 9


def test_new_searches_join_the_nearest_candidate_between_rebuilds(store, embedder):
    settings = Settings()
    offline = ask_all_and_rebuild(store, embedder, settings)["offline"]
    idea_id = review.promote(store, offline["id"], "Offline mode")["idea"]["id"]
    assert get_idea(store, idea_id)["votes"] == 0  # nobody had left contact details
    late = ask(store, "is there an offline mode for the iphone app when travelling", ticket={"email": "late@example.com"})
    stray = ask(store, "what is the capital of peru")
    assert cand.join_new(store, embedder.encode, MODEL) == 1
    # Who asks after the promotion is recorded on the idea too (once).
    assert review.sync_requesters(store) == 1 and review.sync_requesters(store) == 0
    assert get_idea(store, idea_id)["votes"] == 1
    now = views.get_candidate(store, offline["id"])
    assert now["size"] == offline["size"] + 1
    assert {"search_id": late, "text": "is there an offline mode for the iphone app when travelling", "joined": True,
            "excluded": False, "answered_by_article": None} in now["queries"]
    assert stray not in {q["search_id"] for c in views.list_candidates(store) for q in c["queries"]}
    assert cand.join_new(store, embedder.encode, MODEL) == 0  # nothing new the second time


def test_a_requester_asking_again_counts_once_and_changes_nothing_about_them(store, embedder):
    """A question's requester details are public input (anyone can send a ticket event): asking again
    adds no vote and neither raises the MRR on record nor adds an email, or a stranger could read
    a customer's MRR off the idea's total, or take their "shipped" notice (as with a repeat vote)."""
    offline = ask_all_and_rebuild(store, embedder, Settings())["offline"]
    ask(store, "offline mode for the iphone app please", ticket={"customer_id": "c-ana", "mrr": 40.0})
    assert cand.join_new(store, embedder.encode, MODEL) == 1
    idea_id = review.promote(store, offline["id"], "Offline mode")["idea"]["id"]
    assert (get_idea(store, idea_id)["votes"], _idea_mrr(store, idea_id)) == (1, 40.0)
    ask(store, "can i use the iphone app offline on a plane",
        ticket={"customer_id": "c-ana", "email": "thief@example.com", "mrr": 500.0})
    assert cand.join_new(store, embedder.encode, MODEL) == 1
    review.sync_requesters(store)
    assert (get_idea(store, idea_id)["votes"], _idea_mrr(store, idea_id)) == (1, 40.0)  # one person, as on record
    from deflect.votes import requesters

    with store.connect() as conn:
        assert requesters(conn, idea_id) == [{"customer_id": "c-ana", "email": None, "mrr": 40.0}]


def _idea_mrr(store, idea_id: str) -> float:
    from deflect.votes import requesters

    with store.connect() as conn:
        return sum(p["mrr"] or 0.0 for p in requesters(conn, idea_id))


def test_questions_the_admin_leaves_out_do_not_become_aliases(store, embedder):
    """A misclustered question taught as an alias would answer with the idea: `exclude` keeps it out
    (every member worded the same way too), and only the candidate's own questions can be named."""
    from deflect.aliases import list_aliases

    gantt = ask_all_and_rebuild(store, embedder, Settings())["gantt"]
    members = {q["search_id"]: q["text"] for q in gantt["queries"]}
    outlier_id, outlier = next(iter(members.items()))
    again = ask(store, outlier.upper())  # the same wording asked again joins: left out with it
    assert cand.join_new(store, embedder.encode, MODEL) == 1
    assert again in {q["search_id"] for q in views.get_candidate(store, gantt["id"])["queries"]}
    with pytest.raises(cand.CandidateError) as stranger:
        review.promote(store, gantt["id"], "Gantt charts", exclude=["not-a-member"])
    assert (stranger.value.status, stranger.value.field) == (400, "exclude")
    assert views.get_candidate(store, gantt["id"])["status"] == "new"  # nothing was decided
    promoted = review.promote(store, gantt["id"], "Gantt charts", exclude=[outlier_id])
    taught = {a["query"] for a in list_aliases(store) if a["item_id"] == promoted["idea"]["id"]}
    assert promoted["aliases_added"] == len(taught) == len({t.lower() for t in members.values()}) - 1
    assert outlier not in taught and outlier.upper() not in taught
    # Customers' questions are not published as the idea's description (the board and other
    # visitors' suggestions show it): they find the idea as its aliases instead.
    assert promoted["idea"]["description"] == ""


def test_people_who_asked_only_a_left_out_question_are_not_told_about_the_idea(store, embedder):
    """A question the admin leaves out is not about the idea: its asker is no requester (at the
    promote, nor when sync_requesters runs later), gets no idea_shipped notice, and the same
    wording asked again later by someone else is left out too. Kept questions' askers are."""
    from deflect.ideas import update_idea
    from deflect.outbox import list_outbox
    from deflect.votes import requesters

    email_of = {}
    for i, q in enumerate(QUESTIONS):
        email_of[ask(store, q["text"], ticket={"email": f"user{i}@example.com", "mrr": 10.0})] = f"user{i}@example.com"
    cand.rebuild(store, embedder.encode, MODEL, Settings())
    gantt = by_topic(store, views.list_candidates(store))["gantt"]
    (outlier_id, outlier), (kept_id, kept) = [(q["search_id"], q["text"]) for q in gantt["queries"][:2]]
    promoted = review.promote(store, gantt["id"], "Gantt charts", exclude=[outlier_id])
    idea_id = promoted["idea"]["id"]

    def voters() -> set[str]:
        with store.connect() as conn:
            return {p["email"] for p in requesters(conn, idea_id)}

    expected = {email_of[q["search_id"]] for q in gantt["queries"]} - {email_of[outlier_id]}
    assert voters() == expected and promoted["requesters_added"] == len(expected)
    described = views.get_candidate(store, gantt["id"])
    assert described["requesters"] == len(expected)
    assert [q["search_id"] for q in described["queries"] if q["excluded"]] == [outlier_id]

    # Later: the left-out wording again (another person), and a kept one again (a third person).
    ask(store, outlier.upper(), ticket={"email": "again@example.com"})
    ask(store, kept.upper(), ticket={"email": "kept@example.com"})
    assert cand.join_new(store, embedder.encode, MODEL) == 2
    assert review.sync_requesters(store) == 1
    assert voters() == expected | {"kept@example.com"}
    # Not about the idea, so still a content gap (twice asked); the kept questions are no gap.
    gaps = {g["query"].casefold(): g["count"] for g in compute_metrics(store)["content_gaps"]}
    assert gaps.get(outlier.casefold()) == 2 and kept.casefold() not in gaps

    with db.writing(store) as conn:
        update_idea(conn, idea_id, {"status": "shipped"})
    told = {n["email"] for n in list_outbox(store)["notifications"] if n["kind"] == "idea_shipped"}
    assert told == expected | {"kept@example.com"}
    assert email_of[outlier_id] not in told and "again@example.com" not in told
    # Asked again after the idea shipped: still not about it, so not filed under its candidate.
    ask(store, outlier)
    assert cand.join_new(store, embedder.encode, MODEL) == 1
    rows = compute_metrics(store)["content_gaps"]
    assert {g["query"].casefold(): g["count"] for g in rows}.get(outlier.casefold()) == 3
    assert gantt["id"] not in {g.get("candidate_id") for g in rows}
    assert kept_id in {q["search_id"] for q in views.get_candidate(store, gantt["id"])["queries"]}


def test_questions_asked_after_the_idea_shipped_are_a_content_gap_again(store, embedder):
    """A promoted candidate's questions are no gap while the idea is awaited; once it shipped, a
    question about it that nothing answered means an article is missing: a gap under the
    candidate, saying which idea shipped (also through a merge). Earlier questions stay none."""
    from deflect.ideas import update_idea

    offline = ask_all_and_rebuild(store, embedder, Settings())["offline"]
    idea_id = review.promote(store, offline["id"], "Offline mode")["idea"]["id"]
    asked_before = ask(store, "does the iphone app work offline")
    assert cand.join_new(store, embedder.encode, MODEL) == 1

    def gaps() -> dict:
        return {g.get("candidate_id"): g for g in compute_metrics(store)["content_gaps"]}

    assert offline["id"] not in gaps()
    with db.writing(store) as conn:
        update_idea(conn, idea_id, {"status": "shipped"})
    assert get_idea(store, idea_id)["shipped_at"] >= views.get_candidate(store, offline["id"])["last_seen"]
    assert offline["id"] not in gaps()  # everything was asked before it shipped
    since = ask(store, "how do i use offline mode in the iphone app now")
    assert cand.join_new(store, embedder.encode, MODEL) == 1
    gap = gaps()[offline["id"]]
    assert (gap["count"], gap["search_ids"], gap["shipped_idea"]) == (1, [since], idea_id)
    assert asked_before not in gap["search_ids"]
    with db.writing(store) as conn:  # reopened: the questions are requests again
        update_idea(conn, idea_id, {"status": "planned"})
    assert get_idea(store, idea_id)["shipped_at"] is None and offline["id"] not in gaps()
    _idea(store, "offline-everywhere", "Offline everywhere")
    with db.writing(store) as conn:  # merged into another idea, which ships: its questions since are gaps
        update_idea(conn, idea_id, {"merged_into": "offline-everywhere"})
        update_idea(conn, "offline-everywhere", {"status": "shipped"})
    later = ask(store, offline["queries"][0]["text"].upper())  # asked again, in other letters
    assert cand.join_new(store, embedder.encode, MODEL) == 1
    gap = gaps()[offline["id"]]
    assert (gap["search_ids"], gap["shipped_idea"]) == ([later], "offline-everywhere")


def test_two_admins_promoting_one_candidate_at_once_make_one_idea(store, embedder):
    """Two server processes take the same click: one promotes, the other is told it is promoted
    (409), with the same question left out by both; never two ideas or a database error."""
    import threading

    from deflect.ideas import list_ideas

    gantt = ask_all_and_rebuild(store, embedder, Settings())["gantt"]
    left_out = [gantt["queries"][0]["search_id"]]
    start, outcomes = threading.Barrier(4), []

    def promote() -> None:
        start.wait()
        try:
            outcomes.append(review.promote(store, gantt["id"], title="Gantt", exclude=left_out)["candidate"]["status"])
        except cand.CandidateError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=promote) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes, key=str) == sorted(["promoted", 409, 409, 409], key=str)
    assert [i["title"] for i in list_ideas(store)] == ["Gantt"]


def test_merge_and_review_errors(store, embedder):
    for i, q in enumerate(QUESTIONS):
        ask(store, q["text"], ticket={"email": f"user{i}@example.com", "mrr": 5.0})
    cand.rebuild(store, embedder.encode, MODEL, Settings())
    topics = by_topic(store, views.list_candidates(store))
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
        review.promote(store, topics["offline"]["id"], "Offline mode")
    assert twice.value.status == 409
    with pytest.raises(cand.CandidateError) as unknown:
        review.dismiss(store, "c-nope")
    assert unknown.value.status == 404
    assert get_idea(store, "offline-mode")["status"] == "planned"


def test_migration_0003_keeps_earlier_data(database_url):
    engine = db.make_engine(database_url)
    db.upgrade(engine, "0002")
    search_id = record_search(engine, "kept question", None, None, False, [], "v0")
    db.upgrade(engine, "0003")
    assert db.current_revision(engine) == "0003"
    assert {"candidates", "candidate_members", "pool_vectors", "outbox"} <= set(sa.inspect(engine).get_table_names())
    assert [r["id"] for r in load_pool(engine)] == [search_id]
    engine.dispose()


def test_concurrent_rebuilds_and_joins_do_not_collide(store, embedder):
    import threading

    settings = Settings()
    ask_all_and_rebuild(store, embedder, settings)
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
    listed = views.list_candidates(store)
    assert len(listed) == 4
    members = [q["search_id"] for c in listed for q in c["queries"]]
    assert len(members) == len(set(members))
    with store.connect() as conn:  # the stored sizes agree with the members
        stored = dict(conn.execute(sa.select(cand.candidates.c.id, cand.candidates.c.size)).all())
    assert all(stored[c["id"]] == len(c["queries"]) for c in listed)


# --- decisions that survive merges and splits (fake embedder: the groups are chosen by hand) ----


class TopicEmbedder:
    """Deterministic vectors: each text points along its topic's axis, plus a little fixed noise.

    `topics` maps text -> axis and can be changed between rebuilds (with another model id, so the
    cached pool vectors are not reused) to make groups merge and split on purpose.
    """

    DIM = 32

    def __init__(self, topics: dict[str, int]):
        self.topics = dict(topics)

    def encode(self, texts):
        import zlib

        import numpy as np

        out = []
        for text in texts:
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            v = np.eye(self.DIM)[self.topics[text]] + rng.normal(0, 0.08, self.DIM)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


def _texts(prefix: str, n: int, start: int = 1) -> list[str]:
    return [f"{prefix} question number {i}" for i in range(start, start + n)]


def _with(store, candidate_id: str) -> dict:
    return views.get_candidate(store, candidate_id)


def _new_ones_holding(store, texts) -> list[dict]:
    return [c for c in views.list_candidates(store, "new") if set(texts) & {q["text"] for q in c["queries"]}]


def test_dismissed_questions_drawn_into_another_group_stay_dismissed_until_the_candidate_grows(store):
    settings = Settings(cluster_min_size=3, cluster_regrow_factor=2.0)
    topics = {"alpha": 0, "beta": 1, "gamma": 2, "delta": 3, "eps": 4}
    sizes = {"alpha": 6, "beta": 4, "gamma": 5, "delta": 5, "eps": 5}
    fake = TopicEmbedder({t: topics[name] for name, n in sizes.items() for t in _texts(name, n)})
    for name, n in sizes.items():
        for text in _texts(name, n):
            ask(store, text)
    cand.rebuild(store, fake.encode, "fake-1", settings)
    beta = next(c for c in views.list_candidates(store) if c["queries"][0]["text"].startswith("beta"))
    alpha = next(c for c in views.list_candidates(store) if c["queries"][0]["text"].startswith("alpha"))
    assert beta["size"] == 4
    review.dismiss(store, beta["id"])

    # The beta questions drift into alpha's group: alpha keeps its id and its own questions;
    # the dismissed ones stay with beta, still dismissed, so still hidden.
    fake.topics |= {t: topics["alpha"] for t in _texts("beta", 4)}
    merged = cand.rebuild(store, fake.encode, "fake-2", settings)
    assert merged["candidates"] == 5 and merged["retired"] == 0 and merged["new"] == 0
    assert {q["text"] for q in _with(store, alpha["id"])["queries"]} == set(_texts("alpha", 6))
    held = _with(store, beta["id"])
    assert held["active"] is True and held["status"] == "dismissed" and held["size"] == 4
    assert _new_ones_holding(store, _texts("beta", 4)) == []
    assert beta["id"] not in {c["id"] for c in views.list_candidates(store)}

    fake.topics |= {t: topics["beta"] for t in _texts("beta", 4)}  # and back: nothing changes
    back = cand.rebuild(store, fake.encode, "fake-3", settings)
    assert back["kept"] == 5 and back["new"] == back["returned"] == 0
    assert _with(store, beta["id"])["status"] == "dismissed" and _with(store, beta["id"])["size"] == 4

    # ... until it grows by cluster_regrow_factor (4 -> 8): then it is back, under its own id.
    more = _texts("beta", 4, start=5)
    fake.topics |= {t: topics["beta"] for t in more}
    for text in more:
        ask(store, text)
    grown = cand.rebuild(store, fake.encode, "fake-4", settings)
    assert grown["returned"] == 1
    assert _with(store, beta["id"])["status"] == "new" and _with(store, beta["id"])["size"] == 8


def test_merged_questions_grouped_with_a_new_topic_are_not_shown_again_as_new(store):
    """What a product team saw: a merged candidate's questions, re-clustered into a larger group of
    unreviewed questions that kept another id, came back under `new` (and would have become
    aliases of whatever that group was promoted to)."""
    settings = Settings(cluster_min_size=3)
    sizes, axes = {"kappa": 6, "mu": 3, "gamma": 5}, {"kappa": 0, "mu": 1, "gamma": 2}
    fake = TopicEmbedder({t: axes[name] for name, n in sizes.items() for t in _texts(name, n)})
    for name, n in sizes.items():
        for text in _texts(name, n):
            ask(store, text)
    cand.rebuild(store, fake.encode, "fake-1", settings)
    by_first = {c["queries"][0]["text"].split()[0]: c for c in views.list_candidates(store)}
    mu, kappa = by_first["mu"], by_first["kappa"]
    now = time.time()
    with db.writing(store) as conn:
        conn.execute(db.ideas.insert().values(id="dark-mode", title="Dark mode", status="open", votes=0,
                                              created_at=now, updated_at=now))  # fmt: skip
    assert review.merge(store, mu["id"], "dark-mode")["candidate"]["status"] == "merged"

    fake.topics |= {t: axes["kappa"] for t in _texts("mu", 3)}  # one group of 9 now
    summary = cand.rebuild(store, fake.encode, "fake-2", settings)
    assert summary["retired"] == 0 and summary["new"] == 0
    assert {q["text"] for q in _with(store, kappa["id"])["queries"]} == set(_texts("kappa", 6))
    kept = _with(store, mu["id"])
    assert kept["active"] is True and kept["status"] == "merged" and kept["size"] == 3
    assert _new_ones_holding(store, _texts("mu", 3)) == []
    assert review.promote(store, kappa["id"], "Kappa")["aliases_added"] == 6  # only kappa's own questions


def _four_topics_and_promo(store, tickets: bool = False):
    """Three topics of 5 questions and a "promo" one of 7 (its askers with emails if `tickets`),
    rebuilt once by a fake embedder: (the embedder, the settings, the promo candidate)."""
    settings = Settings(cluster_min_size=3)
    sizes = {"alpha": 5, "gamma": 5, "delta": 5, "promo": 7}
    axes = {"alpha": 0, "gamma": 2, "delta": 3, "promo": 5}
    fake = TopicEmbedder({t: axes[name] for name, n in sizes.items() for t in _texts(name, n)})
    for name, n in sizes.items():
        for i, text in enumerate(_texts(name, n)):
            ask(store, text, ticket={"email": f"{name}{i}@example.com"} if tickets and name == "promo" else None)
    cand.rebuild(store, fake.encode, "fake-1", settings)
    promo = next(c for c in views.list_candidates(store) if c["queries"][0]["text"].startswith("promo"))
    return fake, settings, promo


def test_part_of_a_promoted_candidate_clustered_apart_stays_with_it(store):
    fake, settings, promo = _four_topics_and_promo(store, tickets=True)
    idea_id = review.promote(store, promo["id"], "Promoted topic")["idea"]["id"]
    assert get_idea(store, idea_id)["votes"] == 7

    # Three of its questions move to a direction of their own: they stay with the promoted one.
    tail = _texts("promo", 7)[4:]
    fake.topics |= {t: 6 for t in tail}
    summary = cand.rebuild(store, fake.encode, "fake-2", settings)
    assert summary["candidates"] == 4 and summary["new"] == 0 and summary["kept"] == 4
    kept = _with(store, promo["id"])
    assert kept["status"] == "promoted" and kept["size"] == 7 and kept["idea_id"] == idea_id
    assert _new_ones_holding(store, _texts("promo", 7)) == []
    # Its requesters were recorded on the idea at promotion; nobody is counted twice.
    assert review.sync_requesters(store) == 0 and get_idea(store, idea_id)["votes"] == 7
    again = cand.rebuild(store, fake.encode, "fake-2", settings)
    assert again["kept"] == 4 and again["new"] == 0 and _with(store, promo["id"])["size"] == 7


def test_questions_left_out_of_a_promoted_candidate_that_group_apart_are_a_new_candidate(store):
    """The admin said they are not about the idea: grouped on their own by a rebuild, they are a
    new candidate to review, not a part of the promoted one that inherits its decision."""
    fake, settings, promo = _four_topics_and_promo(store)
    tail = _texts("promo", 7)[4:]
    review.promote(store, promo["id"], "Promoted topic", exclude=[q["search_id"] for q in promo["queries"] if q["text"] in tail])

    fake.topics |= {t: 6 for t in tail}  # the left-out three move to a direction of their own
    summary = cand.rebuild(store, fake.encode, "fake-2", settings)
    assert summary["candidates"] == 5 and summary["new"] == 1
    part = next(c for c in views.list_candidates(store) if {q["text"] for q in c["queries"]} == set(tail))
    assert part["status"] == "new" and part["idea_id"] is None and not any(q["excluded"] for q in part["queries"])
    kept = _with(store, promo["id"])
    assert kept["status"] == "promoted" and kept["size"] == 4


def test_assign_ids_matching_rules():
    """The pure matching: kept ids, a retired reviewed id taken back, new groups."""
    old = {
        "keep": {"status": "new", "active": True},
        "gone": {"status": "dismissed", "active": False},
        "prom": {"status": "promoted", "active": True},
        "newgone": {"status": "new", "active": False},
    }
    members = {"keep": {"k1", "k2", "k3", "k4", "g1", "g2", "g3"}, "prom": {"p1", "p2", "p3", "p4", "p5", "p6", "p7"}}
    history = {"gone": {"g1", "g2", "g3"}, "newgone": {"n1", "n2", "n3"}}
    new_sets = [
        {"k1", "k2", "k3", "k4"},  # keeps "keep"
        {"g1", "g2", "g3", "x1"},  # most of what "gone" had: takes it back
        {"p1", "p2", "p3", "p4"},  # keeps "prom"
        {"p5", "p6", "p7"},  # split off "prom", whose id is taken: new (a rebuild gives them back to "prom")
        {"n1", "n2", "n3"},  # a retired candidate that was never reviewed has no claim
        {"z1", "z2", "z3", "p5"},  # mostly new members: new
    ]
    present = set().union(*new_sets)
    mapping = cand.assign_ids(new_sets, old, members, history, present)
    assert mapping == {0: "keep", 1: "gone", 2: "prom"}


def test_reviewed_candidates_retired_for_a_while_come_back_with_their_decisions(store, embedder):
    """Real model: gantt (promoted) and time tracking (dismissed) leave the pool window, so a
    rebuild retires them; when their questions are back in the window, so are their ids."""
    settings = Settings(cluster_min_size=3, cluster_regrow_factor=2.0)
    t0 = time.time() - 3600
    early = [q for q in QUESTIONS if q["label"] in ("gantt", "time_tracking")]
    late = [q for q in QUESTIONS if q not in early]
    for i, q in enumerate(early + late):
        ask(store, q["text"], at=t0 + i, ticket={"email": f"user{i}@example.com"})
    cand.rebuild(store, embedder.encode, MODEL, settings)
    topics = by_topic(store, views.list_candidates(store))
    gantt, tracking = topics["gantt"]["id"], topics["time_tracking"]["id"]
    idea_id = review.promote(store, gantt, "Gantt charts")["idea"]["id"]
    review.dismiss(store, tracking)
    votes = get_idea(store, idea_id)["votes"]

    window = cand.rebuild(store, embedder.encode, MODEL, Settings(cluster_min_size=3, cluster_max_pool=len(late)))
    assert window["retired"] >= 2
    assert not _with(store, gantt)["active"] and not _with(store, tracking)["active"]

    full = cand.rebuild(store, embedder.encode, MODEL, settings)
    assert full["revived"] == 2 and full["new"] == 0
    assert _with(store, gantt)["status"] == "promoted" and _with(store, gantt)["idea_id"] == idea_id
    assert _with(store, tracking)["status"] == "dismissed" and _with(store, tracking)["active"]
    texts = [q["text"] for q in early]
    assert _new_ones_holding(store, texts) == []
    assert tracking not in {c["id"] for c in views.list_candidates(store)}
    assert review.sync_requesters(store) == 0 and get_idea(store, idea_id)["votes"] == votes


def test_migration_0004_adds_candidate_history_and_keeps_candidates(database_url):
    engine = db.make_engine(database_url)
    db.upgrade(engine, "0003")
    assert "candidate_history" not in sa.inspect(engine).get_table_names()
    search_id = record_search(engine, "kept question", None, None, False, [], "v0")
    now = time.time()
    with db.writing(engine) as conn:
        conn.execute(cand.candidates.insert().values(id="c-old", label="kept", status="dismissed", dismissed_size=3,
                                                     created_at=now, updated_at=now))
        conn.execute(cand.candidate_members.insert().values(search_id=search_id, candidate_id="c-old", joined_at=now))
    db.upgrade(engine, "0004")
    assert db.current_revision(engine) == "0004"
    assert "candidate_history" in sa.inspect(engine).get_table_names()
    db.upgrade(engine)  # the code reads the newest schema
    kept = views.get_candidate(engine, "c-old")
    assert kept["status"] == "dismissed" and [q["search_id"] for q in kept["queries"]] == [search_id]
    with db.writing(engine) as conn:
        conn.execute(cand.candidate_history.insert().values(candidate_id="c-old", search_id=search_id, recorded_at=now))
    engine.dispose()


def test_migration_0007_adds_exclusions_and_keeps_reviewed_candidates(database_url):
    """Before 0007 left-out questions were not recorded: a promoted candidate keeps all its
    members as they were, none marked excluded, and a later promote can record exclusions."""
    engine = db.make_engine(database_url)
    db.upgrade(engine, "0006")
    first = record_search(engine, "gantt chart please", None, None, False, [], "v0")
    second = record_search(engine, "what is the capital of peru", None, None, False, [], "v0")
    now = time.time()
    with db.writing(engine) as conn:
        conn.execute(cand.candidates.insert(), [
            {"id": "c-done", "label": "gantt", "status": "promoted", "idea_id": "gantt", "created_at": now, "updated_at": now},
            {"id": "c-new", "label": "peru", "status": "new", "idea_id": None, "created_at": now, "updated_at": now},
        ])
        conn.execute(cand.candidate_members.insert(), [
            {"search_id": first, "candidate_id": "c-done", "joined_at": now},
            {"search_id": second, "candidate_id": "c-new", "joined_at": now},
        ])
    db.upgrade(engine, "0007")
    assert db.current_revision(engine) == "0007"
    db.upgrade(engine)  # the code reads the newest schema
    done = views.get_candidate(engine, "c-done")
    assert done["status"] == "promoted" and done["queries"][0]["excluded"] is False
    with pytest.raises(cand.CandidateError):  # its only question left out: no question to describe it by
        review.promote(engine, "c-new", "New idea", exclude=[second])
    with db.writing(engine) as conn:  # a dismissed candidate a rebuild retired has no members left
        conn.execute(cand.candidates.insert().values(id="c-empty", label="old", status="dismissed", active=False,
                                                     idea_id=None, created_at=now, updated_at=now))
    assert review.promote(engine, "c-empty", title="Old idea")["candidate"]["status"] == "promoted"
    with db.writing(engine) as conn:
        conn.execute(cand.candidate_exclusions.insert().values(candidate_id="c-new", query_key="x", excluded_at=now))
    with db.writing(engine) as conn:  # a candidate's exclusions go with it
        conn.execute(cand.candidates.delete().where(cand.candidates.c.id == "c-new"))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(cand.candidate_exclusions)).scalar_one() == 0
    engine.dispose()


# --- requesters who ask after a review, when the idea was merged into another --------------------


def _idea(store, idea_id: str, title: str) -> None:
    from deflect.ideas import create_idea

    with db.writing(store) as conn:
        create_idea(conn, {"id": idea_id, "title": title})


def test_late_requesters_follow_a_merged_idea_to_its_open_target(store, embedder):
    from deflect.ideas import update_idea
    from deflect.votes import requesters

    settings = Settings()
    tracking = ask_all_and_rebuild(store, embedder, settings)["time_tracking"]
    _idea(store, "focus-timer", "Focus timer")
    _idea(store, "time-tracking", "Time tracking")
    review.merge(store, tracking["id"], "focus-timer")
    with db.writing(store) as conn:
        update_idea(conn, "focus-timer", {"merged_into": "time-tracking"})

    late = ask(store, "can I track hours spent on a task with a timer", ticket={"email": "Late@Example.com", "mrr": 42.0})
    assert cand.join_new(store, embedder.encode, MODEL) == 1
    cand.rebuild(store, embedder.encode, MODEL, settings)
    now = views.get_candidate(store, tracking["id"])
    assert late in {q["search_id"] for q in now["queries"]} and now["requesters"] == 1
    assert review.sync_requesters(store) == 1 and review.sync_requesters(store) == 0
    with store.connect() as conn:
        assert [p["email"] for p in requesters(conn, "time-tracking")] == ["Late@Example.com"]
        assert requesters(conn, "focus-timer") == []
    assert get_idea(store, "time-tracking")["votes"] == 1

    # Once the end of the chain is shipped, nobody new is recorded there.
    with db.writing(store) as conn:
        update_idea(conn, "time-tracking", {"status": "shipped"})
    ask(store, "track time per project please", ticket={"email": "later@example.com"})
    cand.join_new(store, embedder.encode, MODEL)
    assert review.sync_requesters(store) == 0


def test_sync_requesters_stops_at_a_merge_cycle(store, embedder):
    settings = Settings()
    for i, q in enumerate(QUESTIONS):
        ask(store, q["text"], ticket={"email": f"user{i}@example.com"})
    cand.rebuild(store, embedder.encode, MODEL, settings)
    offline = by_topic(store, views.list_candidates(store))["offline"]
    _idea(store, "one", "One")
    _idea(store, "two", "Two")
    review.merge(store, offline["id"], "one")
    with db.writing(store) as conn:  # a loop no API call can make (imports, hand edits): never followed forever
        conn.execute(db.ideas.update().where(db.ideas.c.id == "one").values(status="merged", merged_into="two"))
        conn.execute(db.ideas.update().where(db.ideas.c.id == "two").values(status="merged", merged_into="one"))
    ask(store, "does the mobile app work offline on a plane", ticket={"email": "new@example.com"})
    cand.join_new(store, embedder.encode, MODEL)
    assert review.sync_requesters(store) == 0


def test_the_answered_check_holds_the_lock_per_candidate_not_for_the_whole_pass(store, embedder):
    """After an index change the check runs one search per member question of every candidate (a
    minute or more with hundreds): the dashboard's reads, which take the same lock, get in between."""
    import contextlib
    import threading

    topics = ask_all_and_rebuild(store, embedder, Settings())
    lock, held, waited = threading.Lock(), [], []

    @contextlib.contextmanager
    def hold():
        with lock:
            held.append(True)
            yield

    def answer(vectors, texts):
        # A reader in another thread gets the lock between two candidates' checks.
        reader = threading.Thread(target=lambda: waited.append(lock.acquire(timeout=5) and (lock.release() or True)))
        reader.start()
        reader.join(timeout=0.05)  # it cannot while this candidate is being checked
        return [(None, False)] * len(texts)

    assert review.check_answered(store, "v-next", answer, embedder.encode, MODEL, {}, hold=hold) == 0
    assert len(held) == len(topics) >= 3  # one hold per candidate
    deadline = time.time() + 10
    while len(waited) < len(topics) and time.time() < deadline:
        time.sleep(0.01)
    assert waited == [True] * len(topics)  # each reader got in once the candidate was done


@pytest.mark.parametrize("overfetch", [1, 4])
def test_the_newest_pool_is_read_from_a_recent_window_and_is_the_same(store, embedder, monkeypatch, overfetch):
    """A rebuild keeps the newest cluster_max_pool pool searches; it reads only the searches of a
    recent window when that holds enough of them, with the very same result."""
    from deflect import pool as pool_module

    for q in QUESTIONS:
        ask(store, q["text"])
    ask(store, "how do i reset my password", answered=True)  # answered and no ticket: not in the pool
    everything = pool_module._load_pool(store)
    monkeypatch.setattr(pool_module, "POOL_OVERFETCH", overfetch)
    for limit in (1, 5, len(everything) - 1, len(everything), len(everything) + 5):
        assert [r["id"] for r in pool_module.load_pool(store, limit)] == [r["id"] for r in everything[-limit:]], limit
