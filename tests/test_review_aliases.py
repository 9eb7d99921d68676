"""Promoting or merging an idea candidate teaches retrieval: its questions become aliases of the idea.

Over real HTTP with the real model, on SQLite and PostgreSQL; store-level rules (no duplicates,
pending aliases activated, the cap, dismiss) against the store directly.
"""

from __future__ import annotations

import re
import time

import requests
import sqlalchemy as sa
from conftest import ADMIN_TOKEN, DATA, read_jsonl

from deflect import aliases, db, review
from deflect import candidates as cand
from deflect.events import normalize_query, record_search
from deflect.ideas import create_idea

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TIMEOUT = 60
# Customers asking for a dark mode. The idea the product team merges them into says none of
# these words ("Personal preferences"), so before the merge it is not what they are shown.
DARK = [
    "is there a dark mode",
    "can I switch the app to a dark theme",
    "dark mode please, the white screen hurts my eyes at night",
    "black background option for the web app",
    "how do I turn on night mode",
]
IDEAS = [
    {"id": "prefs", "title": "Personal preferences", "description": "Per-user settings for notifications, language and layout."},
    {"id": "workspace-settings", "title": "More workspace settings", "description": "Let admins configure more of the workspace."},
    {"id": "mobile-v2", "title": "Mobile app v2", "description": "Rebuild of the iOS and Android apps."},
    {"id": "calendar-sync", "title": "Calendar sync", "description": "Two-way sync with Google Calendar"},
]
OTHERS = [q["text"] for q in read_jsonl(DATA / "cluster_questions.jsonl") if q["label"] in ("gantt", "invoice_vat")]


def suggest(base: str, text: str, session: str | None = None) -> dict:
    body = {"query": text, "k": 10} | ({"session": session} if session else {})
    r = requests.post(f"{base}/api/suggest", json=body, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()


def top(base: str, text: str) -> tuple[str, str]:
    first = suggest(base, text)["results"][0]
    return first["type"], first["id"]


def ask(base: str, text: str, session: str) -> str:
    """An unanswered question: a search followed by a ticket (so it is in the pool whatever the answer)."""
    search_id = suggest(base, text, session)["search_id"]
    r = requests.post(f"{base}/api/events", json={"search_id": search_id, "type": "ticket_created"}, timeout=TIMEOUT)
    assert r.status_code == 202, r.text
    return search_id


def admin(method: str, url: str, **kwargs) -> requests.Response:
    return requests.request(method, url, headers=AUTH, timeout=TIMEOUT, **kwargs)


def candidate_of(base: str, text: str) -> dict:
    listed = admin("GET", f"{base}/api/clusters", params={"status": "all"}).json()["clusters"]
    return next(c for c in listed if text in {q["text"] for q in c["queries"]})


def setup_board(base: str, session_of=lambda i: f"s-{i}") -> dict:
    """The ideas, the dark-mode questions and some others asked, candidates rebuilt: the dark-mode candidate."""
    for body in IDEAS:
        assert admin("POST", f"{base}/api/ideas", json=body).status_code == 201
    for i, text in enumerate(DARK + OTHERS):
        ask(base, text, session_of(i))
    assert admin("POST", f"{base}/api/clusters/rebuild").status_code == 200
    dark = candidate_of(base, DARK[0])
    assert len({q["text"] for q in dark["queries"]} & set(DARK)) >= 4  # precondition: one topic, one candidate
    return dark


def test_merging_the_idea_into_another_moves_its_aliases_at_once(served):
    base, runtime = served(sync_interval_seconds=3600)  # no help from the polling: this process does it
    dark = setup_board(base)
    members = sorted({q["text"] for q in dark["queries"]})
    assert admin("POST", f"{base}/api/clusters/{dark['id']}/merge", json={"idea_id": "prefs"}).status_code == 200
    assert all(top(base, text) == ("idea", "prefs") for text in members)
    hub = admin("POST", f"{base}/api/ideas", json={"title": "Appearance settings hub"})
    assert hub.status_code == 201, hub.text
    moved = admin("PATCH", f"{base}/api/ideas/prefs", json={"merged_into": hub.json()["id"]})
    assert moved.status_code == 200, moved.text
    assert {text: top(base, text) for text in members} == dict.fromkeys(members, ("idea", hub.json()["id"]))


def test_merging_a_candidate_makes_its_questions_find_the_idea(served):
    base, runtime = served()
    dark = setup_board(base)
    members = sorted({q["text"] for q in dark["queries"]})
    before = {text: top(base, text) for text in members}
    assert all(found != ("idea", "prefs") for found in before.values()), before  # the idea's words alone do not match
    assert admin("GET", f"{base}/api/aliases").json()["aliases"] == []

    merged = admin("POST", f"{base}/api/clusters/{dark['id']}/merge", json={"idea_id": "prefs"})
    assert merged.status_code == 200, merged.text
    assert merged.json()["aliases_added"] == len(members)

    # The next customer who asks (in their own case and spacing) is shown the idea, at once.
    for text in members:
        assert top(base, "  " + text.upper()) == ("idea", "prefs"), text
    listed = admin("GET", f"{base}/api/aliases").json()["aliases"]
    assert sorted(a["query"] for a in listed) == members
    for a in listed:
        assert (a["item_type"], a["item_id"], a["active"], a["source"], a["candidate_id"]) == (
            "idea", "prefs", True, "review", dark["id"])
    assert requests.get(f"{base}/healthz", timeout=TIMEOUT).json()["aliases"] == len(members)
    with runtime.db.connect() as conn:  # encoded by the reload right after the decision
        stored = conn.execute(sa.select(db.aliases.c.model, db.aliases.c.vector)).all()
    assert all(model and vector for model, vector in stored)

    # Dismissing another candidate teaches nothing.
    other = candidate_of(base, OTHERS[0])
    assert other["status"] == "new"
    assert admin("POST", f"{base}/api/clusters/{other['id']}/dismiss").status_code == 200
    assert len(admin("GET", f"{base}/api/aliases").json()["aliases"]) == len(members)

    # Undo is deleting the aliases, as for any other.
    for a in listed:
        assert admin("DELETE", f"{base}/api/aliases/{a['id']}").status_code == 200
    assert {text: top(base, text) for text in members} == before


def test_promoting_teaches_the_new_idea_and_another_process_follows(served, settings_factory, database_url):
    from deflect.runtime import Runtime

    base, runtime = served()
    other = Runtime(settings_factory(database_url=database_url, sync_interval_seconds=0.2))  # a second server process
    try:
        dark = setup_board(base)
        promoted = admin("POST", f"{base}/api/clusters/{dark['id']}/promote", json={"title": "Project Aurora", "description": "Milestone 7 of the client roadmap."})
        assert promoted.status_code == 200, promoted.text
        idea_id = promoted.json()["idea"]["id"]
        assert promoted.json()["aliases_added"] >= 4
        assert top(base, DARK[3]) == ("idea", idea_id)
        deadline = time.time() + 20
        while time.time() < deadline:
            first = other.suggest(DARK[3], record=False)["results"][0]
            if (first["type"], first["id"]) == ("idea", idea_id):
                break
            time.sleep(0.2)
        assert (first["type"], first["id"]) == ("idea", idea_id)  # no restart: it polled the generation
    finally:
        other.close()
        other.db.dispose()


def test_review_aliases_do_not_use_up_the_visitors_hourly_limit(served):
    base, runtime = served(alias_limit_per_session=2)
    # Every question came from one visitor session.
    dark = setup_board(base, session_of=lambda i: "visitor")
    merged = admin("POST", f"{base}/api/clusters/{dark['id']}/merge", json={"idea_id": "prefs"})
    assert merged.json()["aliases_added"] > 2
    statuses = []
    for n in range(3):
        search_id = suggest(base, f"the purple elephant code number {n}", "visitor")["search_id"]
        r = requests.post(f"{base}/api/events", json={"search_id": search_id, "type": "helpful",
                                                       "item_id": "integrations/slack"}, timeout=TIMEOUT)
        statuses.append(r.json()["alias"]["status"])
    assert statuses == ["learned", "learned", "rate_limited"]
    with runtime.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.alias_confirmations)).scalar_one() == 2  # the visitor's


# --- the rules, on the store ------------------------------------------------------------------


def make_candidate(store, candidate_id: str, texts: list[str], start: float = 1_700_000_000.0) -> list[str]:
    """A `new` candidate whose members are searches of `texts`, asked one second apart in that order."""
    ids = []
    for n, text in enumerate(texts):
        search_id = record_search(store, text, f"s-{candidate_id}-{n}", None, False, [], "v1")
        with db.writing(store) as conn:
            conn.execute(db.searches.update().where(db.searches.c.id == search_id).values(created_at=start + n))
        ids.append(search_id)
    now = time.time()
    with db.writing(store) as conn:
        conn.execute(cand.candidates.insert().values(id=candidate_id, label=texts[0], size=len(texts), created_at=now,
                                                     updated_at=now))
        conn.execute(cand.candidate_members.insert(), [
            {"search_id": s, "candidate_id": candidate_id, "joined_at": now} for s in ids])
    return ids


def add_idea(store, idea_id: str, title: str) -> None:
    with db.writing(store) as conn:
        create_idea(conn, {"id": idea_id, "title": title})


def alias_rows(store) -> list[dict]:
    return aliases.list_aliases(store)


def test_two_candidates_with_the_same_question_make_one_alias(store):
    add_idea(store, "prefs", "Personal preferences")
    make_candidate(store, "c-one", ["is there a dark mode", "Is there a  DARK mode", "night mode?"])
    make_candidate(store, "c-two", ["IS THERE A DARK MODE", "black background please"])
    first = review.merge(store, "c-one", "prefs")
    assert first["aliases_added"] == 2  # the same question twice in one candidate: one alias
    generation = aliases.generation(store)
    second = review.merge(store, "c-two", "prefs")
    assert second["aliases_added"] == 1
    assert aliases.generation(store) == generation + 1
    rows = alias_rows(store)
    assert sorted(normalize_query(r["query"]) for r in rows) == ["black background please", "is there a dark mode", "night mode?"]
    dark = next(r for r in rows if normalize_query(r["query"]) == "is there a dark mode")
    assert (dark["query"], dark["candidate_id"]) == ("Is there a  DARK mode", "c-one")  # the most recent wording
    with store.connect() as conn:
        assert conn.execute(sa.select(db.aliases.c.vector).where(db.aliases.c.vector.is_not(None))).first() is None


def test_the_cli_lists_review_aliases_as_such(clean_env, tmp_path):
    from click.testing import CliRunner

    from deflect.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    add_idea(engine, "prefs", "Personal preferences")
    make_candidate(engine, "c-one", ["is there a dark mode"])
    review.merge(engine, "c-one", "prefs")
    engine.dispose()
    listed = CliRunner().invoke(main, ["aliases", "list", "--database-url", url], catch_exceptions=False)
    assert listed.exit_code == 0
    assert re.search(r"active\s+review\s+idea:prefs\s+'is there a dark mode'", listed.stdout), listed.stdout


def test_a_pending_alias_is_activated_and_an_active_one_left_alone(store):
    add_idea(store, "prefs", "Personal preferences")
    policy = aliases.AliasPolicy(min_confirmations=2)
    for text, sessions in (("is there a dark mode", ["v1"]), ("night mode?", ["v1", "v2"])):
        for session in sessions:
            search_id = record_search(store, text, session, None, False, [], "v1")
            with db.writing(store) as conn:
                search = {"id": search_id, "query": text}
                aliases.confirm(conn, search, "idea", "prefs", session, policy, None, "m")
    before = {r["query"]: r for r in alias_rows(store)}
    assert (before["is there a dark mode"]["active"], before["night mode?"]["active"]) == (False, True)
    make_candidate(store, "c-one", ["is there a dark mode", "night mode?"])
    assert review.merge(store, "c-one", "prefs")["aliases_added"] == 1
    after = {r["query"]: r for r in alias_rows(store)}
    assert len(after) == 2
    assert after["is there a dark mode"] | {"updated_at": None} == before["is there a dark mode"] | {
        "active": True, "source": "review", "candidate_id": "c-one", "updated_at": None}
    assert after["night mode?"] == before["night mode?"]  # learned from visitors: stays theirs


def test_a_question_an_article_answered_is_no_alias_but_its_asker_is_a_requester(store):
    """Someone shown the SSO article (answered) filed a ticket anyway and landed in the SCIM candidate:
    an alias would put the SCIM idea above the SSO article for everyone who asks alike."""
    from deflect.events import insert_event
    from deflect.votes import requesters

    add_idea(store, "scim", "SCIM user provisioning")
    ids = make_candidate(store, "c-scim", ["scim provisioning from okta", "sync users with scim", "sso with okta"])
    with db.writing(store) as conn:
        conn.execute(db.searches.update().where(db.searches.c.id == ids[2]).values(answered=True))
        conn.execute(db.search_results.insert(), [
            {"search_id": ids[2], "rank": 1, "item_type": "article", "item_id": "account/sso", "score": 0.91},
            {"search_id": ids[2], "rank": 2, "item_type": "idea", "item_id": "scim", "score": 0.2}])
        insert_event(conn, {"id": ids[2], "session": "s-c-scim-2"}, "ticket_created", None, None, {"email": "it@acme.example"})
    merged = review.merge(store, "c-scim", "scim")
    assert merged["aliases_added"] == 2 and merged["requesters_added"] == 1
    assert sorted(a["query"] for a in alias_rows(store)) == ["scim provisioning from okta", "sync users with scim"]
    with store.connect() as conn:
        assert [p["email"] for p in requesters(conn, "scim")] == ["it@acme.example"]


def test_a_large_candidate_teaches_its_most_recent_questions_only(store):
    add_idea(store, "prefs", "Personal preferences")
    texts = [f"dark mode request number {n}" for n in range(review.REVIEW_ALIAS_LIMIT + 20)]
    make_candidate(store, "c-big", texts)
    out = review.promote(store, "c-big", "Dark mode")
    assert out["aliases_added"] == review.REVIEW_ALIAS_LIMIT == 50
    assert {r["query"] for r in alias_rows(store)} == set(texts[-review.REVIEW_ALIAS_LIMIT:])
    assert {r["item_id"] for r in alias_rows(store)} == {out["idea"]["id"]}


def test_dismiss_teaches_nothing(store):
    make_candidate(store, "c-one", ["is there a dark mode", "night mode?", "black background please"])
    generation = aliases.generation(store)
    review.dismiss(store, "c-one")
    assert alias_rows(store) == [] and aliases.generation(store) == generation


def test_migration_0005_marks_existing_aliases_as_feedback(database_url):
    engine = db.make_engine(database_url)
    db.upgrade(engine, "0004")
    assert "source" not in {c["name"] for c in sa.inspect(engine).get_columns("aliases")}
    with db.writing(engine) as conn:
        conn.execute(sa.text(
            "INSERT INTO aliases (item_type, item_id, query, query_key, confirmations, active, created_at, updated_at) "
            "VALUES ('article', 'billing/refunds', 'Money back?', 'money back?', 2, :active, 1, 1)"), {"active": True})
    db.upgrade(engine, "0005")
    assert db.current_revision(engine) == "0005"
    [row] = aliases.list_aliases(engine)
    assert (row["query"], row["active"], row["confirmations"], row["source"], row["candidate_id"]) == (
        "Money back?", True, 2, "feedback", None)
    engine.dispose()


def test_an_idea_merged_into_another_hands_its_aliases_over(served):
    """The questions that found an idea find the idea it was merged into (it is no longer suggested)."""
    base, _ = served()
    dark = setup_board(base)
    members = sorted({q["text"] for q in dark["queries"]})
    assert admin("POST", f"{base}/api/clusters/{dark['id']}/merge", json={"idea_id": "prefs"}).status_code == 200
    assert admin("PATCH", f"{base}/api/ideas/prefs", json={"merged_into": "workspace-settings"}).status_code == 200
    listed = admin("GET", f"{base}/api/aliases").json()["aliases"]
    assert sorted(a["query"] for a in listed) == members
    assert {(a["item_type"], a["item_id"]) for a in listed} == {("idea", "workspace-settings")}
    deadline = time.monotonic() + 15  # other processes follow the alias generation; this one at once or on its next poll
    while time.monotonic() < deadline and top(base, members[0]) != ("idea", "workspace-settings"):
        time.sleep(0.3)
    for text in members:
        assert top(base, text) == ("idea", "workspace-settings"), text


def test_moving_aliases_drops_the_ones_the_target_has(store):
    from deflect.db import writing

    with writing(store) as conn:
        for item_id, query in (("a", "dark mode"), ("a", "night theme"), ("b", "Dark  Mode")):
            aliases.from_review(conn, "idea", item_id, [query], "cand")
        assert aliases.move_to(conn, "idea", "a", "b") == 1
    rows = {(a["item_id"], a["query"]) for a in aliases.list_aliases(store)}
    assert rows == {("b", "Dark  Mode"), ("b", "night theme")}


def test_moving_keeps_a_learned_alias_over_the_targets_pending_one(store):
    from deflect.db import writing

    with writing(store) as conn:
        aliases.from_review(conn, "idea", "a", ["dark mode"], "cand")  # active on the merged idea
        conn.execute(db.aliases.insert().values(  # pending on the target: one confirmation of two
            item_type="idea", item_id="b", query="dark mode", query_key=normalize_query("dark mode"),
            confirmations=1, active=False, source="feedback", created_at=time.time(), updated_at=time.time()))
        assert aliases.move_to(conn, "idea", "a", "b") == 1
    assert [(a["item_id"], a["active"]) for a in aliases.list_aliases(store)] == [("b", True)]


def test_aliases_are_listed_all_active_or_pending(store):
    from deflect.db import writing

    with writing(store) as conn:
        aliases.from_review(conn, "idea", "a", ["dark mode"], "cand")
        conn.execute(db.aliases.insert().values(
            item_type="idea", item_id="b", query="night theme", query_key=normalize_query("night theme"),
            confirmations=1, active=False, source="feedback", created_at=time.time(), updated_at=time.time()))
    queries = {flag: [a["query"] for a in aliases.list_aliases(store, active=flag)] for flag in (None, True, False)}
    assert queries == {None: ["dark mode", "night theme"], True: ["dark mode"], False: ["night theme"]}
