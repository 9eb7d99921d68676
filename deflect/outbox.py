"""The outbox: notifications to requesters, stored first, then delivered to a webhook.

A notification is written in the same transaction as the change that causes it (an idea
shipped, an article published that answers a candidate), so none is lost when the server
stops. A delivery worker POSTs each pending row to `webhook_url` and retries failures with
exponential backoff until `webhook_max_attempts`; rows are claimed with a conditional
UPDATE, so several server processes can share one outbox without sending twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request

import sqlalchemy as sa

from .db import metadata, writing
from .outage import FailureLog

log = logging.getLogger(__name__)

STATUSES = ("pending", "delivered", "failed")
CLAIM_SECONDS = 120.0  # a claimed row is retried by anyone after this (a worker died mid-send)
MAX_BACKOFF_SECONDS = 3600.0

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("dedupe_key", sa.String(500), nullable=False, unique=True),
    sa.Column("customer_id", sa.String(200), nullable=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Index("ix_outbox_status_next", "status", "next_attempt_at"),  # the due scan (migration 0003)
)


# deflect.erasure replaces a forgotten requester's email and customer id with a pseudonym of this
# form: one per requester, so their votes still count once and their MRR still adds up.
PSEUDONYM_PREFIX = "erased-"


def is_pseudonym(requester: dict) -> bool:
    """A forgotten requester: nobody to notify."""
    return not requester.get("email") and str(requester.get("customer_id") or "").startswith(PSEUDONYM_PREFIX)


def requester_key(requester: dict) -> str:
    """One requester, however many times they asked: by customer id, else by email."""
    if requester.get("customer_id"):
        return f"customer:{requester['customer_id']}"
    return f"email:{(requester.get('email') or '').lower()}"


def enqueue(conn: sa.Connection, kind: str, subject: str, requester: dict, payload: dict) -> bool:
    """Add one notification for one requester unless the same (kind, subject, requester) is there
    already, or the requester was forgotten."""
    if is_pseudonym(requester):
        return False
    key = f"{kind}:{subject}:{requester_key(requester)}"[:500]
    exists = conn.execute(sa.select(outbox.c.id).where(outbox.c.dedupe_key == key)).first()
    if exists:
        return False
    now = time.time()
    body = {"kind": kind, "requester": {k: requester.get(k) for k in ("customer_id", "email", "mrr")}} | payload
    conn.execute(
        outbox.insert().values(
            kind=kind,
            dedupe_key=key,
            customer_id=requester.get("customer_id"),
            email=requester.get("email"),
            payload=json.dumps(body, ensure_ascii=False),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    return True


def _row(row) -> dict:
    out = dict(row._mapping)
    out["payload"] = json.loads(out["payload"])
    return out


def list_outbox(engine: sa.Engine, status: str | None = None, limit: int = 200, after_id: int | None = None) -> dict:
    """Notifications with their delivery state, and counts per state: the most recent `limit`, or,
    with `after_id` (a mailer polling), the first `limit` after that id, oldest first."""
    query = sa.select(outbox).limit(limit)
    if after_id is None:
        query = query.order_by(outbox.c.id.desc())
    else:
        query = query.where(outbox.c.id > after_id).order_by(outbox.c.id)
    if status:
        query = query.where(outbox.c.status == status)
    with engine.connect() as conn:
        rows = [_row(r) for r in conn.execute(query)]
        counts = dict(conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all())
    return {"counts": {s: int(counts.get(s, 0)) for s in STATUSES}, "notifications": rows}


def mark_delivered(engine: sa.Engine, notification_id: int) -> dict | None:
    """A notification your own mailer sent (read from GET /api/outbox rather than by webhook):
    delivered now, never sent by deflect. Marking one delivered already changes nothing, so a
    poller may repeat itself. None when there is no such notification."""
    with writing(engine) as conn:
        row = conn.execute(sa.select(outbox).where(outbox.c.id == notification_id)).first()
        if row is None:
            return None
        if row.status != "delivered":
            conn.execute(
                outbox.update()
                .where(outbox.c.id == notification_id)
                .values(status="delivered", delivered_at=time.time(), last_error=None)
            )
        return _row(conn.execute(sa.select(outbox).where(outbox.c.id == notification_id)).first())


class OutboxConflict(ValueError):
    """A retry of a notification that was delivered already."""


def retry(engine: sa.Engine, notification_id: int) -> dict | None:
    """Send a failed (or pending) notification again now, with a fresh attempt budget.

    None when there is no such notification; OutboxConflict when it was delivered already
    (it is not sent twice).
    """
    with writing(engine) as conn:
        row = conn.execute(sa.select(outbox).where(outbox.c.id == notification_id)).first()
        if row is None:
            return None
        if row.status == "delivered":
            raise OutboxConflict(f"notification {notification_id} was delivered already; it is not sent again")
        conn.execute(
            outbox.update().where(outbox.c.id == notification_id).values(
                status="pending", attempts=0, next_attempt_at=time.time()
            )
        )
        return _row(conn.execute(sa.select(outbox).where(outbox.c.id == notification_id)).first())


def backoff_seconds(attempts: int, base: float) -> float:
    """Wait before attempt `attempts + 1`: base, 2 base, 4 base, ... capped at an hour."""
    return min(base * (2 ** max(attempts - 1, 0)), MAX_BACKOFF_SECONDS)


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a delivery: urllib would re-send a POST as a GET without its
    body (and with the signature header) to wherever the receiver points; the 3xx is counted as a
    failure instead, so a moved webhook shows up in the log and the outbox."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post_json(url: str, body: bytes, headers: dict, timeout: float) -> int:
    """POST and return the HTTP status (raises OSError on a network failure); redirects are not followed."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:  # noqa: S310 (admin-configured URL)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def deliver_due(engine: sa.Engine, settings, now: float | None = None, limit: int = 50) -> dict:
    """One delivery pass: send every due pending notification once. Returns counts."""
    url = settings.webhook_url
    result = {"delivered": 0, "retrying": 0, "failed": 0}
    if not url:
        return result
    now = time.time() if now is None else now
    with engine.connect() as conn:
        due = conn.execute(
            sa.select(outbox.c.id, outbox.c.next_attempt_at)
            .where(outbox.c.status == "pending", outbox.c.next_attempt_at <= now)
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(limit)
        ).all()
    for notification_id, due_at in due:
        with writing(engine) as conn:  # claim: only one worker wins the row
            claimed = conn.execute(
                outbox.update()
                .where(outbox.c.id == notification_id, outbox.c.status == "pending", outbox.c.next_attempt_at == due_at)
                .values(next_attempt_at=now + CLAIM_SECONDS)
            ).rowcount
            row = conn.execute(sa.select(outbox).where(outbox.c.id == notification_id)).first() if claimed else None
        if row is None:
            continue
        payload = json.loads(row.payload) | {"id": row.id, "created_at": row.created_at}
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "deflect-webhook",
                   "X-Deflect-Event": row.kind, "X-Deflect-Delivery": str(row.id)}
        if settings.webhook_secret:
            headers["X-Deflect-Signature"] = sign(body, settings.webhook_secret)
        code, error = None, None
        try:
            code = post_json(url, body, headers, settings.webhook_timeout_seconds)
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = row.attempts + 1
        if error is None:
            values = {"status": "delivered", "delivered_at": time.time(), "last_error": None}
            result["delivered"] += 1
        elif attempts >= settings.webhook_max_attempts:
            values = {"status": "failed", "last_error": error}
            result["failed"] += 1
            log.warning("webhook: notification %s failed for good after %d attempts: %s", row.id, attempts, error)
        else:
            wait = backoff_seconds(attempts, settings.webhook_backoff_seconds)
            values = {"next_attempt_at": time.time() + wait, "last_error": error}
            result["retrying"] += 1
            # The first failure is said at once (a wrong URL or secret should not wait for the last
            # attempt, hours later, to be noticed); the retries after it only at INFO.
            (log.warning if attempts == 1 else log.info)(
                "webhook: notification %s attempt %d of %d failed: %s; next try in %.0f s",
                row.id, attempts, settings.webhook_max_attempts, error, wait,
            )  # fmt: skip
        with writing(engine) as conn:
            # Only while still pending: a mailer of your own may have marked it delivered meanwhile.
            conn.execute(outbox.update().where(outbox.c.id == row.id, outbox.c.status == "pending")
                         .values(attempts=attempts, last_status_code=code, **values))
    return result


class OutboxWorker:
    """Background delivery loop of one server process (started when webhook_url is set)."""

    def __init__(self, engine: sa.Engine, settings, interval: float = 1.0, tick=None):
        self.engine, self.settings, self.interval, self.tick = engine, settings, interval, tick
        self._stop = threading.Event()
        self._failures = FailureLog(log, "outbox pass")  # one line a minute while the database is away
        self._thread = threading.Thread(target=self._run, name="deflect-outbox", daemon=True)

    def start(self) -> OutboxWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.tick is not None:
                    self.tick()
                deliver_due(self.engine, self.settings)
            except Exception as exc:  # the database may be restarting; the rows wait for the next pass
                self._failures.failed(exc)
            else:
                self._failures.succeeded()
