"""Votes on ideas: one per requester, who they are (customer id, email, MRR), moved on merge."""

from __future__ import annotations

import time

import sqlalchemy as sa

from .db import idea_votes
from .db import ideas as ideas_table
from .ideas import CLOSED_STATUSES, IdeaConflict, IdeaNotFound, get_idea, resolve_idea, show_id


def _same_requester(requester: dict) -> sa.ColumnElement | None:
    """Votes on record from the same person as `requester` (a WHERE clause; None when anonymous).

    Two requesters with customer ids are the same when the ids are; otherwise (either has
    none) when both have the same email, in any case.
    """
    customer_id, email = requester.get("customer_id"), requester.get("email")
    # lower() on both sides: the database's own folding (SQLite folds ASCII only) is then the same for both.
    same_email = sa.func.lower(idea_votes.c.email) == sa.func.lower(sa.literal(email)) if email else None
    if customer_id:
        same = idea_votes.c.customer_id == customer_id
        return sa.or_(same, sa.and_(idea_votes.c.customer_id.is_(None), same_email)) if same_email is not None else same
    return same_email


def _fold_into(conn: sa.Connection, vote_id: int, requester: dict) -> None:
    """What a trusted source says of a requester on record: highest MRR, an email if none yet."""
    row = conn.execute(sa.select(idea_votes.c.email, idea_votes.c.mrr).where(idea_votes.c.id == vote_id)).one()
    values = {}
    mrr = requester.get("mrr")
    if mrr is not None and (row.mrr is None or mrr > row.mrr):
        values["mrr"] = mrr
    if requester.get("email") and not row.email:
        values["email"] = requester["email"]
    if values:
        conn.execute(idea_votes.update().where(idea_votes.c.id == vote_id).values(**values))


def add_vote(
    conn: sa.Connection,
    idea_id: str,
    requester: dict | None = None,
    search_id: str | None = None,
    update_known: bool = False,
) -> tuple[str, bool]:
    """Count one vote on the idea (a merged idea's votes go to its target); returns (target, counted).

    One vote per requester per idea: when the same person (the same customer id, or, where
    either has none, the same email in any case) has voted there already, nothing is counted
    again. Their record changes only when `update_known` (an import, a vote sent with the admin
    token): to the highest MRR given, and an email if it had none. From anyone else a repeat
    changes nothing, as a public caller could otherwise read a customer's MRR from the idea's
    total (by claiming a higher one for them), or redirect their notifications to an email of
    its own. Anonymous votes always count.
    """
    idea = resolve_idea(conn, idea_id) or get_idea(conn, idea_id)
    target = idea["id"] if idea else idea_id
    # Lock the idea's row (PostgreSQL; SQLite writers are serialised already), so two votes
    # of one person at the same moment cannot both count.
    conn.execute(sa.select(ideas_table.c.id).where(ideas_table.c.id == target).with_for_update())
    requester = {k: v for k, v in (requester or {}).items() if v is not None}
    same = _same_requester(requester)
    if same is not None:
        earlier = conn.execute(
            sa.select(idea_votes.c.id).where(idea_votes.c.idea_id == target, same).order_by(idea_votes.c.id).limit(1)
        ).scalar()
        if earlier is not None:
            if update_known:
                _fold_into(conn, earlier, requester)
            return target, False
    now = time.time()
    conn.execute(
        idea_votes.insert().values(
            idea_id=target,
            customer_id=requester.get("customer_id"),
            email=requester.get("email"),
            mrr=requester.get("mrr"),
            search_id=search_id,
            created_at=now,
        )
    )
    conn.execute(
        ideas_table.update().where(ideas_table.c.id == target).values(votes=ideas_table.c.votes + 1, updated_at=now)
    )
    return target, True


def requesters_by_idea(conn: sa.Connection, idea_id: str | None = None) -> dict[str, dict[str, dict]]:
    """idea id -> distinct requesters (by customer id, else email), each with their highest MRR."""
    from .outbox import requester_key

    query = (
        sa.select(idea_votes.c.idea_id, idea_votes.c.customer_id, idea_votes.c.email, idea_votes.c.mrr)
        .where(sa.or_(idea_votes.c.customer_id.is_not(None), idea_votes.c.email.is_not(None)))
        .order_by(idea_votes.c.created_at, idea_votes.c.id)
    )
    if idea_id is not None:
        query = query.where(idea_votes.c.idea_id == idea_id)
    out: dict[str, dict[str, dict]] = {}
    for r in conn.execute(query):
        key = requester_key({"customer_id": r.customer_id, "email": r.email})
        seen = out.setdefault(r.idea_id, {}).setdefault(key, {"customer_id": r.customer_id, "email": r.email, "mrr": r.mrr})
        seen["email"] = seen["email"] or r.email
        if r.mrr is not None and (seen["mrr"] is None or r.mrr > seen["mrr"]):
            seen["mrr"] = r.mrr
    return out


def requesters(conn: sa.Connection, idea_id: str) -> list[dict]:
    """Distinct requesters of an idea, each with their highest MRR."""
    return list(requesters_by_idea(conn, idea_id).get(idea_id, {}).values())


def ranked_requesters(people: list[dict], limit: int | None = None) -> list[dict]:
    """Requesters by MRR, highest first (unknown MRR last), each {customer_id, email, mrr}: who asks
    matters to a product team as much as how many."""
    ranked = sorted(people, key=lambda p: (p.get("mrr") is None, -(p.get("mrr") or 0.0)))
    return [{k: p.get(k) for k in ("customer_id", "email", "mrr")} for p in ranked[:limit]]


def idea_requesters(conn: sa.Connection, idea_id: str) -> dict | None:
    """Who asked for the idea, highest MRR first (GET /api/ideas/<id>/requesters); None: no such idea."""
    idea = get_idea(conn, idea_id)
    if idea is None:
        return None
    people = ranked_requesters(requesters(conn, idea["id"]))
    return {"idea_id": idea["id"], "status": idea["status"], "merged_into": idea.get("merged_into"),
            "requesters": people, "mrr": round(sum(p["mrr"] or 0.0 for p in people), 2)}


def with_requesters(conn: sa.Connection, idea: dict) -> dict:
    people = requesters(conn, idea["id"])
    return idea | {"requesters": len(people), "mrr": round(sum(p["mrr"] or 0.0 for p in people), 2)}


def move_votes(conn: sa.Connection, source_id: str, target_id: str) -> int:
    """Move the source idea's votes to the target; returns how many were from people who had voted
    there too. Each such person keeps one vote on the target: the earlier of their two records, as
    it stands (the details a vote carries are public input; folding the later one in would let a
    stranger's vote on the source change the MRR or email on record once an admin merges)."""
    conn.execute(sa.select(ideas_table.c.id).where(ideas_table.c.id == target_id).with_for_update())
    moving = conn.execute(
        sa.select(idea_votes.c.id, idea_votes.c.customer_id, idea_votes.c.email, idea_votes.c.mrr)
        .where(idea_votes.c.idea_id == source_id)
        .order_by(idea_votes.c.id)
    ).all()
    twice = 0
    for row in moving:
        requester = {k: v for k, v in (("customer_id", row.customer_id), ("email", row.email), ("mrr", row.mrr)) if v is not None}
        same = _same_requester(requester)
        earlier = None
        if same is not None:
            earlier = conn.execute(
                sa.select(idea_votes.c.id).where(idea_votes.c.idea_id == target_id, same).order_by(idea_votes.c.id).limit(1)
            ).scalar()
        if earlier is None:
            conn.execute(idea_votes.update().where(idea_votes.c.id == row.id).values(idea_id=target_id))
        else:
            first, later = sorted((row.id, earlier))
            conn.execute(idea_votes.delete().where(idea_votes.c.id == later))
            conn.execute(idea_votes.update().where(idea_votes.c.id == first).values(idea_id=target_id))
            twice += 1
    return twice


def vote(
    conn: sa.Connection,
    idea_id: str,
    requester: dict | None = None,
    search_id: str | None = None,
    update_known: bool = False,
) -> dict:
    """One vote (with optional requester) on an open idea; a merged idea's vote goes to its target.

    Voting is closed (IdeaConflict) on a shipped or declined idea, and on a merged one whose
    target is. The answer is the idea voted for, with `counted`: false when this requester
    had voted for it already (their vote is recorded once).
    """
    idea = get_idea(conn, idea_id)
    if idea is None:
        raise IdeaNotFound("id", f"no idea with id {show_id(idea_id)}")
    target = resolve_idea(conn, idea_id) or idea
    if target["status"] in CLOSED_STATUSES:
        where = "" if target["id"] == idea_id else f" (merged into {show_id(target['id'])})"
        raise IdeaConflict("id", f"idea {show_id(idea_id)}{where} is {target['status']}; voting is closed")
    target_id, counted = add_vote(conn, idea_id, requester, search_id, update_known)
    return with_requesters(conn, get_idea(conn, target_id)) | {"counted": counted}
