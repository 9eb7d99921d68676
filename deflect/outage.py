"""The database out of reach for a while (a restart, a failover, a network cut).

Requests that need the database then fail fast and say so (the web layer answers 503 with
Retry-After, see deflect.web.errors); searches keep being answered and wait in memory
(deflect.events.SearchLog). Background loops that keep retrying log through FailureLog, so
an outage gives a handful of log lines instead of a traceback every second.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import sqlalchemy as sa

# What a 503 tells clients (Retry-After, seconds): about how long a database restart takes.
RETRY_AFTER_SECONDS = 5

# SQLite reports a busy or unreachable file as OperationalError, like a mistake in a query
# ("no such table"); only these messages mean "try again shortly".
_SQLITE_TRANSIENT = (
    "database is locked",
    "database table is locked",
    "database is busy",
    "unable to open database",
    "disk i/o error",
)


class DatabaseUnavailable(Exception):
    """The database could not be reached in time for this request; retrying shortly may work."""


def is_database_unavailable(exc: BaseException | None) -> bool:
    """True for errors that mean "the database is out of reach (or busy) for now", not a bug.

    PostgreSQL: every OperationalError (connection refused or lost, server shutting down or
    starting, ...) and InterfaceError; any driver error that invalidated its connection; the
    pool's checkout timeout. SQLite: "database is locked"-style errors only.
    """
    for _ in range(5):  # an explicit `raise ... from exc` chain, not every context
        if exc is None:
            return False
        if isinstance(exc, (DatabaseUnavailable, sa.exc.DisconnectionError, sa.exc.TimeoutError)):
            return True
        if isinstance(exc, sa.exc.DBAPIError):
            if exc.connection_invalidated or isinstance(exc, sa.exc.InterfaceError):
                return True
            if isinstance(exc, sa.exc.OperationalError):
                if type(exc.orig).__module__.startswith("sqlite3"):
                    return any(text in str(exc.orig).lower() for text in _SQLITE_TRANSIENT)
                return not is_misconfigured(exc)
            return False
        exc = exc.__cause__
    return False


# PostgreSQL refusing who or what deflect asks for (a rotated password, a dropped database):
# retrying will not help, so it is an error to fix, not an outage to wait out.
_MISCONFIGURED_SQLSTATE_CLASSES = ("28", "3D")  # invalid authorization; invalid catalog (database) name


def is_misconfigured(exc: sa.exc.DBAPIError) -> bool:
    """True when the server refused deflect's credentials or database name."""
    state = getattr(exc.orig, "sqlstate", None) or ""
    if state[:2] in _MISCONFIGURED_SQLSTATE_CLASSES:
        return True
    text = str(exc.orig).lower()  # a refused connection often carries no sqlstate, only the server's words
    if "password authentication failed" in text or "no pg_hba.conf entry" in text:
        return True
    return ("role \"" in text or "database \"" in text) and "does not exist" in text


def short_reason(exc: BaseException) -> str:
    """The driver's first line about `exc`, without SQL, parameters or links."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return (lines[0] if lines else type(orig).__name__)[:300]


class LoggedDatabaseError(Exception):
    """A database error as the log shows it: its traceback, and its first line only."""


def log_failure(logger: logging.Logger, level: int, message: str, exc: BaseException) -> None:
    """`message` with the exception's traceback. A database error's own text is cut to its first
    line: PostgreSQL's DETAIL can quote a row ("Failing row contains (...)", "Key (...)=(...)"),
    that is someone's question or email, and the log must hold none (SQL parameters are already
    hidden: db.make_engine's hide_parameters)."""
    if isinstance(exc, sa.exc.DBAPIError):
        orig = getattr(exc, "orig", None) or exc
        exc = LoggedDatabaseError(f"{type(orig).__name__}: {short_reason(exc)}").with_traceback(exc.__traceback__)
    logger.log(level, message, exc_info=exc)


class FailureLog:
    """Log a failure that repeats while a loop retries: the first one with its traceback, then
    at most one short line per `interval` seconds while it goes on, and one INFO line once the
    loop works again. One instance per loop (it is not shared between threads)."""

    def __init__(self, logger: logging.Logger, what: str, interval: float = 60.0, clock=time.monotonic):
        self.logger, self.what, self.interval, self.clock = logger, what, interval, clock
        self.failing_since: float | None = None
        self.failures = 0
        self._last_line = 0.0

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def failed(self, exc: BaseException) -> None:
        now = self.clock()
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = self._last_line = now
            log_failure(self.logger, logging.WARNING, f"{self.what} failed", exc)
        elif now - self._last_line >= self.interval:
            self._last_line = now
            self.logger.warning(
                "%s still failing after %.0f s (failed attempts: %d): %s",
                self.what, now - self.failing_since, self.failures, short_reason(exc),
            )

    def succeeded(self) -> None:
        if self.failing_since is not None:
            self.logger.info(
                "%s works again after %.0f s (failed attempts: %d)",
                self.what, self.clock() - self.failing_since, self.failures,
            )
            self.failing_since = None
            self.failures = 0


# How long /healthz waits for the database before it answers "degraded": a load balancer's
# probe often gives up after 2-5 s, and this process can still suggest without the database.
HEALTH_WAIT_SECONDS = 2.0


class DatabaseProbe:
    """Runs a small query for /healthz in a thread of its own and waits at most `wait` seconds.

    On a cut network a query can hang for up to deflect.db's TCP timeout (15 s); health then
    answers "unavailable" after `wait` instead, and while that query still hangs no other is
    started, so probes never pile up threads."""

    def __init__(self, query):
        self.query = query
        self._lock = threading.Lock()
        self._running: Future | None = None

    def run(self, wait: float = HEALTH_WAIT_SECONDS):
        """The query's result, or None if the database is out of reach or slower than `wait`.
        Any other error (a bug, a refused login) is raised, as if the query ran here."""
        with self._lock:
            if self._running is None or self._running.done():
                self._running = Future()
                threading.Thread(target=self._run, args=(self._running,), name="deflect-health-probe", daemon=True).start()
            running = self._running
        try:
            return running.result(timeout=wait)
        except FutureTimeout:
            return None
        except Exception as exc:
            if is_database_unavailable(exc):
                return None
            raise

    def _run(self, future: Future) -> None:
        try:
            future.set_result(self.query())
        except BaseException as exc:  # handed to the waiting request
            future.set_exception(exc)
