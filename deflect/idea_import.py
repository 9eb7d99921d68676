"""`deflect ideas import`: ideas from a JSONL file (a board's export), inserted or updated.

An existing idea changes as an admin's PATCH would change it, and votes and requesters are
only ever added, so importing the same file again changes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa

from .db import advisory_lock, bump_sync_counter, writing
from .db import ideas as ideas_table
from .ideas import (
    GENERATION,
    IdeaError,
    check_title_free,
    get_idea,
    notify_shipped,
    shipped_at,
    update_idea,
    validate_idea,
)
from .jsonl import numbered_records

# What a line of `deflect ideas import` may give; any other field (an export's dates, authors,
# board names...) is ignored and named in the report, not silently dropped.
IMPORT_FIELDS = ("id", "title", "description", "status", "votes", "requesters")


class ImportReport(NamedTuple):
    inserted: int
    updated: int
    errors: list[str]  # lines skipped, each "path:line: field: why"
    notes: list[str]  # lines imported with fields left out, each "path:line: ..."


def import_ideas(engine: sa.Engine, path: str | Path) -> ImportReport:
    """Insert or update ideas from JSONL."""
    with writing(engine) as conn:
        return _import_lines(conn, path)


def seed_ideas(engine: sa.Engine, path: str | Path) -> ImportReport | None:
    """Import the sample ideas into an empty store, once; None when there were ideas already.

    Replicas starting together on one new database each try this; the check and the
    import share one write transaction (an advisory lock on PostgreSQL), so one imports.
    """
    with writing(engine) as conn:
        advisory_lock(conn, "idea_seed")
        if conn.execute(sa.select(sa.func.count()).select_from(ideas_table)).scalar_one():
            return None
        return _import_lines(conn, path)


def _import_lines(conn: sa.Connection, path: str | Path) -> ImportReport:
    report = ImportReport(0, 0, [], [])
    inserted = updated = 0
    now = time.time()
    for number, data, problem in list(numbered_records(path)):  # all read (and decoded) before the first write
        if problem is not None:
            report.errors.append(f"{path}:{number}: {problem}")
            continue
        try:
            if not isinstance(data, dict):
                raise IdeaError("line", "an idea is a JSON object")
            if isinstance(data.get("votes"), float) and data["votes"].is_integer():
                data = data | {"votes": int(data["votes"])}  # 12.0 from a spreadsheet or pandas export
            if data.get("title") is None and isinstance(data.get("id"), str):
                # {"id": "gantt", "status": "shipped"} changes an existing idea's status, like a PATCH
                known = get_idea(conn, data["id"])
                data = data | {"title": known["title"]} if known is not None else data
            record = validate_idea(data)
            people = _import_requesters(data.get("requesters"))
            existing = get_idea(conn, record["id"])
            if existing is not None:
                _reimport(conn, existing, record, {k for k, v in data.items() if v is not None}, people)
            elif record["status"] == "merged":
                raise IdeaError("status", 'merge an idea with PATCH /api/ideas/<id> {"merged_into": ...}, not by import')
            else:  # a new idea: not one more with the title of another (DuplicateTitle names it)
                check_title_free(conn, record["title"])
                row = record | {"votes": 0, "created_at": now, "updated_at": now, "shipped_at": shipped_at(record, now)}
                conn.execute(ideas_table.insert().values(**row))
                _add_requesters(conn, record["id"], people, record["votes"])  # votes: the line's count at least
        except IdeaError as exc:
            report.errors.append(f"{path}:{number}: {exc.field}: {exc}")
            continue
        ignored = sorted(set(data) - set(IMPORT_FIELDS))
        if ignored:
            report.notes.append(
                f"{path}:{number}: not imported: {', '.join(ignored)} (an idea line takes {', '.join(IMPORT_FIELDS)})"
            )
        if existing is not None:
            updated += 1
        else:
            inserted += 1
    if inserted or updated:
        bump_sync_counter(conn, GENERATION)
    return report._replace(inserted=inserted, updated=updated)


def _import_requesters(value) -> list[dict]:
    """An import line's `requesters`: who voted (a Canny or UserVoice export's voters), each with
    a customer_id or an email, so importing the file again counts nobody twice."""
    from .requesters import RequesterError, check_requester

    if value is None:
        return []
    if not isinstance(value, list):
        raise IdeaError("requesters", "requesters must be a list of {customer_id?, email?, mrr?}")
    people = []
    for i, item in enumerate(value):
        try:
            person = check_requester(item, f"requesters[{i}]")
        except RequesterError as exc:
            raise IdeaError(exc.field, str(exc)) from None
        if person is None or not (person["customer_id"] or person["email"]):
            raise IdeaError(f"requesters[{i}]", f"requesters[{i}] needs a customer_id or an email")
        people.append(person)
    return people


def _add_requesters(conn: sa.Connection, idea_id: str, people: list[dict], votes: int | None) -> None:
    """One vote per requester not on record yet (a repeat updates the first: highest MRR, an email),
    then the count raised to the line's `votes` (a board's count includes its voters)."""
    from .votes import add_vote

    for person in people:
        add_vote(conn, idea_id, person, update_known=True)  # the admin's own file: its details are news
    if votes is not None:
        _raise_votes(conn, idea_id, votes)


def _reimport(conn: sa.Connection, existing: dict, record: dict, given: set[str], people: list[dict]) -> None:
    """Update an idea from an import line the way an admin's PATCH would: only the fields the
    line gives (a null is not given), a change to `shipped` notifies the requesters, and votes
    people cast since the last import are kept (a line's `votes` can raise the count, never
    lower it). A merged idea's status and votes live in the idea it was merged into: a line,
    perhaps of the file it first came from, changes only its title and description, and its
    requesters are counted on that idea (as a vote on it through the API is). Requesters are kept
    whatever the status, unlike new votes through the API: an export of a shipped post lists who asked."""
    merged = existing["status"] == "merged"
    fields = ("title", "description") if merged else ("title", "description", "status")
    patch = {k: record[k] for k in fields if k in given and record[k] != existing[k]}
    if patch:
        update_idea(conn, existing["id"], patch)  # refuses (IdeaError) before it writes
    _add_requesters(conn, existing["id"], people, record["votes"] if "votes" in given and not merged else None)
    if patch.get("status") == "shipped" and people:
        notify_shipped(conn, existing["id"])  # the line's own voters too, added after the patch notified the others


def _raise_votes(conn: sa.Connection, idea_id: str, votes: int) -> None:
    """Raise an idea's count to `votes`, never lower it; conditional in the statement itself, so a
    vote committed meanwhile is never overwritten."""
    conn.execute(
        ideas_table.update()
        .where(ideas_table.c.id == idea_id, ideas_table.c.votes < votes, ideas_table.c.status != "merged")
        .values(votes=votes, updated_at=time.time())
    )
