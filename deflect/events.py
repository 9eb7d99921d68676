"""Searches and deflection events (DESIGN section 6).

Every suggest call is a *search*; what the user did next (click, helpful, not_helpful,
ticket_created, vote) is an *event* on that search. Searches are written by a background
writer in batches, so logging stays off the request path; events are written
synchronously and acknowledged only once committed.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
import uuid

import sqlalchemy as sa

from .db import events, search_results, searches, writing
from .outage import DatabaseUnavailable, FailureLog

log = logging.getLogger(__name__)

# The longest a request waits for the background writer (SearchLog.flush): requests must not
# pile up behind a writer that is waiting for the database to come back.
FLUSH_SECONDS = 5.0
# Searches kept in memory while the database is away (a few KB each): about 3 hours of 5
# searches a second. Beyond it, searches are still answered but not logged, and that is logged.
MAX_WAITING_SEARCHES = 50_000
# Writes tried once the server is stopping, before the searches still waiting are given up.
CLOSE_ATTEMPTS = 3

EVENT_TYPES = ("click", "helpful", "not_helpful", "ticket_created", "vote")


class EventError(ValueError):
    """An event that refers to something that does not exist; `field` names it."""

    def __init__(self, status: int, code: str, field: str, message: str):
        super().__init__(message)
        self.status, self.code, self.field = status, code, field


def normalize_query(text: str) -> str:
    """Case- and whitespace-insensitive form used to compare queries (supersession, aliases)."""
    return re.sub(r"\s+", " ", text).strip().casefold()


# A search_id starts with its creation time in milliseconds (12 hex digits), so a process
# that receives an event for a search written by another process can tell a search still
# in that process's write queue (wait a moment) from an unknown one (404 at once).
WRITE_GRACE_SECONDS = 5.0


def new_search_id() -> str:
    return f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:20]}"


def search_age(search_id: str) -> float | None:
    """Seconds since the search was created, from its id; None for ids of another shape."""
    if len(search_id) != 32:
        return None
    try:
        return time.time() - int(search_id[:12], 16) / 1000
    except ValueError:
        return None


def search_rows(query: str, session, locale, answered: bool, results: list[dict], index_version) -> tuple[dict, list]:
    search_id = new_search_id()
    search = {
        "id": search_id,
        "query": query,
        "session": session,
        "locale": locale,
        "created_at": time.time(),
        "answered": bool(answered),
        "top_score": results[0]["score"] if results else None,
        "index_version": index_version,
    }
    shown = [
        {"search_id": search_id, "rank": rank, "item_type": r["type"], "item_id": r["id"], "score": r["score"]}
        for rank, r in enumerate(results, 1)
    ]
    return search, shown


def write_searches(engine: sa.Engine, batch: list[tuple[dict, list]]) -> None:
    with writing(engine) as conn:
        conn.execute(searches.insert(), [search for search, _ in batch])
        shown = [row for _, rows in batch for row in rows]
        if shown:
            conn.execute(search_results.insert(), shown)


def record_search(
    engine: sa.Engine,
    query: str,
    session: str | None,
    locale: str | None,
    answered: bool,
    results: list[dict],
    index_version: str | None,
) -> str:
    """Store one search and its ranked results synchronously; returns its search_id."""
    search, shown = search_rows(query, session, locale, answered, results, index_version)
    write_searches(engine, [(search, shown)])
    return search["id"]


class SearchLogFull(Exception):
    """The backlog of searches waiting for the database is at its bound."""


class SearchLog:
    """Background writer for searches: the request returns its search_id at once.

    Rows are written in batches by one thread, in the order they were queued. `flush()`
    waits until everything queued before the call is committed; events call it before
    looking a search up, so an event can never outrun the search it refers to. A write
    that fails is retried until it succeeds; while the database is away, searches wait in
    memory (at most `max_waiting`) and the failure is logged once (then once a minute, and
    once when it works again).
    """

    def __init__(
        self,
        engine: sa.Engine,
        max_batch: int = 500,
        retry_seconds: float = 0.5,
        linger: float = 0.2,
        max_waiting: int = MAX_WAITING_SEARCHES,
    ):
        self.engine = engine
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self._not_logged = FailureLog(log, "search log: queueing a search (the backlog waiting for the database is full)")
        # The writer waits this long after a search arrives to gather more into one
        # transaction: one commit (and fsync) per batch instead of per search, so logging
        # takes little CPU from the requests. flush() cuts the wait short.
        self.linger = linger
        self._hurry = threading.Event()
        self.retry_seconds = retry_seconds
        self._queue: queue.Queue = queue.Queue()
        self._done = threading.Condition()
        self._queued = 0  # sequence number of the last search queued
        self._written = 0  # ... and of the last one committed
        self._failed_attempts = 0  # writes that failed, counted for flush()
        self._outage = FailureLog(log, "search log: writing searches to the database")
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="deflect-search-log", daemon=True)
        self._thread.start()

    def record(self, query, session, locale, answered, results, index_version) -> str:
        search, shown = search_rows(query, session, locale, answered, results, index_version)
        with self._done:
            if self._queued - self._written >= self.max_waiting:
                # A long outage: the search is still answered, but memory stays bounded.
                self._not_logged.failed(SearchLogFull(f"{self.max_waiting} searches already wait for the database"))
                return search["id"]
            self._not_logged.succeeded()
            self._queued += 1
            self._queue.put((self._queued, search, shown))
        return search["id"]

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Block until every search queued before this call is committed; False after `timeout`.

        The writer retries at once instead of finishing its wait between retries; if that try
        fails (the database is unreachable), this raises DatabaseUnavailable without waiting
        longer, so a request fails fast instead of holding a server thread.
        """
        with self._done:
            target, failures = self._queued, self._failed_attempts
            self._hurry.set()
            self._done.wait_for(lambda: self._written >= target or self._failed_attempts > failures, timeout=timeout)
            if self._written >= target:
                return True
            if self._failed_attempts > failures or self._outage.failing:
                raise DatabaseUnavailable(f"{self._queued - self._written} searches wait for the database")
            return False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._hurry.set()
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            if self.linger > 0 and self._queue.qsize() < self.max_batch:
                self._hurry.wait(self.linger)
            self._hurry.clear()
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            if not self._write(batch):  # stopping while the database is away: the rest is lost too
                self._give_up(len(batch), batch[-1][0], stop)
                return
            if stop:
                return

    def _give_up(self, given_up: int, last: int, stopped: bool) -> None:
        """Count what is still queued behind a batch given up at close, and say it in one line."""
        while not stopped:
            item = self._queue.get()  # close() queued None after the last search
            if item is None:
                break
            given_up, last = given_up + 1, item[0]
        log.error("search log: %d searches not written: the database was away when the server stopped", given_up)
        with self._done:
            self._written = max(self._written, last)
            self._done.notify_all()

    def _write(self, batch: list[tuple[int, dict, list]]) -> bool:
        """Write the batch, retrying until the database takes it; False if given up at close."""
        rows = [(search, shown) for _, search, shown in batch]
        one_by_one = False
        attempt = failures_at_close = 0
        while True:  # until the database takes them: searches are never dropped for an outage
            attempt += 1
            try:
                if one_by_one:
                    self._write_one_by_one(rows)
                else:
                    write_searches(self.engine, rows)
                self._outage.succeeded()
                break
            except (sa.exc.DataError, sa.exc.IntegrityError):
                # A row the database refuses is refused forever: write the batch row by row and
                # drop only that one, instead of blocking every later search behind it.
                one_by_one = True
            except sa.exc.SQLAlchemyError as exc:  # database restarting, locked, ...
                self._outage.failed(exc)
                with self._done:
                    self._failed_attempts += 1
                    self._done.notify_all()
                if self._closed:  # the server is stopping: a few quick tries, then give up
                    failures_at_close += 1
                    if failures_at_close >= CLOSE_ATTEMPTS:
                        return False
                # A flush() (a request waiting) cuts the wait short: it learns at once whether the database is back.
                self._hurry.wait(min(self.retry_seconds * attempt, 0.5 if self._closed else 5.0))
                self._hurry.clear()
        with self._done:
            self._written = batch[-1][0]
            self._done.notify_all()
        return True

    def _write_one_by_one(self, rows: list[tuple[dict, list]]) -> None:
        for row in rows:
            try:
                write_searches(self.engine, [row])
            except (sa.exc.DataError, sa.exc.IntegrityError) as exc:
                log.error("search log: dropped search %s, which the database refuses: %s", row[0]["id"], exc)


def get_search(engine: sa.Engine, search_id: str) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(searches).where(searches.c.id == search_id)).first()
        if row is None:
            return None
        shown = conn.execute(
            sa.select(search_results).where(search_results.c.search_id == search_id).order_by(search_results.c.rank)
        )
        return dict(row._mapping) | {"results": [dict(r._mapping) for r in shown]}


def insert_event(conn: sa.Connection, search: dict, event_type: str, item_type, item_id, requester: dict | None) -> int:
    requester = requester or {}
    result = conn.execute(
        events.insert().values(
            search_id=search["id"],
            type=event_type,
            item_type=item_type,
            item_id=item_id,
            session=search.get("session"),
            created_at=time.time(),
            customer_id=requester.get("customer_id"),
            email=requester.get("email"),
            mrr=requester.get("mrr"),
        )
    )
    return int(result.inserted_primary_key[0])


def add_requester(conn: sa.Connection, event_id: int, requester: dict | None) -> None:
    """Give a stored event that names nobody the requester of a copy of it: a help form may
    report a ticket before the ticketing system reports it again with the customer's email.
    An event that names someone keeps them (fields are never mixed from two people)."""
    if not requester or not (requester.get("customer_id") or requester.get("email")):
        return
    conn.execute(
        events.update()
        .where(events.c.id == event_id, events.c.customer_id.is_(None), events.c.email.is_(None))
        .values(customer_id=requester.get("customer_id"), email=requester.get("email"), mrr=requester.get("mrr"))
    )


def lock_search(conn: sa.Connection, search_id: str) -> None:
    """Hold the search's row until the transaction ends (a no-op on SQLite, whose writers take turns)."""
    conn.execute(sa.select(searches.c.id).where(searches.c.id == search_id).with_for_update())


def same_event(conn: sa.Connection, search_id: str, event_type: str, item_type, item_id) -> int | None:
    """The id of an event already stored with the same search, type and item, if any."""
    return conn.execute(
        sa.select(events.c.id)
        .where(
            events.c.search_id == search_id,
            events.c.type == event_type,
            events.c.item_type.is_(None) if item_type is None else events.c.item_type == item_type,
            events.c.item_id.is_(None) if item_id is None else events.c.item_id == item_id,
        )
        .order_by(events.c.id)
        .limit(1)
    ).scalar()
