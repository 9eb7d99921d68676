"""Idea candidates in the store: rebuild from the pool, stable ids, review, incremental joins.

The pool (DESIGN section 7) is every final search that was unanswered, or followed by a
ticket, or by not_helpful without a later helpful. A rebuild clusters the pool's query
vectors (deflect.clusters), keeps a candidate's id while it keeps most of its members,
and carries review decisions over: a reviewed candidate keeps its questions, and gains others
only by the join test used between rebuilds (the rest are clustered without it). Between
rebuilds, new pool searches join the nearest candidate when they are as close to it as its own
members are.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict

import numpy as np
import sqlalchemy as sa

from . import clusters, decisions
from .db import advisory_lock, metadata, searches, sync_state, writing
from .events import normalize_query
from .pool import chunks, erased_among, load_pool, pool_matrix

STATUSES = ("new", "promoted", "merged", "dismissed")
REBUILT_AT = "clusters.rebuilt_at"

candidates = sa.Table(
    "candidates",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("keywords", sa.Text, nullable=False, server_default="[]"),
    sa.Column("status", sa.String(20), nullable=False, server_default="new", index=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("idea_id", sa.String(200), nullable=True),
    sa.Column("size", sa.Integer, nullable=False, server_default="0"),
    sa.Column("dismissed_size", sa.Integer, nullable=True),
    sa.Column("centroid", sa.LargeBinary, nullable=True),
    sa.Column("join_threshold", sa.Float, nullable=True),
    sa.Column("checked_version", sa.String(64), nullable=True),
    sa.Column("answered_by", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("reviewed_at", sa.Float, nullable=True),
)

candidate_members = sa.Table(
    "candidate_members",
    metadata,
    sa.Column("search_id", sa.String(64), sa.ForeignKey("searches.id"), primary_key=True),
    sa.Column("candidate_id", sa.String(40), sa.ForeignKey("candidates.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("how", sa.String(10), nullable=False, server_default="rebuild"),
    sa.Column("joined_at", sa.Float, nullable=False),
)

# The members a reviewed (promoted, merged, dismissed) candidate had when a rebuild retired its id
# (none of them was left in the pool, see cluster_max_pool). When any of them is back in the pool,
# so is the candidate, decision and all.
candidate_history = sa.Table(
    "candidate_history",
    metadata,
    sa.Column("candidate_id", sa.String(40), sa.ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("search_id", sa.String(64), sa.ForeignKey("searches.id"), primary_key=True),
    sa.Column("recorded_at", sa.Float, nullable=False),
)

# Wordings (events.normalize_query) of questions an admin left out when promoting or merging a
# candidate: not about the idea, so their askers are not its requesters, hear nothing about it,
# and the same question asked again later is left out too.
candidate_exclusions = sa.Table(
    "candidate_exclusions",
    metadata,
    sa.Column("candidate_id", sa.String(40), sa.ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("query_key", sa.Text, primary_key=True),
    sa.Column("excluded_at", sa.Float, nullable=False),
)

REVIEWED = ("promoted", "merged", "dismissed")

class CandidateError(ValueError):
    """A review action that cannot be done: status 404 (no such candidate) or 409 (state).
    `details` go into the JSON error as they are (a duplicate title names the idea: `idea_id`)."""

    def __init__(self, status: int, field: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.field, self.details = status, field, details or {}


def lock_candidates(conn: sa.Connection) -> None:
    """Serialise candidate writers across server processes (SQLite's BEGIN IMMEDIATE already does)."""
    advisory_lock(conn, "candidates")


def excluded_keys(conn: sa.Connection, candidate_id: str) -> set[str]:
    """The wordings the admin left out of this candidate (candidate_exclusions)."""
    return set(conn.execute(
        sa.select(candidate_exclusions.c.query_key).where(candidate_exclusions.c.candidate_id == candidate_id)
    ).scalars())


# --- rebuild -------------------------------------------------------------------------------


def _members(conn: sa.Connection) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for row in conn.execute(sa.select(candidate_members.c.candidate_id, candidate_members.c.search_id)):
        out[row.candidate_id].add(row.search_id)
    return out


def _history(conn: sa.Connection) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for row in conn.execute(sa.select(candidate_history.c.candidate_id, candidate_history.c.search_id)):
        out[row.candidate_id].add(row.search_id)
    return out


def _without_left_out(conn: sa.Connection, sets: dict[str, set[str]]) -> dict[str, set[str]]:
    """Each candidate's searches but those worded like a question the admin left out of it: a
    group made of left-out questions is not the reviewed candidate, so it does not take its id or
    decision (assign_ids matches the kept ones)."""
    left_out: dict[str, set[str]] = defaultdict(set)
    for row in conn.execute(sa.select(candidate_exclusions.c.candidate_id, candidate_exclusions.c.query_key)):
        left_out[row.candidate_id].add(row.query_key)
    if not any(cid in sets for cid in left_out):
        return sets
    queries: dict[str, str] = {}
    for part in chunks(sorted({s for cid in left_out for s in sets.get(cid, ())})):
        queries.update(conn.execute(sa.select(searches.c.id, searches.c.query).where(searches.c.id.in_(part))).all())
    return {
        cid: {s for s in members if normalize_query(queries.get(s, "")) not in left_out[cid]} if cid in left_out else members
        for cid, members in sets.items()
    }


def _match_ids(new_sets: list[set], old_sets: dict[str, set], present: set, taken: set) -> dict[int, str]:
    """New group index -> old id, for ids not in `taken`: the old group whose members the new one
    mostly keeps (clusters.match_previous), else the old group the new one is mostly made of (so a
    dismissed candidate cannot sneak back under a new id by losing a few members)."""
    old_sets = {cid: m for cid, m in old_sets.items() if cid not in taken}
    mapping = clusters.match_previous(new_sets, old_sets, present)
    used = set(mapping.values())
    for i, group in enumerate(new_sets):
        if i in mapping:
            continue
        best = max(((len(group & m), cid) for cid, m in old_sets.items() if cid not in used), default=(0, None))
        if best[1] is not None and best[0] > len(group) / 2:
            mapping[i] = best[1]
            used.add(best[1])
    return mapping


def assign_ids(
    new_sets: list[set], old: dict[str, dict], members: dict[str, set], history: dict[str, set], present: set
) -> dict[int, str]:
    """Which old candidate each new group continues, so review decisions travel with the ids.

    `old`: every candidate on record (id -> row with status, active); `members`: the active
    candidates' members now; `history`: the members retired reviewed candidates had. Returns
    group index -> the id it keeps, or takes back.
    """
    active = {cid: m for cid, m in members.items() if cid in old}
    mapping = _match_ids(new_sets, active, present, set())
    # A reviewed candidate retired by an earlier rebuild comes back, decision and all, when a
    # group holds most of the members it had (or is mostly made of them).
    retired = {cid: m for cid, m in history.items()
               if cid in old and not old[cid]["active"] and old[cid]["status"] in REVIEWED}
    rest = [i for i in range(len(new_sets)) if i not in mapping]
    revived = _match_ids([new_sets[i] for i in rest], retired, present, set(mapping.values()))
    return mapping | {rest[j]: cid for j, cid in revived.items()}


def reviewed_questions(old: dict[str, dict], members: dict[str, set], history: dict[str, set]) -> dict[str, str]:
    """search id -> the reviewed (promoted, merged, dismissed) candidate it belongs to: a question
    the team has decided on stays with that decision (DESIGN 7: decisions survive rebuilds).
    Questions the admin left out of a candidate are not in `members`/`history` here."""
    owner: dict[str, str] = {}
    for source, active in ((history, False), (members, True)):  # a current membership wins
        for cid, found in source.items():
            if cid in old and old[cid]["status"] in REVIEWED and bool(old[cid]["active"]) == active:
                owner |= dict.fromkeys(found, cid)
    return owner


def rebuild(engine: sa.Engine, encode, model_id: str, settings, now: float | None = None) -> dict:
    """Re-cluster the whole pool; returns counts of what happened."""
    now = time.time() if now is None else now
    pool = load_pool(engine, settings.cluster_max_pool)
    vectors = pool_matrix(engine, pool, encode, model_id)
    ids = [r["id"] for r in pool]
    min_size = settings.cluster_min_size
    # The whole pool is clustered (the slow part, outside the lock), reviewed questions included,
    # so a decision does not change how the other questions group.
    params = clusters.ClusterParams(min_size=min_size)
    together = clusters.co_association(vectors, params) if len(ids) >= max(2, min_size) else None
    clustered = clusters.consensus_groups(together, range(len(ids)), min_size) if together is not None else []
    with writing(engine) as conn:
        lock_candidates(conn)
        old = {r.id: dict(r._mapping) for r in conn.execute(sa.select(candidates))}
        old_members = _members(conn)
        history = _without_left_out(conn, _history(conn))
        current = _without_left_out(conn, old_members)
        owner = reviewed_questions(old, current, history)
        free = decisions.free_groups(clustered, ids, owner, together, min_size)
        del together  # n x n: not needed any more
        mapping = assign_ids([{ids[j] for j in g} for g in free], old, current, history, set(ids))
        # None of a reviewed candidate's questions is in `free`, so no group should continue one.
        mapping = {i: cid for i, cid in mapping.items() if old[cid]["status"] not in REVIEWED}
        continuing = {j for i in mapping for j in free[i]}  # they stay with the candidate they continue
        tested = [j for j in range(len(ids)) if ids[j] not in owner and j not in continuing]
        joins = decisions.join_test(vectors, ids, owner, tested, settings.cluster_join_similarity)
        groups = decisions.settle(free, mapping, ids, owner, joins, min_size)
        erased = erased_among(conn, ids)  # forgotten while the pool was clustered: no label or member from them
        if erased:
            groups = [(kept, cid) for kept, cid in (([j for j in m if ids[j] not in erased], cid) for m, cid in groups) if kept]
        texts = [[pool[j]["query"] for j in members] for members, _ in groups]
        words = clusters.keywords(texts)
        summary = {"pool": len(pool), "candidates": len(groups), "new": 0, "kept": 0, "returned": 0, "retired": 0,
                   "revived": 0}  # fmt: skip
        conn.execute(candidate_members.delete())
        for i, (members, cid) in enumerate(groups):
            vecs = vectors[members]
            values = {
                "label": clusters.label_for(texts[i], vecs, words[i]),
                "keywords": json.dumps(words[i], ensure_ascii=False),
                "active": True,
                "size": len(members),
                "centroid": clusters.centroid(vecs).astype(np.float32).tobytes(),
                "join_threshold": clusters.join_threshold(vecs, settings.cluster_join_similarity),
                "updated_at": now,
            }
            if cid is None:
                cid = "c" + uuid.uuid4().hex[:10]
                versions = [pool[j]["index_version"] for j in members if pool[j]["index_version"]]
                conn.execute(candidates.insert().values(
                    id=cid, status="new", created_at=now, checked_version=versions[-1] if versions else None, **values
                ))
                summary["new"] += 1
            else:
                prior = old[cid]
                if prior["status"] == "dismissed" and len(members) >= settings.cluster_regrow_factor * (prior["dismissed_size"] or 1):
                    values |= {"status": "new", "dismissed_size": None}
                    summary["returned"] += 1
                conn.execute(candidates.update().where(candidates.c.id == cid).values(**values))
                if prior["active"]:
                    summary["kept"] += 1
                else:  # a retired reviewed candidate taken back
                    conn.execute(candidate_history.delete().where(candidate_history.c.candidate_id == cid))
                    summary["revived"] += 1
            conn.execute(candidate_members.insert(), [
                {"search_id": pool[j]["id"], "candidate_id": cid, "how": "rebuild", "joined_at": now} for j in members
            ])
        kept = {cid for _, cid in groups if cid is not None}
        for cid, prior in old.items():
            if cid in kept or not prior["active"]:
                continue
            if prior["status"] == "new":
                conn.execute(candidates.delete().where(candidates.c.id == cid))
            else:  # reviewed, none of its questions in the pool: keep the decision on record, with the members it had
                conn.execute(candidates.update().where(candidates.c.id == cid).values(active=False, size=0, updated_at=now))
                conn.execute(candidate_history.delete().where(candidate_history.c.candidate_id == cid))
                if old_members.get(cid):
                    conn.execute(candidate_history.insert(), [
                        {"candidate_id": cid, "search_id": search_id, "recorded_at": now}
                        for search_id in sorted(old_members[cid])
                    ])
            summary["retired"] += 1
        _set_rebuilt_at(conn, now)
    return summary


def _set_rebuilt_at(conn: sa.Connection, now: float) -> None:
    exists = conn.execute(sa.select(sync_state.c.name).where(sync_state.c.name == REBUILT_AT)).first()
    if exists:
        conn.execute(sync_state.update().where(sync_state.c.name == REBUILT_AT).values(value=int(now), text=repr(now)))
    else:
        conn.execute(sync_state.insert().values(name=REBUILT_AT, value=int(now), text=repr(now)))


def rebuilt_at(engine: sa.Engine) -> float | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(sync_state.c.text).where(sync_state.c.name == REBUILT_AT)).first()
    return float(row.text) if row and row.text else None


def join_new(engine: sa.Engine, encode, model_id: str, now: float | None = None) -> int:
    """Let pool searches newer than the last rebuild join their nearest candidate when close enough."""
    last = rebuilt_at(engine)
    if last is None:
        return 0
    now = time.time() if now is None else now
    with engine.connect() as conn:
        active = [dict(r._mapping) for r in conn.execute(
            sa.select(candidates.c.id, candidates.c.centroid, candidates.c.join_threshold)
            .where(candidates.c.active == sa.true(), candidates.c.centroid.is_not(None))
        )]
        placed = {r.search_id for r in conn.execute(
            sa.select(candidate_members.c.search_id)
            .join(searches, searches.c.id == candidate_members.c.search_id)
            .where(searches.c.created_at > last)
        )}
    if not active:
        return 0
    fresh = [r for r in load_pool(engine, since=last) if r["id"] not in placed]
    if not fresh:
        return 0
    vectors = pool_matrix(engine, fresh, encode, model_id)
    cents = np.stack([np.frombuffer(c["centroid"], dtype=np.float32) for c in active])
    got = clusters.assign(vectors, cents, np.array([c["join_threshold"] for c in active]))
    rows = [{"search_id": r["id"], "candidate_id": active[g]["id"], "how": "joined", "joined_at": now}
            for r, g in zip(fresh, got) if g >= 0]
    if rows:
        with writing(engine) as conn:
            lock_candidates(conn)
            # Another process may have placed some of them (or rebuilt) meanwhile.
            taken = {r.search_id for r in conn.execute(
                sa.select(candidate_members.c.search_id).where(candidate_members.c.search_id.in_([r["search_id"] for r in rows]))
            )}
            alive = {r.id for r in conn.execute(sa.select(candidates.c.id).where(candidates.c.active == sa.true()))}
            erased = erased_among(conn, [r["search_id"] for r in rows])
            rows = [r for r in rows if r["search_id"] not in taken | erased and r["candidate_id"] in alive]
            if rows:
                conn.execute(candidate_members.insert(), rows)
            for cid in {r["candidate_id"] for r in rows}:
                size = conn.execute(sa.select(sa.func.count()).where(candidate_members.c.candidate_id == cid)).scalar_one()
                conn.execute(candidates.update().where(candidates.c.id == cid).values(size=size, updated_at=now))
    return len(rows)


__all__ = [
    "STATUSES", "CandidateError", "assign_ids", "candidates", "candidate_exclusions", "candidate_history",
    "candidate_members", "excluded_keys", "join_new", "lock_candidates", "rebuild", "rebuilt_at",
]
