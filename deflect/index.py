"""The article index: built from the KB, updated incrementally (only changed files re-embedded).

Where versions live and how they are saved atomically: deflect.index_folder.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .articles import PARSER_VERSION, Article
from .errors import DeflectError
from .index_folder import FORMAT, KBIndex, live_index, remember, save_index
from .kb_folder import KEPT_MARK, MAX_ARTICLE_BYTES, is_ignored_keys_warning, load_kb
from .links import link_problems, log_new
from .passages import Passage
from .scoring import SCORING_VERSION

log = logging.getLogger(__name__)


class KBFolderMissing(DeflectError):
    """The knowledge-base folder is not there: an index built from it would have no article."""

    def __init__(self, kb_dir: str | Path):
        super().__init__(
            f"knowledge-base folder {kb_dir} not found (setting kb_dir, or --kb); nothing was indexed "
            "and the index was left as it was"
        )


@dataclass
class BuildReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    embedded_passages: int = 0
    warnings: list[str] = field(default_factory=list)
    link_warnings: list[str] = field(default_factory=list)  # links and images that lead nowhere (deflect.links)
    rebuilt: bool = False  # True when nothing could be reused (new index or model change)
    version: str = ""

    @property
    def changed_anything(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.rebuilt)

    def summary(self) -> str:
        """One line for people: the version and what changed (`deflect index`, the server's log)."""
        line = (
            f"index {self.version}: {len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.removed)} removed, {self.unchanged} unchanged, "
            f"{self.embedded_passages} passages embedded" + (" (full rebuild)" if self.rebuilt else "")
        )
        skipped = sum(1 for warning in self.warnings if ": skipped: " in warning)
        kept = sum(1 for warning in self.warnings if f": {KEPT_MARK}: " in warning)
        unread = sum(1 for warning in self.warnings if is_ignored_keys_warning(warning))  # not a problem
        other = len(self.warnings) - skipped - kept - unread  # about indexed files (articles.Article.warnings)
        line += f", {skipped} file{'s' if skipped > 1 else ''} skipped" if skipped else ""
        line += f", {kept} unreadable file{'s' if kept > 1 else ''} kept at its last good version" if kept else ""
        line += f", {other} warning{'s' if other > 1 else ''}" if other else ""
        return line + (f", {unread} front-matter key{'s' if unread > 1 else ''} not read" if unread else "")


# On a large KB a handful of edited articles barely moves the answered-calibration, and
# refitting it costs minutes; it is reused until the edits since the last fit pass this share.
RECALIBRATE_MIN_ARTICLES = 500
RECALIBRATE_CHANGED_SHARE = 0.01


def _reusable_calibration(previous: KBIndex | None, report: BuildReport, n_articles: int) -> dict | None:
    if previous is None or n_articles < RECALIBRATE_MIN_ARTICLES:
        return None
    calibration = previous.manifest.get("calibration")
    if not calibration or calibration.get("scoring") != SCORING_VERSION:
        return None
    edits = calibration.get("edits_since_fit", 0) + len(report.added) + len(report.changed) + len(report.removed)
    if edits > RECALIBRATE_CHANGED_SHARE * n_articles:
        return None
    return calibration | {"edits_since_fit": edits}


def _changed_at(live: KBIndex | None, articles: list[Article]) -> dict[str, float | None]:
    """Each file's last content change, carried over from the live version (also across a model
    change) while its hash stays; now for a new or edited file; None when not known (the first
    index of a folder, e.g. one built at image build time, or a version from before this was kept)."""
    if live is None:
        return dict.fromkeys((a.path for a in articles), None)
    hashes, known, now = live.manifest.get("files", {}), live.manifest.get("changed_at", {}), time.time()
    return {a.path: known.get(a.path) if hashes.get(a.path) == a.content_hash else now for a in articles}


def build_index(
    kb_dir: str | Path,
    index_dir: str | Path,
    embedder,
    model_id: str,
    default_locale: str = "en",
    passage_chars: int = 700,
    progress: bool = False,
    calibrate=None,
    max_article_bytes: int = MAX_ARTICLE_BYTES,
) -> tuple[KBIndex, BuildReport]:
    """Bring the index up to date with kb_dir, embedding only added or changed files.

    Files whose size, times and inode are those recorded in the manifest are not even read
    (see kb_folder.load_kb); the rest are hashed and only the changed ones parsed and embedded.
    A different model, passage size or parser (articles.PARSER_VERSION) makes old vectors
    or articles stale, so it forces a full rebuild instead of mixing them.
    `calibrate(index)` returns the calibration stored in the manifest (see
    calibration.fit_calibration).

    A file over `max_article_bytes` (0: no bound) is skipped; one that was published and has become
    unreadable keeps its last good version (kb_folder.load_kb).

    A missing kb_dir raises KBFolderMissing: saving an empty version would make every
    server sharing the index folder serve no article. An empty folder is a KB with none.

    The live version also settles duplicate ids (the file that held an id keeps it) and
    says which skip warnings were already logged, so they are not logged on every reindex
    (the report still lists them all).
    """
    if not Path(kb_dir).is_dir():  # a mistyped path or an unmounted volume, not a KB emptied on purpose
        raise KBFolderMissing(kb_dir)
    report = BuildReport()
    live = previous = live_index(index_dir)
    changed = built_differently(previous.manifest, model_id, passage_chars) if previous is not None else None
    if changed:
        log.info("%s changed since index %s: rebuilding the whole index", changed, previous.version)
        previous = None
    if previous is not None and not _grouped(previous):
        log.warning("index %s has passages out of article order: rebuilding the whole index", previous.version)
        previous = None
    report.rebuilt = previous is None
    scanned_ns = time.time_ns()
    known = _known_articles(previous, default_locale)
    holders = ({row["id"]: row["path"] for row in live.articles} | live.manifest.get("held_ids", {})) if live else None
    held_ids: dict[str, str] = {}
    articles, report.warnings = load_kb(
        kb_dir,
        default_locale,
        passage_chars,
        known,
        previous.manifest.get("scanned_ns", 0) if previous else 0,
        id_holders=holders,
        reported=live.derived.get("warnings", ()) if live else (),
        held_ids=held_ids,
        max_article_bytes=max_article_bytes,
    )
    # Links are checked against this version's articles, then left as written: they are resolved
    # when an article is shown (deflect.links), so a link never changes passages or search results.
    links_checked: dict = {}
    link_warnings = link_problems(articles, kb_dir, live.derived.get("links_checked") if live else None, links_checked)
    log_new(link_warnings, live.derived.get("link_warnings", ()) if live else ())
    report.link_warnings = list(link_warnings)
    old_files = previous.manifest["files"] if previous else {}
    spans = dict(zip((a["path"] for a in previous.articles), previous.article_rows())) if previous else {}

    new_files = {a.path: a.content_hash for a in articles}
    report.removed = sorted(set(old_files) - set(new_files))
    to_embed: list[Article] = []
    for article in articles:
        if article.path not in old_files:
            report.added.append(article.path)
            to_embed.append(article)
        elif old_files[article.path] != article.content_hash or article.path not in spans:
            report.changed.append(article.path)
            to_embed.append(article)
        else:
            report.unchanged += 1

    article_rows = [
        {
            "id": article.id,
            "title": article.title,
            "url": article.url,
            "locale": article.locale,
            "tags": article.tags,
            "path": article.path,
            "hash": article.content_hash,
        }
        for article in articles
    ]
    if (
        not report.changed_anything
        and previous is not None
        and article_rows == previous.articles
        and held_ids == previous.manifest.get("held_ids", {})
    ):
        report.version = previous.version
        previous.derived["kb_articles"] = articles
        previous.derived["warnings"] = report.warnings
        previous.derived["link_warnings"] = link_warnings
        previous.derived["links_checked"] = links_checked
        remember(index_dir, previous)
        return previous, report

    texts = [p.text for a in to_embed for p in a.passages]
    report.embedded_passages = len(texts)
    fresh = embedder.encode(texts, progress=progress) if texts else None
    fresh_rows: dict[str, tuple[int, int]] = {}
    offset = 0
    for article in to_embed:
        fresh_rows[article.path] = (offset, offset + len(article.passages))
        offset += len(article.passages)

    # One float32 matrix, filled block by block: unchanged articles' rows are copied once from
    # the previous version, never gathered into intermediate arrays.
    if fresh is not None:
        dimension = int(fresh.shape[1])
    else:
        dimension = int(previous.vectors.shape[1]) if previous is not None else embedder.dimension
    matrix = np.empty((sum(len(a.passages) for a in articles), dimension), dtype=np.float32)
    passage_rows: list[dict] = []
    previous_position = {a["path"]: i for i, a in enumerate(previous.articles)} if previous else {}
    for ai, article in enumerate(articles):
        start = len(passage_rows)
        if article.path in fresh_rows:
            begin, end = fresh_rows[article.path]
            matrix[start : start + end - begin] = fresh[begin:end]
        else:
            begin, end = spans[article.path]
            matrix[start : start + end - begin] = previous.vectors[begin:end]
            if previous_position[article.path] == ai:  # same place: its passage rows can be shared as they are
                passage_rows.extend(previous.passages[begin:end])
                continue
        passage_rows.extend(
            {"article": ai, "kind": passage.kind, "text": passage.text, "snippet": passage.snippet}
            for passage in article.passages
        )
    version = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    manifest = {
        "format": FORMAT,
        "version": version,
        "model": model_id,
        "dimension": dimension,
        "passage_chars": passage_chars,
        "parser": PARSER_VERSION,
        "default_locale": default_locale,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "articles": len(article_rows),
        "passages": len(passage_rows),
        "files": new_files,
        # Each file's signature when read (size, mtime, ctime, inode) and when the scan started:
        # the next build reads only files whose signature differs (or was taken too close to a change).
        "file_stats": {a.path: list(a.file_stat) for a in articles},
        "scanned_ns": scanned_ns,
        # Ids whose holder cannot be read now: no other file takes them meanwhile (kb_folder.load_kb).
        "held_ids": held_ids,
        # What an indexed file should fix (a front-matter key given twice): reported again for an
        # unchanged file, which the next build (maybe by another process) does not parse again.
        "article_warnings": {a.path: list(a.warnings) for a in articles if a.warnings},
        # When each file's content last changed (epoch seconds; null: not known): an article
        # counts as news for questions asked before it (review.check_answered).
        "changed_at": _changed_at(live, articles),
    }
    index = KBIndex(manifest, article_rows, passage_rows, matrix, {a.id: a.body for a in articles})
    if calibrate is not None:
        manifest["calibration"] = _reusable_calibration(previous, report, len(article_rows)) or calibrate(index)
    save_index(index, index_dir)
    index.derived["kb_articles"] = articles
    index.derived["warnings"] = report.warnings  # logged once; the next build logs only new ones
    index.derived["link_warnings"] = link_warnings
    index.derived["links_checked"] = links_checked
    remember(index_dir, index)
    report.version = version
    return index, report


def built_differently(manifest: dict, model_id: str, passage_chars: int) -> str | None:
    """What makes an index version's vectors or passages unlike the ones this process would build
    (its model, passage size or article parser: articles.PARSER_VERSION), or None when nothing does."""
    changed = [
        name
        for name, key, ours in (("model", "model", model_id), ("passage size", "passage_chars", passage_chars),
                                ("article parser", "parser", PARSER_VERSION))
        if manifest.get(key) != ours
    ]
    return " and ".join(changed) or None


def _grouped(index: KBIndex) -> bool:
    try:
        index.article_rows()
    except ValueError:
        return False
    return True


def _known_articles(previous: KBIndex | None, default_locale: str) -> dict[str, Article]:
    """The previous version's articles by path, for load_kb to reuse unchanged files.

    Articles without a locale of their own took the default locale, so none is reused
    when the default changed (or is not recorded).
    """
    if previous is None or previous.manifest.get("default_locale") != default_locale:
        return {}
    if "kb_articles" in previous.derived:  # this process built or checked that version: its Articles
        return {a.path: a for a in previous.derived["kb_articles"]}
    stats = previous.manifest.get("file_stats", {})
    warned = previous.manifest.get("article_warnings", {})
    known: dict[str, Article] = {}
    for row, (start, end) in zip(previous.articles, previous.article_rows()):
        known[row["path"]] = Article(
            id=row["id"],
            title=row["title"],
            body=previous.bodies.get(row["id"], ""),
            path=row["path"],
            locale=row["locale"],
            tags=row["tags"],
            url=row["url"],
            content_hash=row["hash"],
            passages=[Passage(p["kind"], p["text"], p["snippet"]) for p in previous.passages[start:end]],
            file_stat=tuple(stats.get(row["path"], ())),
            warnings=tuple(warned.get(row["path"], ())),
        )
    return known
