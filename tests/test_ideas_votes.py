"""Votes in the store (SQLite and PostgreSQL): one per requester per idea, closed ideas, merges."""

from __future__ import annotations

import threading

import pytest

from deflect import db
from deflect.ideas import IdeaConflict, create_idea, get_idea, update_idea
from deflect.votes import requesters, vote


def _ideas(store, *specs: dict) -> None:
    with db.writing(store) as conn:
        for spec in specs:
            create_idea(conn, spec)


def _vote(store, idea_id: str, requester: dict | None = None, update_known: bool = False) -> dict:
    with db.writing(store) as conn:
        return vote(conn, idea_id, requester, update_known=update_known)


def _requesters(store, idea_id: str) -> list[dict]:
    with store.connect() as conn:
        return requesters(conn, idea_id)


def test_one_vote_per_requester_emails_in_any_case(store):
    _ideas(store, {"id": "dark-mode", "title": "Dark mode"})
    answers = [_vote(store, "dark-mode", {"email": email}) for email in
               ("same@x.test", "same@x.test", "SAME@x.test", "Same@X.Test", "same@x.test")]
    assert [a["counted"] for a in answers] == [True, False, False, False, False]
    assert [a["votes"] for a in answers] == [1, 1, 1, 1, 1]  # each answer reports the count as it is
    assert get_idea(store, "dark-mode")["votes"] == 1 and len(_requesters(store, "dark-mode")) == 1


def test_a_customer_votes_once_and_a_public_repeat_changes_nothing_about_them(store):
    _ideas(store, {"id": "sso", "title": "SSO"})
    _vote(store, "sso", {"customer_id": "acme", "mrr": 500.0})
    # Anyone may vote: a higher MRR claimed for acme would show its MRR in the total's change
    # (and an email added would take its "shipped" notice), so a public repeat is only counted out.
    again = _vote(store, "sso", {"customer_id": "acme", "email": "attacker@evil.test", "mrr": 1_000_000.0})
    assert again["counted"] is False and again["votes"] == 1 and again["mrr"] == 500.0
    assert _requesters(store, "sso") == [{"customer_id": "acme", "email": None, "mrr": 500.0}]
    # Sent with the admin token (update_known), the same repeat is news: the higher MRR, a missing email.
    trusted = _vote(store, "sso", {"customer_id": "acme", "email": "ops@acme.test", "mrr": 650.0}, update_known=True)
    assert trusted["counted"] is False and trusted["mrr"] == 650.0
    lower = _vote(store, "sso", {"customer_id": "acme", "email": "other@acme.test", "mrr": 10.0}, update_known=True)
    assert lower["counted"] is False and lower["mrr"] == 650.0  # the highest stays, and the first email
    assert _requesters(store, "sso") == [{"customer_id": "acme", "email": "ops@acme.test", "mrr": 650.0}]
    # The same person without their customer id (the same email) is still the same person.
    assert _vote(store, "sso", {"email": "OPS@acme.test"})["counted"] is False
    # Someone else, and anonymous votes, count.
    assert _vote(store, "sso", {"email": "other@acme.test", "mrr": 5.0})["counted"] is True
    assert _vote(store, "sso")["counted"] is True and _vote(store, "sso")["counted"] is True
    idea = _vote(store, "sso", {"customer_id": "acme"})
    assert idea["votes"] == 4 and idea["requesters"] == 2 and idea["mrr"] == 655.0


def test_voting_is_closed_on_shipped_and_declined_ideas_and_behind_a_merge(store):
    _ideas(store, {"id": "done", "title": "Done", "status": "shipped"}, {"id": "no", "title": "No", "status": "declined"},
           {"id": "old", "title": "Old"}, {"id": "target", "title": "Target"})
    for idea_id in ("done", "no"):
        with pytest.raises(IdeaConflict) as closed:
            _vote(store, idea_id, {"email": "a@x.test"})
        assert closed.value.field == "id" and "voting is closed" in str(closed.value)
    with db.writing(store) as conn:
        update_idea(conn, "old", {"merged_into": "target"})
    assert _vote(store, "old", {"email": "a@x.test"})["id"] == "target"  # goes to the open target
    with db.writing(store) as conn:
        update_idea(conn, "target", {"status": "shipped"})
    with pytest.raises(IdeaConflict) as behind:
        _vote(store, "old", {"email": "b@x.test"})
    assert "merged into 'target'" in str(behind.value)
    assert get_idea(store, "target")["votes"] == 1 and get_idea(store, "done")["votes"] == 0


def test_merging_counts_a_person_who_voted_for_both_once(store):
    _ideas(store, {"id": "gantt", "title": "Gantt", "votes": 2}, {"id": "timeline", "title": "Timeline"})
    _vote(store, "timeline", {"customer_id": "c1", "mrr": 100.0})
    _vote(store, "gantt", {"customer_id": "c1", "mrr": 300.0})
    _vote(store, "gantt", {"email": "q@x.test", "mrr": 7.0})
    _vote(store, "gantt")
    assert get_idea(store, "gantt")["votes"] == 5
    with db.writing(store) as conn:
        update_idea(conn, "gantt", {"merged_into": "timeline"})
    target = get_idea(store, "timeline")
    # timeline's 1 + gantt's 5 (2 imported, c1, q, anonymous), less c1's second vote
    assert target["votes"] == 5 and get_idea(store, "gantt")["votes"] == 0
    people = sorted(_requesters(store, "timeline"), key=lambda p: p["mrr"])
    # c1's first vote (timeline's, at 100) stands: a vote's details are public input, and folding
    # the later one in on a merge would let anyone's vote on gantt change what is on record.
    assert [(p["customer_id"], p["email"], p["mrr"]) for p in people] == [(None, "q@x.test", 7.0), ("c1", None, 100.0)]


def test_a_strangers_vote_on_the_merged_idea_changes_nothing_on_record(store):
    _ideas(store, {"id": "a", "title": "A"}, {"id": "b", "title": "B"})
    _vote(store, "a", {"customer_id": "C1", "mrr": 900.0})
    _vote(store, "b", {"customer_id": "C1", "email": "evil@attacker.test", "mrr": 1_000_000.0})
    with db.writing(store) as conn:
        update_idea(conn, "b", {"merged_into": "a"})
    assert _requesters(store, "a") == [{"customer_id": "C1", "email": None, "mrr": 900.0}]
    assert get_idea(store, "a")["votes"] == 1


def test_simultaneous_votes_of_one_person_count_once(store):
    _ideas(store, {"id": "api", "title": "Public API"})
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def run():
        try:
            start.wait()
            _vote(store, "api", {"email": "racer@x.test"})
        except BaseException as exc:  # noqa: BLE001 (asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert get_idea(store, "api")["votes"] == 1 and len(_requesters(store, "api")) == 1


def test_reimporting_ideas_keeps_votes_and_ships_like_a_patch(store, tmp_path):
    """`deflect ideas import` on ideas that exist: only the fields a line gives change, live votes
    stay, and a line that ships an idea queues its requesters' notifications (DESIGN 3)."""
    import json

    import sqlalchemy as sa

    from deflect.idea_import import import_ideas
    from deflect.outbox import outbox

    first = tmp_path / "ideas.jsonl"
    first.write_text(
        json.dumps({"id": "gantt", "title": "Gantt view", "status": "planned", "votes": 7}) + "\n"
        + json.dumps({"id": "sso", "title": "Single sign-on", "votes": 3}) + "\n"
    )  # fmt: skip
    assert import_ideas(store, first) == (2, 0, [], [])
    _vote(store, "gantt", {"email": "ana@example.com", "mrr": 40.0})
    _vote(store, "sso", {"customer_id": "c-9", "mrr": 12.5})

    again = tmp_path / "again.jsonl"
    again.write_text(
        json.dumps({"id": "gantt", "title": "Gantt charts"}) + "\n"  # no status, no votes: both kept
        + json.dumps({"id": "sso", "title": "Single sign-on", "status": "shipped", "votes": 1}) + "\n"
        + json.dumps({"id": "sso", "title": "Single sign-on", "status": "merged"}) + "\n"  # merged needs a target
    )  # fmt: skip
    inserted, updated, errors, _ = import_ideas(store, again)
    assert (inserted, updated) == (0, 2)
    assert len(errors) == 1 and "merged_into" in errors[0] and ":3:" in errors[0]
    gantt, sso = get_idea(store, "gantt"), get_idea(store, "sso")
    assert (gantt["title"], gantt["status"], gantt["votes"]) == ("Gantt charts", "planned", 8)
    assert (sso["status"], sso["votes"]) == ("shipped", 4)  # a lower count in the file does not drop votes
    assert [p["customer_id"] for p in _requesters(store, "sso")] == ["c-9"]
    with store.connect() as conn:
        queued = conn.execute(sa.select(outbox.c.kind, outbox.c.dedupe_key, outbox.c.customer_id)).all()
    assert [(kind, customer) for kind, _, customer in queued] == [("idea_shipped", "c-9")]
    assert "idea:sso" in queued[0][1]

    # The same file again changes nothing and notifies nobody twice.
    assert import_ideas(store, again)[:2] == (0, 2)
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one() == 1


def test_an_import_line_without_a_title_changes_an_existing_idea_only(store, tmp_path):
    """{"id", "status"} ships an idea like a PATCH would; a new idea still needs a title."""
    import json

    from deflect.idea_import import import_ideas

    (tmp_path / "ideas.jsonl").write_text(json.dumps({"id": "gantt", "title": "Gantt view", "votes": 7}) + "\n")
    assert import_ideas(store, tmp_path / "ideas.jsonl") == (1, 0, [], [])
    (tmp_path / "ship.jsonl").write_text(
        json.dumps({"id": "gantt", "status": "shipped"}) + "\n"
        + json.dumps({"id": "newcomer", "status": "open"}) + "\n"
    )  # fmt: skip
    inserted, updated, errors, _ = import_ideas(store, tmp_path / "ship.jsonl")
    assert (inserted, updated) == (0, 1)
    assert len(errors) == 1 and ":2: title:" in errors[0]
    gantt = get_idea(store, "gantt")
    assert (gantt["title"], gantt["status"], gantt["votes"]) == ("Gantt view", "shipped", 7)
    assert get_idea(store, "newcomer") is None


def test_reimporting_a_merged_idea_or_null_fields_changes_no_votes_or_status(store, tmp_path):
    import json

    from deflect.idea_import import import_ideas

    original = tmp_path / "ideas.jsonl"
    original.write_text(
        json.dumps({"id": "a", "title": "Idea A", "status": "open", "votes": 7}) + "\n"
        + json.dumps({"id": "b", "title": "Idea B", "status": "open", "votes": 1}) + "\n"
        + json.dumps({"id": "c", "title": "Idea C", "description": "Kept", "status": "shipped"}) + "\n"
    )  # fmt: skip
    assert import_ideas(store, original) == (3, 0, [], [])
    with db.writing(store) as conn:
        update_idea(conn, "a", {"merged_into": "b"})
    assert (get_idea(store, "a")["votes"], get_idea(store, "b")["votes"]) == (0, 8)

    # The same file again: a stays merged with its votes in b (no 15 votes from 8).
    assert import_ideas(store, original)[:2] == (0, 3)
    a, b = get_idea(store, "a"), get_idea(store, "b")
    assert (a["status"], a["merged_into"], a["votes"], b["votes"]) == ("merged", "b", 0, 8)

    nulls = tmp_path / "nulls.jsonl"
    nulls.write_text(
        json.dumps({"id": "c", "title": "Idea C", "description": None, "status": None, "votes": None}) + "\n"
        + json.dumps({"id": "d", "title": "Idea D", "status": "merged"}) + "\n"  # merged needs a target
        + "[1, 2]\n"
    )  # fmt: skip
    inserted, updated, errors, _ = import_ideas(store, nulls)
    assert (inserted, updated) == (0, 1) and len(errors) == 2
    assert "merged_into" in errors[0] and "JSON object" in errors[1]
    c = get_idea(store, "c")
    assert (c["status"], c["description"]) == ("shipped", "Kept") and get_idea(store, "d") is None


def test_ideas_import_reads_lines_as_an_editor_shows_them(store, tmp_path):
    """A BOM (spreadsheet exports) is not a broken first line; U+2028 inside a JSON string does
    not cut a line in two; a file that is not UTF-8 is one error, with nothing imported."""
    import json

    from deflect.idea_import import import_ideas
    from deflect.ideas import get_idea
    from deflect.jsonl import NotUtf8

    path = tmp_path / "ideas.jsonl"
    lines = [
        json.dumps({"id": "gantt", "title": "Gantt view"}),
        json.dumps({"id": "notes", "title": "Notes", "description": "first\u2028second"}, ensure_ascii=False),
        "not json",
    ]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8"))
    assert import_ideas(store, path) == (2, 0, [f"{path}:3: not JSON (Expecting value)"], [])
    assert get_idea(store, "notes")["description"] == "first\u2028second"
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps({"id": "cafe", "title": "Caf\u00e9"}, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(NotUtf8, match="not UTF-8"):
        import_ideas(store, latin)
    assert get_idea(store, "cafe") is None


def test_a_boards_export_brings_its_voters_once_and_names_what_it_leaves_out(store, tmp_path):
    """A Canny-like export: voters become requesters (one vote each, never twice on a second
    import), the board's count stays the larger of the two, 12.0 is 12, and fields deflect does
    not keep are named instead of dropped without a word."""
    import json

    from deflect.idea_import import import_ideas

    path = tmp_path / "canny.jsonl"
    path.write_text(
        json.dumps({"id": "dark-mode", "title": "Dark mode", "status": "planned", "votes": 12.0,
                    "created": "2023-01-04T10:00:00Z", "board": "Feature requests",
                    "requesters": [{"email": "ana@example.com", "mrr": 49}, {"customer_id": "c-7"}]}) + "\n"
        + json.dumps({"id": "sso", "title": "Okta SSO", "votes": 1,
                      "requesters": [{"email": "a@x.com"}, {"email": "B@X.com"}, {"email": "b@x.com"}]}) + "\n"
        + json.dumps({"id": "nobody", "title": "Anonymous", "requesters": [{"mrr": 5}]}) + "\n"
        + json.dumps({"id": "bad-mail", "title": "Bad mail", "requesters": [{"email": "not an address"}]}) + "\n"
    )  # fmt: skip
    report = import_ideas(store, path)
    assert (report.inserted, report.updated) == (2, 0)
    assert [e.split(": ", 1)[0].rsplit(":", 1)[1] for e in report.errors] == ["3", "4"]
    assert "requesters[0] needs a customer_id or an email" in report.errors[0]
    assert "requesters[0].email: requesters[0].email must be an email address" in report.errors[1]
    assert report.notes == [f"{path}:1: not imported: board, created (an idea line takes id, title, description, "
                            "status, votes, requesters)"]  # fmt: skip
    dark, sso = get_idea(store, "dark-mode"), get_idea(store, "sso")
    assert dark["votes"] == 12 and sso["votes"] == 2  # the board's 12 include its 2 voters; 2 people, not 1 nor 3
    assert sorted(p["email"] or p["customer_id"] for p in _requesters(store, "dark-mode")) == ["ana@example.com", "c-7"]
    assert [p["mrr"] for p in _requesters(store, "dark-mode") if p["email"]] == [49.0]

    again = import_ideas(store, path)  # the same export again: nobody counted twice
    assert (again.inserted, again.updated) == (0, 2)
    assert (get_idea(store, "dark-mode")["votes"], get_idea(store, "sso")["votes"]) == (12, 2)
    assert len(_requesters(store, "dark-mode")) == 2

    newer = tmp_path / "newer.jsonl"  # a later export with one more voter and a count one higher
    newer.write_text(json.dumps({"id": "dark-mode", "title": "Dark mode", "votes": 13,
                                 "requesters": [{"email": "ana@example.com"}, {"customer_id": "c-7"},
                                                {"email": "zoe@example.com"}]}) + "\n")  # fmt: skip
    assert import_ideas(store, newer)[:2] == (0, 1)
    assert get_idea(store, "dark-mode")["votes"] == 13 and len(_requesters(store, "dark-mode")) == 3


def test_an_import_that_ships_an_idea_tells_the_voters_it_brings_too(store, tmp_path):
    """A board's export of a now-shipped post lists its voters: those new to deflect hear it shipped,
    as those already on record do (the patch notified only the ones it knew)."""
    import json

    from deflect.idea_import import import_ideas
    from deflect.outbox import list_outbox

    path = tmp_path / "board.jsonl"
    path.write_text(json.dumps({"id": "gantt", "title": "Gantt view", "requesters": [{"email": "old@example.com"}]}) + "\n")
    assert import_ideas(store, path)[:2] == (1, 0)
    path.write_text(json.dumps({"id": "gantt", "status": "shipped", "requesters": [
        {"email": "old@example.com"}, {"email": "new@example.com"}]}) + "\n")  # fmt: skip
    assert import_ideas(store, path)[:2] == (0, 1)
    told = [n for n in list_outbox(store)["notifications"] if n["kind"] == "idea_shipped"]
    assert sorted(n["email"] for n in told) == ["new@example.com", "old@example.com"]
    assert import_ideas(store, path)[:2] == (0, 1)  # again: nobody told twice
    assert len([n for n in list_outbox(store)["notifications"] if n["kind"] == "idea_shipped"]) == 2
