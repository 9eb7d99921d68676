"""Rows for analysts: every event with its search, and every search with what it showed.

Both mark `final_search` (false for a search superseded while its session typed on, which counts
in no metric), so the two exports together reproduce `deflect metrics`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import sqlalchemy as sa

from .db import events, search_results, searches

EXPORT_CHUNK = 1000


def event_rows(
    engine: sa.Engine, since: float | None = None, until: float | None = None, by_search_time: bool = False
) -> Iterator[dict]:
    """Events joined with their search, oldest first (`deflect events export`).

    The period is the event's time; `by_search_time` takes it by the search's time instead, as
    the metrics do: a month's searches with all their events, a ticket filed on the 1st of the
    next month included, so a month's figures can be recomputed from it.
    """
    query = (
        sa.select(
            events.c.id.label("event_id"),
            events.c.created_at,
            events.c.type,
            events.c.item_type,
            events.c.item_id,
            events.c.search_id,
            searches.c.query,
            searches.c.session,
            searches.c.locale,
            searches.c.answered,
            searches.c.top_score,
            searches.c.created_at.label("search_created_at"),
            events.c.customer_id,
            events.c.email,
            events.c.mrr,
        )
        .join(searches, searches.c.id == events.c.search_id)
        .order_by(events.c.created_at, events.c.id)
    )
    with engine.connect() as conn:
        period_of = searches.c.created_at if by_search_time else events.c.created_at
        for chunk in _final_chunks(conn, _in_period(query, period_of, since, until), "search_created_at"):
            yield from chunk


def search_rows(engine: sa.Engine, since: float | None = None, until: float | None = None) -> Iterator[dict]:
    """Searches, oldest first, each with the results it showed (`deflect searches export`).

    The period is the search's time, as in `deflect metrics`: with the events export these are
    the rows the metrics are computed from, searches nobody acted on included.
    """
    query = sa.select(
        searches.c.id.label("search_id"),
        searches.c.created_at,
        searches.c.query,
        searches.c.session,
        searches.c.locale,
        searches.c.answered,
        searches.c.top_score,
        searches.c.index_version,
    ).order_by(searches.c.created_at, searches.c.id)
    with engine.connect() as conn:
        for chunk in _final_chunks(conn, _in_period(query, searches.c.created_at, since, until), "created_at"):
            shown = _results_of(conn, [row["search_id"] for row in chunk])
            yield from (row | {"results": shown.get(row["search_id"], [])} for row in chunk)


def _in_period(query, column, since: float | None, until: float | None):
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column < until)
    return query


def _final_chunks(conn: sa.Connection, query, search_time: str) -> Iterator[list[dict]]:
    """The query's rows in chunks (a large export is never all in memory), each with `final_search`."""
    chunk: list[dict] = []
    for row in conn.execute(query):
        chunk.append(dict(row._mapping))
        if len(chunk) == EXPORT_CHUNK:
            yield _with_final_flag(conn, chunk, search_time)
            chunk = []
    if chunk:
        yield _with_final_flag(conn, chunk, search_time)


def _results_of(conn: sa.Connection, search_ids: list[str]) -> dict[str, list[dict]]:
    """search id -> its shown results, best first: {"rank", "type", "id", "score"}."""
    out: dict[str, list[dict]] = {}
    query = (
        sa.select(search_results)
        .where(search_results.c.search_id.in_(search_ids))
        .order_by(search_results.c.search_id, search_results.c.rank)
    )
    for r in conn.execute(query):
        out.setdefault(r.search_id, []).append({"rank": r.rank, "type": r.item_type, "id": r.item_id, "score": round(r.score, 4)})
    return out


def _with_final_flag(conn: sa.Connection, rows: list[dict], search_time: str) -> list[dict]:
    """Add `final_search`: false when the row's search was superseded (it counts in no metric),
    and each time as a UTC date and time next to its Unix seconds."""
    from .metrics import superseded_in_store

    superseded = superseded_in_store(conn, [(r["session"], r[search_time]) for r in rows])
    return [_with_utc_times(r) | {"final_search": r["search_id"] not in superseded} for r in rows]


def _with_utc_times(row: dict) -> dict:
    """row with `<time>_utc` ("2026-11-24 09:30:05") right after each `created_at`-like column: Unix
    seconds are exact for programs, but a spreadsheet shows 1795512605.2 (Excel reads this form as a date)."""
    out: dict = {}
    for key, value in row.items():
        out[key] = value
        if key.endswith("created_at") and isinstance(value, int | float):
            out[key + "_utc"] = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return out


def idea_rows(engine: sa.Engine, statuses: tuple[str, ...] | None = None) -> list[dict]:
    """Every idea (or those of `statuses`) as a roadmap row: votes, distinct requesters and their MRR
    as the board counts them, how many customer questions its promoted or merged candidates brought,
    and when it was created and shipped (Unix seconds and UTC). Like votes, a merged idea's questions
    count on the idea it was merged into."""
    from .candidates import candidate_exclusions, candidate_history, candidate_members, candidates
    from .events import normalize_query
    from .ideas import idea_url, list_ideas, resolve_idea

    ideas = list_ideas(engine, statuses)
    asked: dict[str, int] = {}
    stands_for: dict[str, str] = {}  # a candidate's idea -> the idea it is now (merged_into chains)
    with engine.connect() as conn:
        left_out = set(conn.execute(sa.select(candidate_exclusions.c.candidate_id, candidate_exclusions.c.query_key)).all())
        for table in (candidate_members, candidate_history):
            for cid, idea_id, query in conn.execute(
                sa.select(candidates.c.id, candidates.c.idea_id, searches.c.query)
                .join(table, table.c.candidate_id == candidates.c.id).join(searches, searches.c.id == table.c.search_id)
                .where(candidates.c.idea_id.is_not(None), candidates.c.status.in_(("promoted", "merged")))
            ):
                if (cid, normalize_query(query)) not in left_out:  # a question left out is not about the idea
                    if idea_id not in stands_for:
                        now = resolve_idea(conn, idea_id)
                        stands_for[idea_id] = now["id"] if now else idea_id
                    target = stands_for[idea_id]  # merged ideas' questions count where their votes went
                    asked[target] = asked.get(target, 0) + 1
    rows = []
    for idea in ideas:
        row = {k: idea[k] for k in ("id", "title", "status", "merged_into", "votes", "requesters", "mrr")}
        row["questions"] = asked.get(idea["id"], 0)
        for key in ("created_at", "shipped_at"):
            row[key] = idea[key]
            row[key + "_utc"] = datetime.fromtimestamp(idea[key], UTC).strftime("%Y-%m-%d %H:%M:%S") if idea[key] else None
        row["url"] = idea_url(idea["id"])
        row["description"] = idea["description"]
        rows.append(row)
    return rows
