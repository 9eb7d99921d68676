"""Deflection metrics, exactly as DESIGN section 6 defines them.

The definitions are pure functions over plain rows (searches, shown results, events), so
they can be tested on hand-built sequences; `compute_metrics` loads the rows for a period
from the database and applies them.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from .db import events, search_results, searches
from .events import EVENT_TYPES, normalize_query
from .gaps import DEFAULT_GAPS, candidates_of, content_gaps
from .outbox import requester_key
from .redaction import extends

ERASED = "[erased]"  # deflect.erasure's stand-in for a forgotten question

SUPERSEDE_SECONDS = 30.0
SHOWN_CHUNK = 900  # search ids per IN list on SQLite (pool.chunks; its own name so a test can cut smaller)


@dataclass
class SearchOutcome:
    """What happened after one final search."""

    search: dict
    clicked_at: float | None = None
    helpful: bool = False
    not_helpful: bool = False
    ticket_times: tuple = ()

    @property
    def ticket(self) -> bool:
        return bool(self.ticket_times)

    @property
    def confirmed(self) -> bool:
        return self.helpful and not self.ticket

    def assumed(self, window: float) -> bool:
        if self.clicked_at is None or self.helpful or self.not_helpful:
            return False
        return not any(t <= self.clicked_at + window for t in self.ticket_times)


def superseded_ids(rows: list[dict], seconds: float = SUPERSEDE_SECONDS) -> set[str]:
    """Searches followed within `seconds` in the same session by a search whose query extends them."""
    return set(superseding(rows, seconds))


def superseding(rows: list[dict], seconds: float = SUPERSEDE_SECONDS) -> dict[str, str]:
    """Superseded search id -> the id of the first later search of its session that extends it."""
    by_session: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("session"):
            by_session[row["session"]].append(row)
    out: dict[str, str] = {}
    for session_rows in by_session.values():
        session_rows.sort(key=lambda r: r["created_at"])
        keys = [normalize_query(r["query"]) for r in session_rows]
        for i, row in enumerate(session_rows):
            for j in range(i + 1, len(session_rows)):
                later = session_rows[j]
                if later["created_at"] - row["created_at"] > seconds:
                    break
                if extends(keys[j], keys[i]):
                    out[row["id"]] = later["id"]
                    break
    return out


def superseded_in_store(conn: sa.Connection, sessions_at: list[tuple[str | None, float]]) -> set[str]:
    """Ids of stored searches superseded within these (session, time) spans.

    A search is superseded only by a later one of its session (superseded_ids), so this
    loads those sessions' searches from the earliest time to SUPERSEDE_SECONDS after the
    latest: what the pool and the events export need to tell final searches apart.
    """
    from .pool import chunks

    timed = [(session, at) for session, at in sessions_at if session]
    if not timed:
        return set()
    first, last = min(at for _, at in timed), max(at for _, at in timed)
    nearby: list[dict] = []
    for part in chunks(sorted({session for session, _ in timed})):
        nearby += [dict(r._mapping) for r in conn.execute(
            sa.select(searches.c.id, searches.c.query, searches.c.session, searches.c.created_at).where(
                searches.c.session.in_(part),
                searches.c.created_at >= first,
                searches.c.created_at <= last + SUPERSEDE_SECONDS,
            )
        )]
    return superseded_ids(nearby)


@dataclass
class Shown:
    """What the final searches showed, counted by the database (a year of as-you-type searches
    holds millions of shown rows; only these sums are needed)."""

    impressions: Counter = field(default_factory=Counter)  # (item_type, item_id) -> times shown
    tickets_after_shown: Counter = field(default_factory=Counter)  # ... shown on a search with a ticket
    first: dict[str, tuple[str, str]] = field(default_factory=dict)  # search id -> (item_type, item_id) at rank 1

    @property
    def idea_first(self) -> set[str]:
        """The searches whose first result was an idea."""
        return {sid for sid, (item_type, _) in self.first.items() if item_type == "idea"}

    def first_articles(self, search_ids) -> dict[str, str]:
        """search id -> the article it showed first, for those of `search_ids` that showed one first."""
        return {sid: self.first[sid][1] for sid in search_ids if self.first.get(sid, ("",))[0] == "article"}


def shown_in(conn: sa.Connection, final: dict[str, SearchOutcome]) -> Shown:
    """Count the final searches' shown results (search_results) in the database."""
    shown = Shown()
    per_item = sa.select(search_results.c.item_type, search_results.c.item_id, sa.func.count()).group_by(
        search_results.c.item_type, search_results.c.item_id
    )
    ticketed = [sid for sid, o in final.items() if o.ticket]
    for ids, counter in ((list(final), shown.impressions), (ticketed, shown.tickets_after_shown)):
        for among in _among(conn, search_results.c.search_id, ids):
            for item_type, item_id, n in conn.execute(per_item.where(among)):
                counter[(item_type, item_id)] += int(n)
    first = sa.select(search_results.c.search_id, search_results.c.item_type, search_results.c.item_id).where(
        search_results.c.rank == 1
    )
    for among in _among(conn, search_results.c.search_id, list(final)):
        shown.first.update((sid, (item_type, item_id)) for sid, item_type, item_id in conn.execute(first.where(among)))
    return shown


def _among(conn: sa.Connection, column: sa.Column, ids: list[str]) -> Iterator[sa.ColumnElement]:
    """`column IN ids` as few conditions as the database takes well: one array parameter on
    PostgreSQL (a long IN list costs psycopg more than the query), bounded IN lists on SQLite."""
    if not ids:
        return
    if conn.dialect.name == "postgresql":
        yield column == sa.any_(sa.bindparam("ids", ids, type_=postgresql.ARRAY(sa.String)))
        return
    from .pool import chunks

    for part in chunks(ids, SHOWN_CHUNK):
        yield column.in_(part)


def outcomes(final: list[dict], event_rows: list[dict]) -> dict[str, SearchOutcome]:
    by_id = {s["id"]: SearchOutcome(s) for s in final}
    tickets: dict[str, list[float]] = defaultdict(list)
    for event in sorted(event_rows, key=lambda e: e["created_at"]):
        outcome = by_id.get(event["search_id"])
        if outcome is None:
            continue
        if event["type"] == "click" and outcome.clicked_at is None:
            outcome.clicked_at = event["created_at"]
        elif event["type"] == "helpful":
            outcome.helpful = True
        elif event["type"] == "not_helpful":
            outcome.not_helpful = True
        elif event["type"] == "ticket_created":
            tickets[event["search_id"]].append(event["created_at"])
    for search_id, times in tickets.items():
        by_id[search_id].ticket_times = tuple(times)
    return by_id


def _rate(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def totals(final: dict[str, SearchOutcome], window: float, now: float) -> dict:
    n = len(final)
    answered = sum(bool(o.search["answered"]) for o in final.values())
    clicked = sum(o.clicked_at is not None for o in final.values())
    confirmed = sum(o.confirmed for o in final.values())
    assumed = [o for o in final.values() if o.assumed(window)]
    tickets = sum(o.ticket for o in final.values())
    return {
        "searches": n,
        "answered_rate": _rate(answered, n),
        "no_answer_rate": round(1 - answered / n, 4) if n else 0.0,
        "click_rate": _rate(clicked, n),
        "confirmed_deflections": confirmed,
        "assumed_deflections": len(assumed),
        # Assumed deflections whose window has not closed yet: a ticket may still come.
        "assumed_pending": sum(o.clicked_at + window > now for o in assumed),
        "tickets": tickets,
        "deflection_rate": _rate(confirmed + len(assumed), n),
        "confirmed_deflection_rate": _rate(confirmed, n),
    }


def answered_by(final: dict[str, SearchOutcome], shown: Shown) -> dict:
    """answered_rate split by what came first: an article (the KB answered) or an idea (the board
    did: the feature is asked for, not explained). A rate that climbs with no new article is ideas."""
    answered = [sid for sid, o in final.items() if o.search["answered"]]
    idea_first = shown.idea_first
    by_idea = sum(sid in idea_first for sid in answered)
    return {"answered_by_article_rate": _rate(len(answered) - by_idea, len(final)),
            "answered_by_idea_rate": _rate(by_idea, len(final))}


def item_metrics(final: dict[str, SearchOutcome], shown: Shown, event_rows: list[dict]) -> dict[str, list[dict]]:
    """Per article and per idea: impressions, clicks, helpful, not_helpful, tickets, effectiveness."""
    stats: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for key, n in shown.impressions.items():
        stats[key]["impressions"] = n
        stats[key]["tickets_after_shown"] = shown.tickets_after_shown[key]
    clicks_at: dict[tuple[str, str, str], float] = {}
    voters: set[tuple[str, str]] = set()  # (idea, requester): the board counts one vote per requester
    for event in sorted(event_rows, key=lambda e: e["created_at"]):
        outcome = final.get(event["search_id"])
        if outcome is None or not event.get("item_id") or event["type"] == "ticket_created":
            continue
        key = (event.get("item_type") or "article", event["item_id"])
        if event["type"] == "vote" and (event.get("customer_id") or event.get("email")):
            voter = (event["item_id"], requester_key(event))
            if voter in voters:
                continue
            voters.add(voter)
        name = {"click": "clicks", "helpful": "helpful", "not_helpful": "not_helpful", "vote": "votes"}[event["type"]]
        stats[key][name] += 1
        if event["type"] == "click":
            mark = (event["search_id"], *key)
            clicks_at[mark] = min(clicks_at.get(mark, event["created_at"]), event["created_at"])
    for (search_id, item_type, item_id), clicked in clicks_at.items():
        if any(t >= clicked for t in final[search_id].ticket_times):
            stats[(item_type, item_id)]["tickets_after_click"] += 1
    out: dict[str, list[dict]] = {"article": [], "idea": []}
    for (item_type, item_id), c in stats.items():
        judged = c["helpful"] + c["not_helpful"] + c["tickets_after_click"]
        out.setdefault(item_type, []).append(
            {
                "id": item_id,
                "impressions": c["impressions"],
                "clicks": c["clicks"],
                "helpful": c["helpful"],
                "not_helpful": c["not_helpful"],
                "tickets_after_shown": c["tickets_after_shown"],
                "tickets_after_click": c["tickets_after_click"],
                "votes": c["votes"],
                "effectiveness": round(c["helpful"] / judged, 4) if judged else None,
            }
        )
    for rows in out.values():
        rows.sort(key=lambda r: (-r["impressions"], -r["clicks"], r["id"]))
    return out


def in_pool(outcome: SearchOutcome, event_rows_for_search: list[dict]) -> bool:
    """DESIGN section 7: unanswered, or a ticket was filed, or not_helpful without a later helpful."""
    if not outcome.search["answered"] or outcome.ticket:
        return True
    last_not_helpful = max((e["created_at"] for e in event_rows_for_search if e["type"] == "not_helpful"), default=None)
    if last_not_helpful is None:
        return False
    return not any(e["type"] == "helpful" and e["created_at"] >= last_not_helpful for e in event_rows_for_search)


def pool_searches(final: dict[str, SearchOutcome], event_rows: list[dict]) -> list[dict]:
    """The final searches that belong to the unanswered pool (DESIGN section 7)."""
    by_search: dict[str, list[dict]] = defaultdict(list)
    for event in event_rows:
        by_search[event["search_id"]].append(event)
    # An erased question (deflect.erasure) still counts in the figures, but is no gap to fill.
    return [o.search for sid, o in final.items() if in_pool(o, by_search.get(sid, [])) and o.search["query"] != ERASED]


def daily_series(final: dict[str, SearchOutcome], window: float) -> list[dict]:
    days: dict[str, list[SearchOutcome]] = defaultdict(list)
    for outcome in final.values():
        day = datetime.fromtimestamp(outcome.search["created_at"], tz=UTC).date().isoformat()
        days[day].append(outcome)
    series = []
    for day in sorted(days):
        rows = days[day]
        deflected = sum(o.confirmed or o.assumed(window) for o in rows)
        series.append(
            {
                "date": day,
                "searches": len(rows),
                "answered": sum(bool(o.search["answered"]) for o in rows),
                "deflections": deflected,
                "confirmed_deflections": sum(o.confirmed for o in rows),
                "tickets": sum(o.ticket for o in rows),
                "deflection_rate": _rate(deflected, len(rows)),
            }
        )
    return series


def compute_metrics(
    engine: sa.Engine,
    since: float | None = None,
    until: float | None = None,
    assumed_window_seconds: float = 1800,
    now: float | None = None,
    gaps: int = DEFAULT_GAPS,
) -> dict:
    """GET /api/metrics: totals, event counts, per item, content gaps and a daily series."""
    now = time.time() if now is None else now
    until = now if until is None else until
    with engine.connect() as conn:
        query = sa.select(searches).where(searches.c.created_at < until + SUPERSEDE_SECONDS)
        if since is not None:
            query = query.where(searches.c.created_at >= since)
        loaded = _dicts(conn.execute(query))
        superseded = superseded_ids(loaded)
        in_period = [s for s in loaded if s["created_at"] < until]
        final_rows = [s for s in in_period if s["id"] not in superseded]
        final_ids = {s["id"] for s in final_rows}
        search_events = _rows_for_searches(conn, events, final_ids, since, until)
        counted = sa.select(events.c.type, sa.func.count()).where(events.c.created_at < until).group_by(events.c.type)
        if since is not None:
            counted = counted.where(events.c.created_at >= since)
        event_counts = dict.fromkeys(EVENT_TYPES, 0) | {t: int(n) for t, n in conn.execute(counted)}
        final = outcomes(final_rows, search_events)
        shown = shown_in(conn, final)
        pool = pool_searches(final, search_events)
        clusters, reviewed = candidates_of(conn, [r["id"] for r in pool])
    per_item = item_metrics(final, shown, search_events)
    totals_ = totals(final, assumed_window_seconds, now)
    totals_ |= {"all_searches": len(in_period), "superseded_searches": len(in_period) - len(final_rows)}
    totals_ |= answered_by(final, shown)
    return {
        "since": since,
        "until": until,
        "totals": totals_,
        "events": event_counts,
        "articles": per_item.get("article", []),
        "ideas": per_item.get("idea", []),
        "content_gaps": content_gaps(pool, gaps, clusters=clusters, reviewed=reviewed,
                                     first_articles=shown.first_articles(r["id"] for r in pool if r["answered"])),
        "series": daily_series(final, assumed_window_seconds),
    }


def _rows_for_searches(conn: sa.Connection, table: sa.Table, search_ids: set[str], since, until) -> list[dict]:
    """Rows of `table` for the given searches (joined on the search period, not a long IN list)."""
    if not search_ids:
        return []
    query = sa.select(table).join(searches, searches.c.id == table.c.search_id).where(searches.c.created_at < until)
    if since is not None:
        query = query.where(searches.c.created_at >= since)
    return [row for row in _dicts(conn.execute(query)) if row["search_id"] in search_ids]


def _dicts(result: sa.CursorResult) -> list[dict]:
    """Rows as dicts, the column names read once (Row._mapping per row costs as much as the fetch)."""
    keys = list(result.keys())
    return [dict(zip(keys, row)) for row in result]


def add_titles(report: dict, article_titles: dict[str, str], idea_titles: dict[str, str]) -> dict:
    """Name the per-article and per-idea rows (ids alone mean little to a support lead)."""
    for kind, titles in (("articles", article_titles), ("ideas", idea_titles)):
        for row in report[kind]:
            row["title"] = titles.get(row["id"])
    return report
