"""A running deflect: settings -> embedder, index, engine, store; shared by the CLI and the web app.

The Runtime keeps its engine in step with the database (index versions other processes
built, learned aliases, ideas) and with the KB folder. Building an index without serving it
is deflect.refresh; the rules for events on searches are deflect.feedback.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from .gaps import DEFAULT_GAPS
from .outage import DatabaseProbe, FailureLog
from .redaction import redact
from .refresh import make_embedder, model_id_for, refresh_index
from .scoring import SCORING_VERSION
from .settings import Settings

log = logging.getLogger(__name__)

# Seconds without further alias changes before the calibration is refit in the background.
RECALIBRATE_DELAY = 2.0
# A version recorded in the database but not (yet) in this process's index folder: normal for a
# moment while a builder switches CURRENT, and for good when each machine keeps its own folder.
# Said once per version after this long, so a replica wrongly left on its own folder is noticed.
ABSENT_VERSION_GRACE_SECONDS = 10.0


class Runtime:
    """A running deflect: store, index and engine built from one Settings object."""

    def __init__(self, settings: Settings, progress: bool = False, sync: bool = True):
        from . import db
        from .events import SearchLog
        from .idea_import import seed_ideas
        from .ideas import SUGGESTED_STATUSES, count_ideas, list_ideas
        from .ideas import generation as ideas_generation
        from .suggest import Engine

        self.settings = settings
        self.db = db.make_engine(settings.database_url)
        db.upgrade(self.db)
        ideas_path = settings.ideas_path
        if ideas_path is not None and not ideas_path.exists():
            log.warning("ideas_file %s does not exist; no sample ideas imported", ideas_path)
            ideas_path = None
        seeded = seed_ideas(self.db, ideas_path) if ideas_path is not None else None
        if seeded is not None:
            log.info("imported %d sample ideas from %s", seeded.inserted, ideas_path)
            for problem in seeded.errors + seeded.notes:
                log.warning(problem)
        self._reindex_lock = threading.Lock()
        self._index_listeners: list = []
        self._closers: list = []
        self._watcher = None
        self._skipped_version: str | None = None
        self._absent: tuple[str, float, bool] | None = None  # (version, first seen, said)
        index, report = refresh_index(settings, progress=progress, publish=self._publish)
        self.last_report = report
        self._ideas_generation = ideas_generation(self.db)
        self.engine = Engine(
            make_embedder(settings),
            index,
            list_ideas(self.db, SUGGESTED_STATUSES),
            settings.answer_threshold,
            fallback_locale=settings.default_locale,
        )
        self.search_log = SearchLog(self.db)
        self._ideas_count = count_ideas(self.db)  # what /healthz reports while the database is away
        self._health_probe = DatabaseProbe(lambda: count_ideas(self.db))
        self._sync_failures = FailureLog(log, "sync with the database")
        self._alias_generation = -1
        self._alias_lock = threading.Lock()
        self._ideas_lock = threading.Lock()
        self._recalibrate_after: float | None = None
        self.refresh_aliases(recalibrate=False)
        self._stop = threading.Event()
        self._sync_thread = None
        if sync and settings.sync_interval_seconds > 0:
            self._sync_thread = threading.Thread(target=self._sync_loop, name="deflect-sync", daemon=True)
        stored = index.manifest.get("calibration") or {}
        fitted_alike = (stored.get("target_false_answer"), stored.get("scoring")) == (
            settings.target_false_answer,
            SCORING_VERSION,
        )
        if self.engine.alias_count or not fitted_alike:
            if self._sync_thread is not None:
                self._recalibrate_after = time.monotonic()  # refit in the background, not before serving
            else:
                self.recalibrate()
        if self._sync_thread is not None:
            self._sync_thread.start()

    def _publish(self, version: str) -> None:
        from .replicas import publish_version, published_version

        if published_version(self.db) != version:
            publish_version(self.db, version)

    def watch_kb(self) -> None:
        """Reindex by itself after writers change files in kb_dir (see deflect.watcher)."""
        from .watcher import KBWatcher

        if self._watcher is None:
            self._watcher = KBWatcher(self.settings.kb_dir, self._reindex_after_kb_change).start()

    def _reindex_after_kb_change(self) -> None:
        self.reindex(trigger="a KB change")  # a newly bad file is logged (and skipped) by kb_folder.load_kb

    def on_close(self, closer) -> None:
        """Call `closer()` first when the runtime closes: background work built on it stops before it."""
        self._closers.append(closer)

    def close(self) -> None:
        """Stop what was registered with on_close, the watcher and the sync thread; write every queued search."""
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:  # closing must go on for the rest
                log.warning("closing %r failed", closer, exc_info=True)
        self._closers.clear()
        if self._watcher is not None:
            self._watcher.stop()
        self._stop.set()
        if self._sync_thread is not None:
            self._sync_thread.join(timeout=10)
        self.search_log.close()

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.settings.sync_interval_seconds):
            self.sync_step()

    def sync_step(self) -> None:
        """One tick of the sync loop; a failure (the database may be restarting) is retried next tick
        and logged through a FailureLog: first with its traceback, then a line a minute, then recovery."""
        from .aliases import generation
        from .ideas import generation as ideas_generation

        try:
            self.follow_index()
            if generation(self.db) != self._alias_generation:
                self.refresh_aliases()
            if ideas_generation(self.db) != self._ideas_generation:
                self.reload_ideas()
            due = self._recalibrate_after
            if due is not None and time.monotonic() >= due:
                self._recalibrate_after = None
                self.recalibrate()
        except Exception as exc:
            self._sync_failures.failed(exc)
        else:
            self._sync_failures.succeeded()

    def follow_index(self) -> bool:
        """Load the index version another process built (recorded in the database), if newer.

        Only the shared folder's live version is loaded, and only when it is the recorded
        one, so a process never serves a half-written or superseded build.
        """
        from .index import built_differently
        from .index_folder import current_version_dir, load_index
        from .replicas import published_version

        version = published_version(self.db)
        if not version or version == self.engine.version or version == self._skipped_version:
            return False
        with self._reindex_lock:
            folder = current_version_dir(self.settings.index_dir)
            if version == self.engine.version:
                return False
            if folder is None or folder.name != f"v-{version}":
                self._note_absent(version)  # not in our folder (yet): another machine's folder, or mid-switch
                return False
            index = load_index(self.settings.index_dir)
            if index is None or index.version != version:
                return False
            # Another deflect (an older one still running during an upgrade, or other settings) built
            # it: its passages are not what this one would search, so keep serving ours.
            changed = built_differently(index.manifest, model_id_for(self.settings), self.settings.passage_chars)
            if changed:
                log.warning("index %s was built by another process with a different %s; not loading it", version, changed)
                self._skipped_version = version
                return False
            self._swap(index)
        log.info("loaded index %s built by another process", version)
        return True

    def _note_absent(self, version: str) -> None:
        now = time.monotonic()
        if self._absent is None or self._absent[0] != version:
            self._absent = (version, now, False)
        seen, said = self._absent[1], self._absent[2]
        if not said and now - seen >= ABSENT_VERSION_GRACE_SECONDS:
            self._absent = (version, seen, True)
            log.info(
                "index %s, recorded in the database by another process, is not in %s (serving %s): "
                "fine if each machine keeps its own index folder; replicas sharing one folder "
                "should have found it",
                version, self.settings.index_dir, self.engine.version,
            )  # fmt: skip

    def on_index_change(self, listener) -> None:
        """Call `listener(version)` whenever this process starts serving another index version: its
        own reindex (API, KB watcher) or one another process built (`deflect index`, a replica).
        It runs under the reindex lock, so it must return quickly (hand work to a thread)."""
        self._index_listeners.append(listener)

    def _swap(self, index) -> None:
        removed = {a["id"] for a in self.engine.index.articles} - {a["id"] for a in index.articles}
        self.engine.replace_index(index)
        if removed:
            self._warn_stranded_aliases(index, removed)
        if self.engine.alias_count:
            self.recalibrate()
        for listener in list(self._index_listeners):
            try:
                listener(index.version)
            except Exception:  # a listener's failure must not undo the swap
                log.warning("index change listener failed", exc_info=True)

    def stranded_aliases(self) -> str | None:
        """The warning about learned aliases whose articles the served index lacks, or None."""
        from .aliases import stranded_by

        return stranded_by(self.db, {a["id"] for a in self.engine.index.articles})

    def _warn_stranded_aliases(self, index, removed: set[str]) -> None:
        from .aliases import stranded_by

        try:
            warning = stranded_by(self.db, {a["id"] for a in index.articles}, among=removed)
        except Exception as exc:  # the database away: the swap stands, the warning waits for `deflect index`
            log.info("could not check learned aliases of removed articles: %s", exc)
            return
        if warning:
            log.warning("index %s: %s", index.version, warning)

    def refresh_aliases(self, recalibrate: bool = True) -> int:
        """Load the active learned aliases from the database into the engine (used at once).

        The answered-calibration is refit with them shortly after, in the background,
        once changes have settled (RECALIBRATE_DELAY seconds without another change).
        """
        from .aliases import active_vectors, generation

        with self._alias_lock:
            current = generation(self.db)
            rows = active_vectors(self.db, model_id_for(self.settings), self.engine.embedder.encode)
            self.engine.set_aliases(rows)
            self._alias_generation = current
        if recalibrate:
            self._recalibrate_after = time.monotonic() + RECALIBRATE_DELAY
        return len(rows)

    def suggest(
        self,
        query: str,
        k: int = 5,
        types: tuple[str, ...] = ("article", "idea"),
        locale: str | None = None,
        session: str | None = None,
        record: bool = True,
    ) -> dict:
        """Answer a query; the search is logged unless record=False (benchmarks of the logging cost)."""
        suggestion = self.engine.suggest(query, k=k, types=types, locale=locale)
        results = [r.to_dict() for r in suggestion.results]
        stored = redact(query) if self.settings.redact_personal_data else query
        search_id = (
            self.search_log.record(stored, session, locale, suggestion.answered, results, self.engine.version)
            if record
            else None
        )
        return {"search_id": search_id, "answered": suggestion.answered, "results": results}

    def record_event(
        self,
        search_id: str,
        event_type: str,
        item_id: str | None = None,
        item_type: str | None = None,
        requester: dict | None = None,
        client: str | None = None,
    ) -> dict:
        """Store one event (committed before this returns); a helpful one may teach an alias (deflect.feedback)."""
        from .feedback import record_event

        return record_event(self, search_id, event_type, item_id, item_type, requester, client)

    def recalibrate(self) -> None:
        """Refit the answered-probability with the learned aliases as real example queries."""
        from .calibration import fit_calibration

        engine = self.engine
        calibration = fit_calibration(
            engine.index,
            engine.embedder,
            aliases=engine.alias_rows,
            target_false_answer=self.settings.target_false_answer,
            answer_threshold=self.settings.answer_threshold,
        )
        engine.set_calibration(calibration)

    def aliases(self, active: bool | None = None) -> list[dict]:
        from .aliases import list_aliases, mark_in_use

        engine = self.engine
        return mark_in_use(list_aliases(self.db, active), set(engine.articles.position), set(engine.ideas.position))

    def delete_alias(self, alias_id: int) -> bool:
        from .aliases import delete_alias
        from .db import writing

        with writing(self.db) as conn:
            deleted = delete_alias(conn, alias_id)
        if deleted:
            self.refresh_aliases()
        return deleted

    def metrics(self, since: float | None = None, until: float | None = None, gaps: int = DEFAULT_GAPS) -> dict:
        """DESIGN section 6 metrics, with titles added to the per-item rows."""
        from .ideas import list_ideas
        from .metrics import add_titles, compute_metrics

        self.search_log.flush()
        report = compute_metrics(self.db, since, until, self.settings.assumed_window_seconds, gaps=gaps)
        add_titles(
            report,
            {a["id"]: a["title"] for a in self.engine.index.articles},
            {i["id"]: i["title"] for i in list_ideas(self.db)},
        )
        return report

    def reindex(self, progress: bool = False, trigger: str = "a request"):
        """Re-embed changed articles and swap the new index in while requests keep flowing.

        The new version is recorded in the database, so every other process sharing the
        index folder loads it within sync_interval_seconds. One INFO line says what
        changed and how long it took, so an operator can follow writers' edits in the log.
        """
        with self._reindex_lock:
            started = time.monotonic()
            index, report = refresh_index(self.settings, progress=progress, publish=self._publish)
            if index.version != self.engine.version:  # ours, or one another process built meanwhile
                self._swap(index)
            self.last_report = report
            seconds = time.monotonic() - started
        log.info("reindex after %s took %.1f s: %s", trigger, seconds, report.summary())
        return report

    def reload_ideas(self) -> None:
        """Suggest the ideas as the store has them now (after a change here or in another process)."""
        from .ideas import SUGGESTED_STATUSES, generation, list_ideas

        with self._ideas_lock:
            current = generation(self.db)
            self.engine.set_ideas(list_ideas(self.db, SUGGESTED_STATUSES))
            self._ideas_generation = current

    def articles(self) -> list[dict]:
        return [
            {k: a[k] for k in ("id", "title", "url", "locale", "tags")} for a in self.engine.index.articles
        ]

    def article(self, article_id: str) -> dict | None:
        """One article with its HTML, relative links and images resolved against the version served now."""
        from .article_html import render_html
        from .links import LinkTargets

        index = self.engine.index
        meta = next((a for a in index.articles if a["id"] == article_id), None)
        if meta is None:
            return None
        body = index.bodies.get(article_id, "")
        targets = _once_per_version(index, "link_targets", lambda: LinkTargets(index.articles, self.settings.kb_dir))
        from .passages import without_hidden_html

        return {k: meta[k] for k in ("id", "title", "url", "locale", "tags")} | {
            # Public, as the page is: without what the page never shows (a writer's <!-- notes -->).
            "markdown": without_hidden_html(body),
            "html": render_html(body, targets.rewriter(meta.get("path", "")), self.settings.article_raw_html),
        }

    def shows_image(self, path: str) -> bool:
        """Whether an article of the version served now shows (or links to) the image at `path`."""
        from .links import shown_images

        index = self.engine.index
        return path in _once_per_version(index, "shown_images", lambda: shown_images(index.articles, index.bodies))

    def health(self) -> dict:
        """DESIGN's health keys plus `database` and `kb`. With the database out of reach or the KB
        folder gone this still answers (status "degraded", the last ideas count seen): the process
        can go on suggesting from the version it serves, but an operator must hear of it."""
        count = self._health_probe.run()
        database = "ok" if count is not None else "unavailable"
        if count is not None:
            self._ideas_count = count
        kb = "ok" if Path(self.settings.kb_dir).is_dir() else "missing"
        return {
            "status": "ok" if database == "ok" and kb == "ok" else "degraded",
            "articles": len(self.engine.index.articles),
            "ideas": self._ideas_count,
            "index_version": self.engine.version,
            "aliases": self.engine.alias_count,
            "database": database,
            "kb": kb,
        }


def _once_per_version(index, key: str, build):
    """What `build()` gives for this index version, built on first use and kept with the version."""
    value = index.derived.get(key)
    if value is None:
        value = index.derived[key] = build()
    return value
