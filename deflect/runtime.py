"""Wiring shared by the CLI and the web app: settings -> embedder, index, engine, store."""

from __future__ import annotations

import logging

from .settings import Settings

log = logging.getLogger(__name__)

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
    from .index import model_identity

    return model_identity(settings.model_name, is_default=not settings.model)


def refresh_index(settings: Settings, progress: bool = False):
    """Bring the index up to date with the KB (embedding only what changed)."""
    from .index import build_index
    from .suggest import fit_calibration

    embedder = make_embedder(settings)
    return build_index(
        settings.kb_dir,
        settings.index_dir,
        embedder,
        model_id_for(settings),
        settings.default_locale,
        settings.passage_chars,
        progress=progress,
        calibrate=lambda idx: fit_calibration(idx, embedder),
    )


class Runtime:
    """A running deflect: store, index and engine built from one Settings object."""

    def __init__(self, settings: Settings, progress: bool = False):
        from . import db
        from .ideas import SUGGESTED_STATUSES, count_ideas, import_ideas, list_ideas
        from .suggest import Engine

        self.settings = settings
        self.db = db.make_engine(settings.database_url)
        db.upgrade(self.db)
        if count_ideas(self.db) == 0 and settings.ideas_path is not None:
            inserted, _, errors = import_ideas(self.db, settings.ideas_path)
            log.info("imported %d sample ideas from %s", inserted, settings.ideas_path)
            for error in errors:
                log.warning(error)
        index, report = refresh_index(settings, progress=progress)
        self.last_report = report
        self.engine = Engine(
            make_embedder(settings),
            index,
            list_ideas(self.db, SUGGESTED_STATUSES),
            settings.answer_threshold,
        )

    def suggest(
        self,
        query: str,
        k: int = 5,
        types: tuple[str, ...] = ("article", "idea"),
        locale: str | None = None,
        session: str | None = None,
    ) -> dict:
        from .events import record_search

        suggestion = self.engine.suggest(query, k=k, types=types, locale=locale)
        results = [r.to_dict() for r in suggestion.results]
        search_id = record_search(self.db, query, session, locale, suggestion.answered, results, self.engine.version)
        return {"search_id": search_id, "answered": suggestion.answered, "results": results}

    def reindex(self, progress: bool = False):
        """Re-embed changed articles and swap the new index in while requests keep flowing."""
        index, report = refresh_index(self.settings, progress=progress)
        if report.changed_anything:
            self.engine.replace_index(index)
        self.last_report = report
        return report

    def reload_ideas(self) -> None:
        from .ideas import SUGGESTED_STATUSES, list_ideas

        self.engine.set_ideas(list_ideas(self.db, SUGGESTED_STATUSES))

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
        }
