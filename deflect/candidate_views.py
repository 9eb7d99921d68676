"""What an admin sees of idea candidates: members, weekly counts, requesters (DESIGN section 7).

Kept apart from deflect.candidates (the tables, rebuilds and joins) so each stays small. A
question the admin left out of a review (candidates.candidate_exclusions) is listed, marked
excluded, but its asker is not counted among the candidate's requesters.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa

from .candidates import candidate_members, candidates, excluded_keys
from .db import events, search_results, searches
from .events import normalize_query
from .outbox import requester_key
from .pool import chunks
from .votes import ranked_requesters


def _week(ts: float) -> str:
    year, week, _ = datetime.fromtimestamp(ts, tz=UTC).isocalendar()
    return f"{year}-W{week:02d}"


def weekly(times: list[float]) -> list[dict]:
    """Count per ISO week from the first to the last member, empty weeks included."""
    if not times:
        return []
    counts: dict[str, int] = defaultdict(int)
    for t in times:
        counts[_week(t)] += 1
    out, day = [], datetime.fromtimestamp(min(times), tz=UTC)
    end = _week(max(times))
    while True:
        week = _week(day.timestamp())
        if not out or out[-1]["week"] != week:
            out.append({"week": week, "count": counts.get(week, 0)})
        if week == end:
            return out
        day += timedelta(days=7)


def member_queries(conn: sa.Connection, candidate_id: str) -> list[tuple[str, str]]:
    """(search id, query) of every question of the candidate, most recent first."""
    return [tuple(r) for r in conn.execute(
        sa.select(searches.c.id, searches.c.query).join(candidate_members, candidate_members.c.search_id == searches.c.id)
        .where(candidate_members.c.candidate_id == candidate_id)
        .order_by(searches.c.created_at.desc(), searches.c.id.desc())
    )]


def kept_members(conn: sa.Connection, candidate_id: str) -> list[tuple[str, str]]:
    """(search id, query) of the candidate's questions but those worded like one the admin left out."""
    left_out = excluded_keys(conn, candidate_id)
    return [(i, q) for i, q in member_queries(conn, candidate_id) if normalize_query(q) not in left_out]


# How many requesters a candidate shows by name (highest MRR first): who asks matters to a
# product team, and the count and MRR total are there for the rest.
TOP_REQUESTERS = 10


def candidate_requesters(conn: sa.Connection, search_ids: list[str]) -> list[dict]:
    """Everyone who left contact details on the candidate's searches (events with a requester)."""
    people: dict[str, dict] = {}
    for part in chunks(search_ids):
        rows = conn.execute(
            sa.select(events.c.customer_id, events.c.email, events.c.mrr, events.c.search_id)
            .where(events.c.search_id.in_(part), sa.or_(events.c.customer_id.is_not(None), events.c.email.is_not(None)))
            .order_by(events.c.created_at, events.c.id)
        )
        for r in rows:
            key = requester_key({"customer_id": r.customer_id, "email": r.email})
            seen = people.setdefault(key, {"customer_id": r.customer_id, "email": r.email, "mrr": r.mrr,
                                           "search_id": r.search_id})
            seen["email"] = seen["email"] or r.email
            if r.mrr is not None and (seen["mrr"] is None or r.mrr > seen["mrr"]):
                seen["mrr"] = r.mrr
    return list(people.values())


def answered_by_article(conn: sa.Connection, search_ids: list[str]) -> dict[str, str]:
    """search id -> the article that came first, for those of these searches answered (answered=true)
    with an article first: a promote or merge teaches no alias from them (review._member_questions)."""
    found: dict[str, str] = {}
    for part in chunks(search_ids):
        found |= dict(conn.execute(
            sa.select(searches.c.id, search_results.c.item_id).join(search_results, search_results.c.search_id == searches.c.id)
            .where(searches.c.id.in_(part), searches.c.answered == sa.true(), search_results.c.rank == 1,
                   search_results.c.item_type == "article")
        ).all())
    return found


def _describe(conn: sa.Connection, row: dict, nearest=None) -> dict:
    members = conn.execute(
        sa.select(searches.c.id, searches.c.query, searches.c.created_at, candidate_members.c.how)
        .join(candidate_members, candidate_members.c.search_id == searches.c.id)
        .where(candidate_members.c.candidate_id == row["id"])
        .order_by(searches.c.created_at, searches.c.id)
    ).all()
    times = [m.created_at for m in members]
    left_out = excluded_keys(conn, row["id"])
    kept = [m for m in members if normalize_query(m.query) not in left_out]
    people = candidate_requesters(conn, [m.id for m in kept])
    by_article = answered_by_article(conn, [m.id for m in members])
    out = {
        "id": row["id"],
        "label": row["label"],
        "keywords": json.loads(row["keywords"] or "[]"),
        "status": row["status"],
        "active": bool(row["active"]),
        "size": len(members),
        "first_seen": min(times) if times else None,
        "last_seen": max(times) if times else None,
        "weekly": weekly(times),
        "requesters": len(people),
        "mrr": round(sum(p["mrr"] or 0.0 for p in people), 2),
        "top_requesters": ranked_requesters(people, TOP_REQUESTERS),
        "queries": [
            {"search_id": m.id, "text": m.query, "joined": m.how == "joined", "excluded": normalize_query(m.query) in left_out,
             "answered_by_article": by_article.get(m.id)}
            for m in members
        ],
        "idea_id": row["idea_id"],
        "answered_by": row["answered_by"],
        "nearest": None,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    if row["status"] == "dismissed":
        out["dismissed_size"] = row["dismissed_size"]
    if nearest is not None and row["centroid"] is not None:
        out["nearest"] = nearest(row["label"], np.frombuffer(row["centroid"], dtype=np.float32))
    return out


def list_candidates(engine: sa.Engine, status: str | None = None, nearest=None) -> list[dict]:
    """Active candidates, largest first; status None = all but dismissed, "all" = every one on record."""
    query = sa.select(candidates)
    if status == "all":
        pass
    elif status:
        query = query.where(candidates.c.status == status)
    else:
        query = query.where(candidates.c.active == sa.true(), candidates.c.status != "dismissed")
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
        out = [_describe(conn, r, nearest) for r in rows]
    out.sort(key=lambda c: (not c["active"], -c["size"], -(c["last_seen"] or 0), c["id"]))
    return out


def get_candidate(engine: sa.Engine, candidate_id: str, nearest=None) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(candidates).where(candidates.c.id == candidate_id)).first()
        return _describe(conn, dict(row._mapping), nearest) if row else None


__all__ = [
    "TOP_REQUESTERS", "candidate_requesters", "get_candidate", "kept_members", "member_queries", "list_candidates", "weekly",
]
