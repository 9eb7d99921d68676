"""Forgetting in the store (SQLite and PostgreSQL), below the CLI: whole typings across a retention
cutoff, identifiers followed, words in any script, candidates relabelled (current and reviewed),
left-out wordings others still ask, and a cluster rebuild racing an erasure. The real model."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
from conftest import DATA, read_jsonl

from deflect import candidates as cand
from deflect import db
from deflect.erasure import Person, erase_searches, find, forget_before, forget_person, show_person
from deflect.events import insert_event, normalize_query, record_search
from deflect.metrics import ERASED, compute_metrics
from deflect.pool import pool_vectors
from deflect.settings import Settings

MODEL = "test-model"


def ask(engine, text: str, session: str | None = None, at: float | None = None, ticket: dict | None = None) -> str:
    search_id = record_search(engine, text, session, None, False, [], "v1")
    with db.writing(engine) as conn:
        if at is not None:
            conn.execute(db.searches.update().where(db.searches.c.id == search_id).values(created_at=at))
        if ticket is not None:
            insert_event(conn, {"id": search_id, "session": session}, "ticket_created", None, None, ticket)
    return search_id


def query_of(engine, search_id: str) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(db.searches.c.query).where(db.searches.c.id == search_id)).scalar_one()


def totals(engine) -> dict:
    return compute_metrics(engine, now=time.time() + 3600)["totals"]


def add_candidate(engine, cid: str, label: str, members: list[str], status: str = "new", active: bool = True) -> None:
    now = time.time()
    with db.writing(engine) as conn:
        conn.execute(cand.candidates.insert().values(
            id=cid, label=label, keywords=json.dumps(label.split()[:3]), status=status, active=active,
            size=len(members), created_at=now, updated_at=now))
        table = cand.candidate_members if active else cand.candidate_history
        stamp = {"how": "rebuild", "joined_at": now} if active else {"recorded_at": now}
        conn.execute(table.insert(), [{"search_id": s, "candidate_id": cid} | stamp for s in members])


def candidate(engine, cid: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(sa.select(cand.candidates).where(cand.candidates.c.id == cid)).one()
    return dict(row._mapping) | {"keywords": json.loads(row.keywords)}


def test_a_question_typed_across_the_retention_cutoff_is_forgotten_whole(store):
    cutoff = time.time() - 600
    typed = [ask(store, "how do i", "s1", cutoff - 2), ask(store, "how do i export", "s1", cutoff + 1),
             ask(store, "how do i export my data", "s1", cutoff + 3)]
    later = ask(store, "what does the pro plan cost", "s1", cutoff + 200)  # a new question of the same session
    old = ask(store, "cancel my subscription", "s2", cutoff - 50)
    before = totals(store)
    assert before["searches"] == 3  # the typing's last search, the later question, the old one
    done = forget_before(store, cutoff)
    assert done["searches"] == 4, done
    assert {query_of(store, s) for s in typed + [old]} == {ERASED}
    assert query_of(store, later) == "what does the pro plan cost"
    assert totals(store) == before  # the prefix before the cutoff did not become a final search
    assert forget_before(store, cutoff)["searches"] == 0


def test_other_identifiers_are_named_not_followed_and_each_requester_gets_one_pseudonym(store):
    both = ask(store, "my invoice is wrong", "s-a", ticket={"email": "Anna@example.de", "customer_id": "acme", "mrr": 50.0})
    by_id = ask(store, "still waiting for my refund", "s-b", ticket={"customer_id": "acme"})
    bob = ask(store, "how do I add a user", "s-c", ticket={"customer_id": "acme", "email": "bob@example.de"})
    shown = show_person(store, Person(emails=("anna@EXAMPLE.de",)))
    # The customer id on her ticket may be an account Bob shares: named, not followed.
    assert shown["other_identifiers"] == {"emails": [], "customer_ids": ["acme"]}
    assert shown["counts"]["requester_events"] == 1 and {s["id"] for s in shown["searches"]} == {both}
    forget_person(store, Person(emails=("anna@example.de",)))
    assert query_of(store, both) == ERASED and query_of(store, by_id) == "still waiting for my refund"
    assert query_of(store, bob) == "how do I add a user"
    # The operator adds the account: every row of it goes, one pseudonym for customer:acme, MRR kept.
    forget_person(store, Person(customer_ids=("acme",)))
    with store.connect() as conn:
        people = conn.execute(sa.select(db.events.c.customer_id, db.events.c.email, db.events.c.mrr)).all()
    assert {query_of(store, s) for s in (by_id, bob)} == {ERASED}
    assert {p.email for p in people} == {None} and all(p.customer_id.startswith("erased-") for p in people)
    # Anna's row kept the pseudonym her own request gave it; the account's rows share one of theirs.
    assert len({p.customer_id for p in people}) == 2 and sorted(p.mrr or 0 for p in people) == [0, 0, 50.0]


def test_words_in_any_script_are_found_case_ignored(store):
    turkish = ask(store, "Rechnung für ÖZTÜRK GmbH ist falsch", "s-t")
    korean = ask(store, "김민수 계정 비밀번호를 잊어버렸어요", "s-k")
    ask(store, "Rechnung ist falsch", "s-u")
    with store.connect() as conn:
        assert find(conn, Person(mentioning=("öztürk",))).search_ids == {turkish}
        assert find(conn, Person(mentioning=("김민수",))).search_ids == {korean}
        assert find(conn, Person(mentioning=("민수",))).search_ids == {korean}  # two Hangul syllables: a given name


def test_words_too_short_to_look_for_are_refused_by_name(tmp_path):
    """"li" would be found in "click": an erasure would take others' questions, so it is a usage
    error naming it, never silently dropped while the rest runs."""
    from click.testing import CliRunner

    from deflect.cli import main
    from deflect.erasure import too_short

    assert too_short("Li") and too_short(" a ") and not too_short("Lia") and not too_short("민수") and too_short("민")
    url = f"sqlite:///{tmp_path / 'none.db'}"
    for args in (["--mentioning", "Li"], ["--email", "a@b.test", "--mentioning", "Li"]):
        result = CliRunner().invoke(main, ["person", "show", *args, "--database-url", url])
        assert result.exit_code == 2 and "--mentioning" in result.output and "'Li' is too short" in result.output


def test_candidates_worded_by_the_person_are_relabelled_current_and_reviewed(store):
    anna = ask(store, "anna schmidt asks for gantt charts", "s-anna")
    gantt = [ask(store, "gantt chart view please", "s-1"), ask(store, "do you have gantt charts", "s-2")]
    add_candidate(store, "c-gantt", "anna schmidt asks for gantt charts", [anna, *gantt])
    dora = ask(store, "my vat number 12345 is wrong on invoices", "s-dora", ticket={"email": "dora@example.com"})
    vat = ask(store, "vat id missing on invoice", "s-3")
    add_candidate(store, "c-vat", "my vat number 12345 is wrong on invoices", [dora, vat], status="promoted", active=False)

    forget_person(store, Person(mentioning=("Anna Schmidt",)))
    relabelled = candidate(store, "c-gantt")
    assert relabelled["label"] == "gantt chart view please" and "anna" not in json.dumps(relabelled["keywords"])
    assert "gantt" in relabelled["keywords"]
    # A reviewed, retired candidate remembers its questions in candidate_history: found there too.
    done = forget_person(store, Person(emails=("dora@example.com",)))
    assert done["candidates_relabelled"] == 1
    assert candidate(store, "c-vat")["label"] == "vat id missing on invoice"


def test_keywords_from_erased_questions_go_and_notifications_quoting_the_label_are_rewritten(store):
    from deflect.outbox import enqueue, outbox

    carl = ask(store, "refund for invoice of Carl Jung", "s-carl", ticket={"email": "carl@example.com"})
    others = [ask(store, "refund for my invoice", "s-4"), ask(store, "invoice refund please", "s-5")]
    add_candidate(store, "c-ref", "refund for my invoice", [carl, *others])
    with db.writing(store) as conn:
        conn.execute(cand.candidates.update().where(cand.candidates.c.id == "c-ref").values(
            keywords=json.dumps(["refund", "invoice", "jung"]), label="refund for invoice of Carl Jung"))
        enqueue(conn, "article_published", "article:billing/refunds:candidate:c-ref", {"email": "dana@example.com"},
                {"article": {"id": "billing/refunds"}, "candidate": {"id": "c-ref", "label": "refund for invoice of Carl Jung"}})
    done = forget_person(store, Person(emails=("carl@example.com",)))
    assert done["candidates_relabelled"] == 1
    changed = candidate(store, "c-ref")
    assert changed["keywords"] == ["refund", "invoice"] and changed["label"] == "refund for my invoice"
    with store.connect() as conn:
        [payload] = [json.loads(p) for p in conn.execute(sa.select(outbox.c.payload)).scalars()]
    assert payload["candidate"]["label"] == "refund for my invoice" and payload["requester"]["email"] == "dana@example.com"


def test_a_left_out_wording_stays_while_someone_else_still_asks_it(store):
    wording = "gantt charts please"
    mine = ask(store, wording, "s-erin", ticket={"email": "erin@example.com"})
    ask(store, wording, "s-frank", ticket={"email": "frank@example.com"})
    add_candidate(store, "c-x", "dark mode", [mine])
    with db.writing(store) as conn:
        conn.execute(cand.candidate_exclusions.insert().values(candidate_id="c-x", query_key=normalize_query(wording),
                                                                 excluded_at=time.time()))

    def left_out() -> list[str]:
        with store.connect() as conn:
            return list(conn.execute(sa.select(cand.candidate_exclusions.c.query_key)).scalars())

    forget_person(store, Person(emails=("erin@example.com",)))
    assert left_out() == [wording]  # Frank still asks it: the admin's decision stands
    forget_person(store, Person(emails=("frank@example.com",)))
    assert left_out() == []


def test_a_rebuild_that_read_a_question_before_it_was_forgotten_writes_nothing_of_it(store, embedder):
    questions = [q["text"] for q in read_jsonl(DATA / "cluster_questions.jsonl")]
    ids = [ask(store, text) for text in questions]
    target, target_text = ids[0], questions[0]  # a gantt question, in the pool the rebuild reads

    def encode_while_forgetting(texts):
        with db.writing(store) as conn:  # another process forgets it while this one embeds and clusters
            erase_searches(conn, [target])
        return embedder.encode(texts)

    summary = cand.rebuild(store, encode_while_forgetting, MODEL, Settings())
    assert summary["candidates"] >= 3, summary
    with store.connect() as conn:
        labels = [f"{c.label} {c.keywords}" for c in conn.execute(sa.select(cand.candidates.c.label, cand.candidates.c.keywords))]
        members = set(conn.execute(sa.select(cand.candidate_members.c.search_id)).scalars())
        cached = set(conn.execute(sa.select(pool_vectors.c.search_id)).scalars())
    assert target not in members and target not in cached and len(cached) == len(ids) - 1
    assert all(target_text not in text for text in labels) and ids[1] in members  # the others still cluster
