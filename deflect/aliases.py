"""Learned aliases: queries that users confirmed an item answers (DESIGN section 5).

A `helpful` event on a search confirms "this query -> this item". Once a query has
`min_confirmations` confirmations from distinct sessions it becomes an active alias: its
stored vector joins retrieval for that item at once. Against a confident answer (the search
was answered with another item on top) it takes overturn_confirmations people at least.
Every change bumps a generation counter in the database, which other server processes poll
to reload.

Promoting or merging an idea candidate is a confirmation too, by an admin: the candidate's
questions become active aliases of the idea at once (`from_review`, source "review"), without
confirmations and outside the per-session limit. So are confirmed answers a team already has,
e.g. past tickets and the article that solved each (`import_aliases`, source "import").

One alias per wording: queries are compared by wording.alias_key (case, spacing and punctuation
ignored), so "How do I export my data?" confirms the alias "how do I export my data" rather than
starting another (migration 0009 merged those stored before).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from .db import UNSTORABLE_TEXT, alias_confirmations, aliases, bump_sync_counter, sync_counter, writing
from .jsonl import numbered_records
from .wording import alias_key

GENERATION = "aliases"


@dataclass(frozen=True)
class AliasPolicy:
    min_confirmations: int = 1
    per_session_hour: int = 20
    per_client_hour: int = 200  # 0: no limit per client address
    # At least this many against a confident answer: one person's "Yes" for another item than the
    # one deflect answered with would teach it for everyone (anyone with a script; bench/README.md).
    overturn_confirmations: int = 2


def _recent(conn: sa.Connection, whose: sa.ColumnElement, now: float) -> int:
    """Confirmations matching `whose` in the last hour."""
    query = sa.select(sa.func.count()).select_from(alias_confirmations)
    return conn.execute(query.where(whose, alias_confirmations.c.created_at > now - 3600)).scalar_one()


def generation(conn_or_engine) -> int:
    return sync_counter(conn_or_engine, GENERATION)


def bump_generation(conn: sa.Connection) -> None:
    bump_sync_counter(conn, GENERATION)


def confirm(
    conn: sa.Connection,
    search: dict,
    item_type: str,
    item_id: str,
    rate_key: str,
    policy: AliasPolicy,
    vector: np.ndarray | None,
    model: str,
    client: str | None = None,
) -> dict:
    """Count one confirmation of search's query for the item, inside the event's transaction.

    Returns {"status": learned|confirmed|already_confirmed|rate_limited, "alias_id"?}.
    `rate_key` is the session (or client) that may add at most policy.per_session_hour
    confirmations an hour; `client`, the address the event came from, at most
    policy.per_client_hour whatever sessions it names.
    """
    now = time.time()
    if _recent(conn, alias_confirmations.c.session == rate_key, now) >= policy.per_session_hour:
        return {"status": "rate_limited"}
    if client and policy.per_client_hour and _recent(conn, alias_confirmations.c.client == client, now) >= policy.per_client_hour:
        return {"status": "rate_limited"}
    key = alias_key(search["query"])
    row = conn.execute(
        sa.select(aliases).where(
            aliases.c.item_type == item_type, aliases.c.item_id == item_id, aliases.c.query_key == key
        )
    ).first()
    if row is None:
        alias_id = conn.execute(
            aliases.insert().values(
                item_type=item_type,
                item_id=item_id,
                query=search["query"],
                query_key=key,
                confirmations=0,
                active=False,
                source="feedback",
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
        confirmations, active = 0, False
    else:
        alias_id, confirmations, active = row.id, row.confirmations, row.active
        # min_confirmations counts distinct people: distinct sessions, and distinct addresses
        # (a script naming a new session per search is still one address).
        same_person = alias_confirmations.c.session == rate_key
        if client:
            same_person = sa.or_(same_person, alias_confirmations.c.client == client)
        seen = conn.execute(
            sa.select(alias_confirmations.c.id).where(alias_confirmations.c.alias_id == alias_id, same_person)
        ).first()
        if seen is not None:
            return {"status": "already_confirmed", "alias_id": alias_id}
    conn.execute(
        alias_confirmations.insert().values(
            alias_id=alias_id, search_id=search["id"], session=rate_key, client=client, created_at=now
        )
    )
    confirmations += 1
    values: dict = {"confirmations": confirmations, "updated_at": now}
    learned = not active and confirmations >= _needed(search, item_type, item_id, policy)
    if learned:
        values |= {"active": True, "model": model, "vector": _to_blob(vector) if vector is not None else None}
    conn.execute(aliases.update().where(aliases.c.id == alias_id).values(**values))
    if learned:
        bump_generation(conn)
    return {"status": "learned" if learned else "confirmed", "alias_id": alias_id}


def _needed(search: dict, item_type: str, item_id: str, policy: AliasPolicy) -> int:
    """min_confirmations; at least overturn_confirmations for an item other than a confident answer's
    (the search was answered with another item on top)."""
    top = search["results"][0] if search.get("results") else None
    overturns = bool(search.get("answered")) and top is not None and (top["item_type"], top["item_id"]) != (item_type, item_id)
    return max(policy.min_confirmations, policy.overturn_confirmations) if overturns else policy.min_confirmations


def from_review(conn: sa.Connection, item_type: str, item_id: str, queries: list[str], candidate_id: str) -> int:
    """Make each query an active alias of the item, inside the review decision's transaction.

    An alias the item already has for the same query (wording.alias_key) is not duplicated; a
    pending one (too few helpful events yet) is activated. Vectors are left NULL: the next
    reload (`active_vectors`, in every server process) encodes and stores them. No
    alias_confirmations rows are written, so no visitor session's hourly limit is touched.
    Returns how many aliases were added or activated; the generation is bumped if any.
    """
    changed = sum(_activate(conn, item_type, item_id, query, "review", candidate_id) for query in queries)
    if changed:
        bump_generation(conn)
    return changed


def _activate(conn: sa.Connection, item_type: str, item_id: str, query: str, source: str, candidate_id: str | None) -> bool:
    """Add `query` as an active alias of the item, or activate a pending one; False if it was active already."""
    now = time.time()
    key = alias_key(query)
    values = {"item_type": item_type, "item_id": item_id, "query": query, "query_key": key, "confirmations": 0,
              "active": True, "source": source, "candidate_id": candidate_id, "created_at": now, "updated_at": now}  # fmt: skip
    if _insert_new(conn, values):
        return True
    return bool(
        conn.execute(
            aliases.update()
            .where(aliases.c.item_type == item_type, aliases.c.item_id == item_id, aliases.c.query_key == key,
                   aliases.c.active.is_(False))  # fmt: skip
            .values(active=True, source=source, candidate_id=candidate_id, model=None, vector=None, updated_at=now)
        ).rowcount
    )


IMPORT_KEYS = {"text", "article", "idea"}


def import_aliases(
    engine: sa.Engine, path: str | Path, article_ids: set[str], max_query_chars: int
) -> tuple[int, int, list[str]]:
    """Make each line's question an active alias of its article or idea; returns (added, already, errors).

    A line is {"text": question, "article": id} or {"text": question, "idea": id} (banking77's
    feedback.jsonl is the first form): answers a team has already confirmed, such as past
    tickets and the article that solved each. A new deployment then starts with them in
    retrieval, and article answers in the answered calibration too (which every server refits
    once it reloads them), instead of waiting for visitors' helpful events. A bad line is
    skipped with an error naming it; an idea merged into another gives its alias to the idea it
    went into; a shipped or declined idea is no longer suggested, so it takes none.
    Raises jsonl.NotUtf8 if the file is not UTF-8.
    """
    from .ideas import CLOSED_STATUSES, resolve_idea

    added = already = 0
    errors: list[str] = []
    records = list(numbered_records(path))  # all read (and decoded) before the first write
    with writing(engine) as conn:
        for number, data, problem in records:
            problem = problem or _import_problem(data, article_ids, max_query_chars)
            item_type = "idea" if problem is None and "idea" in data else "article"
            item_id = data[item_type] if problem is None else None
            if item_type == "idea":
                idea = resolve_idea(conn, item_id)
                if idea is None:
                    problem = _missing_idea(conn, item_id)
                elif idea["status"] in CLOSED_STATUSES:
                    went = "" if idea["id"] == item_id else f" (merged into {idea['id']!r})"
                    problem = f"idea: {item_id!r}{went} is {idea['status']}: no longer suggested, so an alias would never be used"
                else:
                    item_id = idea["id"]
            if problem is not None:
                errors.append(f"{path}:{number}: {problem}")
            elif _activate(conn, item_type, item_id, " ".join(data["text"].split()), "import", None):
                added += 1
            else:
                already += 1
        if added:
            bump_generation(conn)
    return added, already, errors


def _missing_idea(conn: sa.Connection, idea_id: str) -> str:
    from .ideas import get_idea

    if get_idea(conn, idea_id) is None:
        return f"idea: no idea with id {idea_id!r}"
    return f"idea: {idea_id!r} is merged into an idea that no longer exists"


def _import_problem(data, article_ids: set[str], max_query_chars: int) -> str | None:
    """What is wrong with one import line (field: message), or None."""
    if not isinstance(data, dict):
        return 'line: a JSON object, {"text": ..., "article": ...} or {"text": ..., "idea": ...}'
    unknown = sorted(set(data) - IMPORT_KEYS)
    if unknown:
        return f"{unknown[0]}: unknown field (a line has text and article or idea)"
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        return "text: the question, a non-empty string"
    if UNSTORABLE_TEXT.search(text):
        return "text: contains NUL or an unpaired surrogate, which cannot be stored"
    if len(" ".join(text.split())) > max_query_chars:
        return f"text: longer than max_query_chars ({max_query_chars}), the longest query /api/suggest accepts"
    if ("article" in data) == ("idea" in data):
        return "article: name exactly one of article or idea"
    field = "article" if "article" in data else "idea"
    if not isinstance(data[field], str) or not data[field].strip():
        return f"{field}: an id, a non-empty string"
    if UNSTORABLE_TEXT.search(data[field]):
        return f"{field}: contains NUL or an unpaired surrogate, which no id has"
    if field == "article" and data["article"] not in article_ids:
        return f"article: no article with id {data['article']!r} in the KB"
    return None


def move_to(conn: sa.Connection, item_type: str, from_id: str, to_id: str) -> int:
    """Hand an item's aliases to the item it was merged into (an idea merged into another is no
    longer suggested, so its aliases would find nothing). Where both have one for the same query,
    the active one is kept (the target's if both are). Returns how many moved; the generation is
    bumped if any changed."""
    columns = (aliases.c.id, aliases.c.query_key, aliases.c.active)
    rows = conn.execute(sa.select(*columns).where(aliases.c.item_type == item_type, aliases.c.item_id == from_id)).all()
    if not rows:
        return 0
    target = {
        row.query_key: row
        for row in conn.execute(sa.select(*columns).where(aliases.c.item_type == item_type, aliases.c.item_id == to_id))
    }
    moving, dropped = [], []
    for row in rows:
        theirs = target.get(row.query_key)
        if theirs is None:
            moving.append(row.id)
        elif row.active and not theirs.active:  # a learned alias beats a pending one
            dropped.append(theirs.id)
            moving.append(row.id)
        else:
            dropped.append(row.id)
    if dropped:
        conn.execute(alias_confirmations.delete().where(alias_confirmations.c.alias_id.in_(dropped)))
        conn.execute(aliases.delete().where(aliases.c.id.in_(dropped)))
    if moving:
        conn.execute(aliases.update().where(aliases.c.id.in_(moving)).values(item_id=to_id, updated_at=time.time()))
    bump_generation(conn)
    return len(moving)


def _insert_new(conn: sa.Connection, values: dict) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING: True if the row is new. A concurrent writer of the same
    alias (another process's decision or helpful event) makes it a no-op instead of an error."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(aliases).values(**values).on_conflict_do_nothing(index_elements=["item_type", "item_id", "query_key"])
    if conn.dialect.insert_returning:  # PostgreSQL's rowcount is -1 here (SQLAlchemy adds RETURNING itself)
        return conn.execute(stmt.returning(aliases.c.id)).first() is not None
    return conn.execute(stmt).rowcount == 1  # SQLite before 3.35


def list_aliases(engine: sa.Engine, active: bool | None = None) -> list[dict]:
    """Every learned alias, or only the active ones (`active=True`: confirmed enough, used by
    retrieval when their item is suggested) or only the others (`active=False`)."""
    query = sa.select(
        aliases.c.id,
        aliases.c.item_type,
        aliases.c.item_id,
        aliases.c.query,
        aliases.c.confirmations,
        aliases.c.active,
        aliases.c.source,
        aliases.c.candidate_id,
        aliases.c.created_at,
        aliases.c.updated_at,
    ).order_by(aliases.c.id)
    if active is not None:
        query = query.where(aliases.c.active.is_(active))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def mark_in_use(rows: list[dict], article_ids: set[str] | None, idea_ids: set[str]) -> list[dict]:
    """Add `in_use` to listed aliases: active, and their article is in the index served (unknown:
    `article_ids` None) or their idea is suggested (not shipped or declined). An active alias whose
    article was renamed away is otherwise indistinguishable from one that works."""
    for row in rows:
        known = idea_ids if row["item_type"] == "idea" else article_ids
        row["in_use"] = bool(row["active"]) and (known is None or row["item_id"] in known)
    return rows


def delete_alias(conn: sa.Connection, alias_id: int) -> bool:
    conn.execute(alias_confirmations.delete().where(alias_confirmations.c.alias_id == alias_id))
    deleted = conn.execute(aliases.delete().where(aliases.c.id == alias_id)).rowcount
    if deleted:
        bump_generation(conn)
    return bool(deleted)


def active_vectors(engine: sa.Engine, model: str, encode) -> list[dict]:
    """Active aliases with their vectors; vectors from another model are re-encoded and saved."""
    with engine.connect() as conn:
        rows = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(aliases.c.id, aliases.c.item_type, aliases.c.item_id, aliases.c.query, aliases.c.model, aliases.c.vector)
                .where(aliases.c.active.is_(True))
                .order_by(aliases.c.id)
            )
        ]
    stale = [r for r in rows if r["model"] != model or r["vector"] is None]
    if stale:
        fresh = encode([r["query"] for r in stale])
        with writing(engine) as conn:
            for row, vector in zip(stale, fresh):
                row["vector"], row["model"] = _to_blob(vector), model
                conn.execute(aliases.update().where(aliases.c.id == row["id"]).values(vector=row["vector"], model=model))
    for row in rows:
        row["vector"] = np.frombuffer(row["vector"], dtype=np.float32)
    return rows


def _to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def stranded_by(engine: sa.Engine, article_ids: set[str], among: set[str] | None = None) -> str | None:
    """A warning when active aliases name articles not in `article_ids` (only those in `among`,
    when given: the ids a reindex just removed), else None. A renamed file is a new article id,
    and what people taught deflect for the old one silently stops counting."""
    query = (
        sa.select(aliases.c.item_id, sa.func.count())
        .where(aliases.c.item_type == "article", aliases.c.active.is_(True))
        .group_by(aliases.c.item_id)
    )
    with engine.connect() as conn:
        counts = {item: n for item, n in conn.execute(query) if item not in article_ids and (among is None or item in among)}
    if not counts:
        return None
    total = sum(counts.values())
    named = ", ".join(f"{item!r} ({n})" for item, n in sorted(counts.items())[:5]) + (" ..." if len(counts) > 5 else "")
    return (
        f"{total} learned alias{'es' if total != 1 else ''} now point{'' if total != 1 else 's'} at articles not in the "
        f"KB: {named}. A renamed or moved file is a new article id: give it back its old id with `id:` in its "
        "front matter (or delete them: deflect aliases list --all gives their ids, deflect aliases delete ID)"
    )
