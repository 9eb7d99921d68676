"""The pool of unanswered searches (DESIGN section 7) and its cached query vectors.

The pool is every final search that was unanswered, or followed by a ticket, or by
not_helpful without a later helpful: what idea candidates are clustered from.
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from .db import advisory_lock, events, metadata, searches, writing

CHUNK = 500

# Query vectors of pool searches, so a rebuild embeds only what is new.
pool_vectors = sa.Table(
    "pool_vectors",
    metadata,
    sa.Column("search_id", sa.String(64), sa.ForeignKey("searches.id"), primary_key=True),
    sa.Column("model", sa.String(300), nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),
)


def chunks(items: list, size: int = CHUNK):
    """Slices of at most `size` items: bounds every IN (...) list."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


# A rebuild keeps the newest cluster_max_pool pool searches: it first reads the searches of the
# period in which this many times as many might be (some are typing prefixes or were answered
# well), and the whole history only when that period holds too few.
POOL_OVERFETCH = 4


def load_pool(engine: sa.Engine, limit: int | None = None, since: float | None = None) -> list[dict]:
    """Final pool searches, oldest first (the most recent `limit` of them)."""
    if limit and since is None:
        cutoff = _nth_newest_maybe_in_pool(engine, limit * POOL_OVERFETCH)
        if cutoff is not None:
            recent = _load_pool(engine, since=cutoff)
            if len(recent) >= limit:  # then no older one is among the newest `limit`
                return recent[-limit:]
    pool = _load_pool(engine, since)
    return pool[-limit:] if limit else pool


def _nth_newest_maybe_in_pool(engine: sa.Engine, n: int) -> float | None:
    """When the n-th newest search that may be in the pool was made (None: there are fewer)."""
    with engine.connect() as conn:
        return conn.execute(
            sa.select(searches.c.created_at).where(_maybe_in_pool())
            .order_by(searches.c.created_at.desc()).offset(n - 1).limit(1)
        ).scalar()


def _maybe_in_pool() -> sa.ColumnElement:
    flagged = sa.select(events.c.search_id).where(events.c.type.in_(("ticket_created", "not_helpful")))
    return sa.or_(searches.c.answered == sa.false(), searches.c.id.in_(flagged))


def _load_pool(engine: sa.Engine, since: float | None = None) -> list[dict]:
    from .metrics import outcomes, pool_searches, superseded_in_store

    cols = [searches.c.id, searches.c.query, searches.c.session, searches.c.created_at, searches.c.answered,
            searches.c.index_version]
    with engine.connect() as conn:
        query = sa.select(*cols).where(_maybe_in_pool())
        if since is not None:
            query = query.where(searches.c.created_at > since)
        rows = [dict(r._mapping) for r in conn.execute(query)]
        if not rows:
            return []
        gone = superseded_in_store(conn, [(r["session"], r["created_at"]) for r in rows])
        rows = [r for r in rows if r["id"] not in gone]
        ids = [r["id"] for r in rows]
        found: list[dict] = []
        for part in chunks(ids):
            found += [dict(e._mapping) for e in conn.execute(
                sa.select(events.c.search_id, events.c.type, events.c.created_at).where(events.c.search_id.in_(part))
            )]
    pool = pool_searches(outcomes(rows, found), found)
    pool.sort(key=lambda r: (r["created_at"], r["id"]))
    return pool


def erased_among(conn: sa.Connection, search_ids: list[str]) -> set[str]:
    """Which of these searches deflect.erasure has forgotten (their question reads [erased]): a
    rebuild or join that read them before must not write their text or vectors back."""
    from .metrics import ERASED

    out: set[str] = set()
    for part in chunks(sorted(search_ids)):
        out |= set(conn.execute(sa.select(searches.c.id).where(searches.c.id.in_(part), searches.c.query == ERASED)).scalars())
    return out


def pool_matrix(engine: sa.Engine, pool: list[dict], encode, model_id: str) -> np.ndarray:
    """Vectors of the pool's queries: cached ones from the store, the rest embedded and cached."""
    ids = [r["id"] for r in pool]
    cached: dict[str, np.ndarray] = {}
    with engine.connect() as conn:
        for part in chunks(ids):
            for row in conn.execute(
                sa.select(pool_vectors).where(pool_vectors.c.search_id.in_(part), pool_vectors.c.model == model_id)
            ):
                cached[row.search_id] = np.frombuffer(row.vector, dtype=np.float32)
    missing = [r for r in pool if r["id"] not in cached]
    if missing:
        fresh = encode([r["query"] for r in missing])
        with writing(engine) as conn:
            advisory_lock(conn, "pool_vectors")  # concurrent rebuilds/joins cache the same vectors: one at a time
            erased = erased_among(conn, [r["id"] for r in missing])  # forgotten since the pool was read: no vector kept
            keep = [(r, v) for r, v in zip(missing, fresh) if r["id"] not in erased]
            for part in chunks([r["id"] for r, _ in keep]):
                conn.execute(pool_vectors.delete().where(pool_vectors.c.search_id.in_(part)))
            if keep:
                conn.execute(pool_vectors.insert(), [
                    {"search_id": r["id"], "model": model_id, "vector": np.asarray(v, dtype=np.float32).tobytes()}
                    for r, v in keep
                ])
        cached.update({r["id"]: np.asarray(v, dtype=np.float32) for r, v in zip(missing, fresh)})
    if not ids:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([cached[i] for i in ids])
