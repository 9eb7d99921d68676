"""Wiring shared by the CLI and the web app: settings -> embedder, index, engine, store."""

from __future__ import annotations

import logging
import threading
import time

from .settings import Settings

log = logging.getLogger(__name__)

# Seconds without further alias changes before the calibration is refit in the background.
RECALIBRATE_DELAY = 2.0

_EMBEDDERS: dict[tuple, object] = {}


def make_embedder(settings: Settings):
    """One embedder (and model in memory) per model, batch size and backend in a process.

    The ONNX export is cached under <index_dir>/onnx when that folder (or its parent)
    exists, else it is redone in a temporary folder once per process.
    """
    from pathlib import Path

    from .embedder import Embedder

    key = (settings.model_name, settings.encode_batch_size, settings.embed_backend, settings.query_cache_size)
    if key not in _EMBEDDERS:
        index_dir = Path(settings.index_dir)
        cache_dir = index_dir / "onnx" if index_dir.exists() or index_dir.parent.exists() else None
        _EMBEDDERS[key] = Embedder(
            settings.model_name,
            settings.encode_batch_size,
            backend=settings.embed_backend,
            cache_dir=cache_dir,
            query_cache_size=settings.query_cache_size,
        )
    return _EMBEDDERS[key]


def model_id_for(settings: Settings) -> str:
    from .embedder import INT8_BLOCK
    from .index import model_identity

    identity = model_identity(settings.model_name, is_default=not settings.model)
    # int8 vectors differ (slightly) from the float model's and from another quantisation's:
    # never mix them in one index.
    return identity + f"+int8-b{INT8_BLOCK}" if settings.embed_backend == "onnx-int8" else identity


def refresh_index(settings: Settings, progress: bool = False, publish=None):
    """Bring the index up to date with the KB (embedding only what changed).

    Builds hold the index folder's lock, so processes sharing the folder take turns and
    each one starts from the version the previous one saved. `publish(version)` runs
    before the lock is released, so the version recorded last is always the live one.
    """
    from .index import build_index
    from .replicas import build_lock
    from .suggest import fit_calibration

    embedder = make_embedder(settings)
    with build_lock(settings.index_dir):
        index, report = build_index(
            settings.kb_dir,
            settings.index_dir,
            embedder,
            model_id_for(settings),
            settings.default_locale,
            settings.passage_chars,
            progress=progress,
            calibrate=lambda idx: fit_calibration(
                idx, embedder, target_false_answer=settings.target_false_answer, answer_threshold=settings.answer_threshold
            ),
        )
        if publish is not None:
            publish(index.version)
    return index, report


def publish_index(settings: Settings, version: str) -> None:
    """Record a version built outside a server (`deflect index`) so running servers load it."""
    from . import db
    from .replicas import publish_version

    engine = db.make_engine(settings.database_url)
    try:
        db.upgrade(engine)
        publish_version(engine, version)
    finally:
        engine.dispose()


class Runtime:
    """A running deflect: store, index and engine built from one Settings object."""

    def __init__(self, settings: Settings, progress: bool = False, sync: bool = True):
        from . import db
        from .events import SearchLog
        from .ideas import SUGGESTED_STATUSES, list_ideas, seed_ideas
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
            inserted, _, errors = seeded
            log.info("imported %d sample ideas from %s", inserted, ideas_path)
            for error in errors:
                log.warning(error)
        self._reindex_lock = threading.Lock()
        self._index_listeners: list = []
        self._closers: list = []
        self._watcher = None
        self._skipped_version: str | None = None
        index, report = refresh_index(settings, progress=progress, publish=self._publish)
        self.last_report = report
        self._ideas_generation = ideas_generation(self.db)
        self.engine = Engine(
            make_embedder(settings),
            index,
            list_ideas(self.db, SUGGESTED_STATUSES),
            settings.answer_threshold,
        )
        self.search_log = SearchLog(self.db)
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
        if self.engine.alias_count or stored.get("target_false_answer") != settings.target_false_answer:
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
        self.reindex(trigger="a KB change")  # a newly bad file is logged (and skipped) by articles.load_kb

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
        from .aliases import generation
        from .ideas import generation as ideas_generation

        while not self._stop.wait(self.settings.sync_interval_seconds):
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
            except Exception:  # the database may be restarting; try again next tick
                log.warning("sync with the database failed", exc_info=True)

    def follow_index(self) -> bool:
        """Load the index version another process built (recorded in the database), if newer.

        Only the shared folder's live version is loaded, and only when it is the recorded
        one, so a process never serves a half-written or superseded build.
        """
        from .index import current_version_dir, load_index
        from .replicas import published_version

        version = published_version(self.db)
        if not version or version == self.engine.version or version == self._skipped_version:
            return False
        with self._reindex_lock:
            folder = current_version_dir(self.settings.index_dir)
            if folder is None or folder.name != f"v-{version}" or version == self.engine.version:
                return False  # not in our folder (yet): another machine's folder, or mid-switch
            index = load_index(self.settings.index_dir)
            if index is None or index.version != version:
                return False
            if index.manifest.get("model") != model_id_for(self.settings):
                log.warning("index %s was built with %s; not loading it", version, index.manifest.get("model"))
                self._skipped_version = version
                return False
            self._swap(index)
        log.info("loaded index %s built by another process", version)
        return True

    def on_index_change(self, listener) -> None:
        """Call `listener(version)` whenever this process starts serving another index version: its
        own reindex (API, KB watcher) or one another process built (`deflect index`, a replica).
        It runs under the reindex lock, so it must return quickly (hand work to a thread)."""
        self._index_listeners.append(listener)

    def _swap(self, index) -> None:
        self.engine.replace_index(index)
        if self.engine.alias_count:
            self.recalibrate()
        for listener in list(self._index_listeners):
            try:
                listener(index.version)
            except Exception:  # a listener's failure must not undo the swap
                log.warning("index change listener failed", exc_info=True)

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
        search_id = (
            self.search_log.record(query, session, locale, suggestion.answered, results, self.engine.version)
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
        """Store one event (committed before this returns); a helpful one may teach an alias."""
        from . import aliases
        from .db import writing
        from .events import ITEM_EVENT_TYPES, WRITE_GRACE_SECONDS, EventError, get_search, insert_event, search_age
        from .ideas import IdeaError, IdeaNotFound, show_id, vote

        search = get_search(self.db, search_id)
        if search is None:  # it may still be queued in this process's background writer...
            self.search_log.flush()
            search = get_search(self.db, search_id)
        age = search_age(search_id)
        while search is None and age is not None and -WRITE_GRACE_SECONDS < age < WRITE_GRACE_SECONDS:
            time.sleep(0.05)  # ...or in another server process's writer
            search = get_search(self.db, search_id)
            age = search_age(search_id)
        if search is None:
            raise EventError(404, "not_found", "search_id", f"no search with id {show_id(search_id)}")
        if event_type in ITEM_EVENT_TYPES and not item_id:
            raise EventError(400, "invalid_field", "item_id", f"a {event_type} event needs item_id")
        if item_id:
            item_type = self._item_type(search, item_id, item_type)
        if event_type == "vote" and item_type != "idea":
            raise EventError(400, "invalid_field", "item_type", "only ideas can be voted on")
        vector = None
        if event_type == "helpful" and item_id:
            # Usually a hit in the embedder's query cache: the search just encoded it.
            vector = self.engine.embedder.encode([search["query"]])[0]
        alias = voted = None
        with writing(self.db) as conn:
            if event_type == "vote":  # the same rules as POST /api/ideas/<id>/vote: closed ideas 409, one per requester
                try:
                    voted = vote(conn, item_id, requester, search_id)
                except IdeaNotFound as exc:
                    raise EventError(404, "not_found", "item_id", str(exc)) from None
                except IdeaError as exc:
                    raise EventError(409, "conflict", "item_id", str(exc)) from None
            event_id = insert_event(conn, search, event_type, item_type, item_id, requester)
            if event_type == "helpful" and item_id:
                policy = aliases.AliasPolicy(self.settings.min_confirmations, self.settings.alias_limit_per_session)
                rate_key = search.get("session") or (f"client:{client}" if client else f"search:{search_id}")
                alias = aliases.confirm(conn, search, item_type, item_id, rate_key, policy, vector, model_id_for(self.settings))
        if alias and alias["status"] == "learned":
            self.refresh_aliases()
        out = {"event_id": event_id, "search_id": search_id, "type": event_type}
        if item_id:
            out |= {"item_type": item_type, "item_id": item_id}
        if alias:
            out["alias"] = alias
        if voted:
            out["vote"] = {"idea_id": voted["id"], "votes": voted["votes"], "counted": voted["counted"]}
        return out

    def _item_type(self, search: dict, item_id: str, item_type: str | None) -> str:
        """The type of a known item (shown in the search, an indexed article or an idea)."""
        from .events import EventError
        from .ideas import get_idea, show_id

        shown = {(r["item_type"], r["item_id"]) for r in search["results"]}
        candidates = [item_type] if item_type else ["article", "idea"]
        for kind in candidates:
            if (kind, item_id) in shown:
                return kind
            if kind == "article" and item_id in self.engine.articles.position:
                return kind
            if kind == "idea" and get_idea(self.db, item_id) is not None:
                return kind
        raise EventError(404, "not_found", "item_id", f"no {item_type or 'article or idea'} with id {show_id(item_id)}")

    def recalibrate(self) -> None:
        """Refit the answered-probability with the learned aliases as real example queries."""
        from .suggest import fit_calibration

        engine = self.engine
        calibration = fit_calibration(
            engine.index,
            engine.embedder,
            aliases=engine.alias_rows,
            target_false_answer=self.settings.target_false_answer,
            answer_threshold=self.settings.answer_threshold,
        )
        engine.set_calibration(calibration)

    def aliases(self, active_only: bool = False) -> list[dict]:
        from .aliases import list_aliases

        return list_aliases(self.db, active_only)

    def delete_alias(self, alias_id: int) -> bool:
        from .aliases import delete_alias
        from .db import writing

        with writing(self.db) as conn:
            deleted = delete_alias(conn, alias_id)
        if deleted:
            self.refresh_aliases()
        return deleted

    def metrics(self, since: float | None = None, until: float | None = None) -> dict:
        """DESIGN section 6 metrics, with titles added to the per-item rows."""
        from .ideas import list_ideas
        from .metrics import add_titles, compute_metrics

        self.search_log.flush()
        report = compute_metrics(self.db, since, until, self.settings.assumed_window_seconds)
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
        from .articles import render_html

        index = self.engine.index
        meta = next((a for a in index.articles if a["id"] == article_id), None)
        if meta is None:
            return None
        body = index.bodies.get(article_id, "")
        return {k: meta[k] for k in ("id", "title", "url", "locale", "tags")} | {
            "markdown": body,
            "html": render_html(body),
        }

    def health(self) -> dict:
        from .ideas import count_ideas

        return {
            "status": "ok",
            "articles": len(self.engine.index.articles),
            "ideas": count_ideas(self.db),
            "index_version": self.engine.version,
            "aliases": self.engine.alias_count,
        }
