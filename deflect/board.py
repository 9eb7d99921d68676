"""The product board wired to a running deflect: ideas and idea candidates, with the index,
the search log and the outbox kept in step (used by the web API and the CLI alike)."""

from __future__ import annotations

import logging
import threading

import numpy as np

from . import candidate_views, ideas, review, votes
from . import candidates as cand
from .db import writing
from .gaps import DEFAULT_GAPS
from .outage import FailureLog, is_database_unavailable
from .refresh import model_id_for
from .runtime import Runtime

log = logging.getLogger(__name__)
RETRY_CHECK_SECONDS = 30.0
# A running server lets new unanswered questions join their candidate at least this often, so
# content gaps read without one (`deflect metrics`, another replica) are at most this far behind.
JOIN_EVERY_SECONDS = 60.0


class Board:
    """Every board action for one Runtime. Idea changes are re-indexed before returning."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.db = runtime.db
        self.settings = runtime.settings
        # Re-entrant: a rebuild holds it through the answered check, which takes it per candidate.
        self._rebuild_lock = threading.RLock()
        self._index_changed = threading.Event()
        self._stop = threading.Event()
        self._checker: threading.Thread | None = None

    # --- plumbing ------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return model_id_for(self.settings)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.runtime.engine.embedder.encode(texts)

    def nearest(self, label: str, vector: np.ndarray) -> dict | None:
        """The closest existing idea or article to a candidate (merge hint)."""
        top = self.runtime.engine.suggest(label, k=1, query_vector=np.asarray(vector, dtype=np.float32)).results
        if not top:
            return None
        r = top[0]
        return {"type": r.type, "id": r.id, "title": r.title, "score": round(float(r.score), 4)}

    def answers(self, vectors: np.ndarray, texts: list[str]) -> list[tuple[str | None, bool]]:
        """(top article, answered) per question, as a help form showing articles and ideas answers it:
        while an idea (say the one promoted from these questions) still comes first, no article
        answers them yet, and "an article now answers you" would not be true."""
        out = []
        for text, vector in zip(texts, vectors):
            s = self.runtime.engine.suggest(text, k=1, types=("article", "idea"), query_vector=vector)
            top = s.results[0] if s.results else None
            out.append((top.id, bool(s.answered)) if top is not None and top.type == "article" else (None, False))
        return out

    def _flush(self) -> None:
        log = getattr(self.runtime, "search_log", None)
        if log is not None:
            log.flush()

    # --- candidates ----------------------------------------------------------------------

    def rebuild(self) -> dict:
        self._flush()
        with self._rebuild_lock:
            summary = cand.rebuild(self.db, self.encode, self.model_id, self.settings)
            summary["requesters_added"] = self._sync_requesters()
            summary["notifications"] = self.check_answered()
        return summary

    def sync(self) -> int:
        """New pool searches join their nearest candidate (cheap; run before every read). Where no
        background check follows index changes (a command, not a server), candidates an article
        now answers are found here too."""
        self._flush()
        with self._rebuild_lock:
            joined = self._join_locked()
        if self._checker is None:
            self.check_answered()
        return joined

    def join(self) -> int:
        """New pool searches join their nearest candidate, their requesters reach reviewed ideas
        (content gaps and metrics read the memberships this leaves)."""
        self._flush()
        with self._rebuild_lock:
            return self._join_locked()

    def _join_locked(self) -> int:
        joined = cand.join_new(self.db, self.encode, self.model_id)
        self._sync_requesters()
        return joined

    def metrics(self, since: float | None = None, until: float | None = None, gaps: int = DEFAULT_GAPS) -> dict:
        """Runtime.metrics, with new unanswered questions first joined to their candidates, so the
        content gaps group them as /api/clusters would. A failed join leaves the groups as they
        are (the figures do not depend on it); a database outage fails the metrics too (503)."""
        try:
            self.join()
        except Exception as exc:
            if is_database_unavailable(exc):
                raise
            log.warning("new unanswered questions could not join their candidates before the metrics", exc_info=True)
        return self.runtime.metrics(since, until, gaps)

    def _sync_requesters(self) -> int:
        return review.sync_requesters(self.db)

    def check_answered(self) -> int:
        """Candidates an article of the index served now answers (review.check_answered). The lock
        is taken per candidate: with hundreds of candidates the check takes a minute or more, and
        the dashboard's metrics and candidate list must not wait for all of it."""
        index = self.runtime.engine.index
        changed = index.manifest.get("changed_at", {})
        changed_at = {a["id"]: changed.get(a["path"]) for a in index.articles}
        named = {a["id"]: {"title": a["title"], "url": a["url"]} for a in index.articles}
        return review.check_answered(self.db, index.version, self.answers, self.encode, self.model_id, changed_at,
                                     hold=lambda: self._rebuild_lock, articles=named)

    # --- closing the loop after index changes -------------------------------------------------

    def watch_index(self) -> None:
        """Check for candidates a published article now answers after every index change of this
        process (its own reindex, the KB watcher's, or a version another process built), in a
        background thread, and once now (the index may have changed while no server ran).

        This fills the outbox whether or not a webhook is configured; `deflect outbox deliver`
        or the webhook worker delivers from there.
        """
        if self._checker is not None:
            return
        self._checker = threading.Thread(target=self._check_loop, name="deflect-answered-check", daemon=True)
        self.runtime.on_index_change(lambda _version: self._index_changed.set())
        self._index_changed.set()
        self._checker.start()

    def _check_loop(self) -> None:
        # An outage is logged once with its traceback, then a line a minute, not every retry.
        failures = FailureLog(log, "checking candidates against the new index")
        while True:
            changed = self._index_changed.wait(JOIN_EVERY_SECONDS)
            if self._stop.is_set():
                return
            self._index_changed.clear()  # a change during the pass below brings another pass
            try:
                if not changed:
                    self.join()
                    continue
                queued = self.check_answered()  # takes the lock per candidate
                failures.succeeded()
                if queued:
                    log.info("index %s answers candidates: %d notifications queued", self.runtime.engine.version, queued)
            except Exception as exc:  # the database may be restarting: try again in a while
                failures.failed(exc)
                if not self._stop.wait(RETRY_CHECK_SECONDS):
                    self._index_changed.set()

    def close(self) -> None:
        """Stop the background check (see watch_index)."""
        self._stop.set()
        self._index_changed.set()
        if self._checker is not None:
            self._checker.join(timeout=30)

    def candidates(self, status: str | None = None) -> list[dict]:
        self.sync()
        return candidate_views.list_candidates(self.db, status, self.nearest)

    def candidate(self, candidate_id: str) -> dict | None:
        self.sync()
        return candidate_views.get_candidate(self.db, candidate_id, self.nearest)

    def promote(
        self, candidate_id: str, title: str | None = None, description: str | None = None, exclude: tuple[str, ...] = ()
    ) -> dict:
        return self._reviewed(review.promote(self.db, candidate_id, title, description, exclude))

    def merge(self, candidate_id: str, idea_id, exclude: tuple[str, ...] = ()) -> dict:
        return self._reviewed(review.merge(self.db, candidate_id, idea_id, exclude))

    def _reviewed(self, out: dict) -> dict:
        """Serve the idea and the aliases the decision taught at once in this process (others
        follow the bumped generations within sync_interval_seconds)."""
        self.runtime.reload_ideas()
        if out.get("aliases_added"):
            self.runtime.refresh_aliases()  # encodes the new aliases (stored NULL) and stores their vectors
        return out

    def dismiss(self, candidate_id: str) -> dict:
        return review.dismiss(self.db, candidate_id)

    # --- ideas -----------------------------------------------------------------------------

    def ideas(self, statuses: tuple[str, ...] | None = None) -> list[dict]:
        return ideas.list_ideas(self.db, statuses)

    def create_idea(self, data: dict) -> dict:
        with writing(self.db) as conn:
            idea = ideas.create_idea(conn, data)
            idea = votes.with_requesters(conn, idea)
        self.runtime.reload_ideas()
        return idea

    def update_idea(self, idea_id: str, patch: dict) -> dict:
        with writing(self.db) as conn:
            idea, notified = ideas.update_idea(conn, idea_id, patch)
            idea = votes.with_requesters(conn, idea)
        self.runtime.reload_ideas()
        if patch.get("merged_into"):  # its aliases moved to the target: used at once, as a review's are
            self.runtime.refresh_aliases()
        return idea | {"notifications_queued": len(notified)}

    def requesters(self, idea_id: str) -> dict | None:
        self._sync_requesters()  # late askers of its reviewed candidates count already
        with self.db.connect() as conn:
            return votes.idea_requesters(conn, idea_id)

    def vote(self, idea_id: str, requester: dict | None = None, trusted: bool = False) -> dict:
        """`trusted`: sent with the admin token, so a repeat vote may update the requester's details."""
        with writing(self.db) as conn:
            return votes.vote(conn, idea_id, requester, update_known=trusted)
