"""The article index: passage vectors + manifest, saved atomically, updated incrementally.

Layout of the index folder:

    indexes/CURRENT            name of the live version folder (replaced atomically)
    indexes/v-<version>/       manifest.json, passages.json, vectors.npy

A new version is written to a temporary folder, renamed into place, and only then does
CURRENT point at it; a crash at any moment leaves the previous version intact.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .articles import PARSER_VERSION, Article, load_kb
from .errors import DeflectError
from .passages import Passage
from .scoring import SCORING_VERSION

log = logging.getLogger(__name__)

FORMAT = 1
KEEP_VERSIONS = 2
# What writing into a folder mounted read-only, or owned by another user, fails with.
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


class IndexFolderReadOnly(DeflectError):
    """The index must be built or rebuilt, but its folder cannot be written."""

    def __init__(self, folder: Path, reason: str, has_index: bool):
        why = (
            "the KB, the model or the settings changed since the index there was built"
            if has_index
            else "there is no index there yet"
        )
        super().__init__(
            f"cannot save a new index version in {folder} ({reason}): {why}. Run `deflect index` where "
            "that folder is writable, or make it writable"
        )


@dataclass
class KBIndex:
    """Articles, their passages and one normalised vector per passage."""

    manifest: dict
    articles: list[dict]
    passages: list[dict]  # {"article": int, "kind": str, "text": str, "snippet": str}
    vectors: np.ndarray
    bodies: dict[str, str] = field(default_factory=dict)  # article id -> Markdown body
    # Structures derived from this version and kept with it (the engine's search catalog, the
    # parsed articles), so they are built once per version. Apart from this cache, a KBIndex is
    # never modified once built.
    derived: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def version(self) -> str:
        return self.manifest["version"]

    def article_rows(self) -> list[tuple[int, int]]:
        """Each article's passages as a [start, end) range of rows (build_index keeps them contiguous)."""
        spans = self.derived.get("article_rows")
        if spans is None:
            owners = np.fromiter((p["article"] for p in self.passages), dtype=np.int64, count=len(self.passages))
            if len(owners) and np.any(np.diff(owners) < 0):
                raise ValueError("passages are not grouped by article")
            bounds = np.searchsorted(owners, np.arange(len(self.articles) + 1))
            spans = self.derived["article_rows"] = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
        return spans


@dataclass
class BuildReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    embedded_passages: int = 0
    warnings: list[str] = field(default_factory=list)
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
        skipped = len(self.warnings)
        return line + (f", {skipped} file{'s' if skipped > 1 else ''} skipped" if skipped else "")


def current_version_dir(index_dir: str | Path) -> Path | None:
    pointer = Path(index_dir) / "CURRENT"
    if not pointer.exists():
        return None
    target = Path(index_dir) / pointer.read_text().strip()
    return target if (target / "manifest.json").exists() else None


# The last version each index folder was built to (or loaded from) in this process, with the
# mtime of its manifest: a re-index in a serving process starts from it instead of parsing
# passages.json again, as long as CURRENT still names it.
_LIVE: dict[str, tuple[str, int, KBIndex]] = {}
_LIVE_LIMIT = 8


def _remember(index_dir: str | Path, index: KBIndex) -> None:
    folder = current_version_dir(index_dir)
    if folder is None or folder.name != f"v-{index.version}":
        return
    key = str(Path(index_dir).resolve())
    _LIVE.pop(key, None)
    _LIVE[key] = (folder.name, (folder / "manifest.json").stat().st_mtime_ns, index)
    while len(_LIVE) > _LIVE_LIMIT:
        _LIVE.pop(next(iter(_LIVE)))


def _live_index(index_dir: str | Path) -> KBIndex | None:
    """The live version: from memory when this process built or loaded it, else from disk."""
    folder = current_version_dir(index_dir)
    if folder is None:
        return None
    hit = _LIVE.get(str(Path(index_dir).resolve()))
    try:
        if hit and hit[0] == folder.name and hit[1] == (folder / "manifest.json").stat().st_mtime_ns:
            return hit[2]
    except OSError:
        pass
    index = load_index(index_dir)
    if index is not None:
        _remember(index_dir, index)
    return index


def load_index(index_dir: str | Path) -> KBIndex | None:
    """Load the live version, or None when there is none yet."""
    folder = current_version_dir(index_dir)
    if folder is None:
        return None
    manifest = json.loads((folder / "manifest.json").read_text())
    if manifest.get("format") != FORMAT:
        return None
    data = json.loads((folder / "passages.json").read_text())
    vectors = np.load(folder / "vectors.npy")
    return KBIndex(manifest, data["articles"], data["passages"], vectors, data.get("bodies", {}))


def save_index(index: KBIndex, index_dir: str | Path) -> Path:
    """Write a new version folder and switch CURRENT to it; never touch the live one."""
    root = Path(index_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    except OSError as exc:
        if exc.errno in READ_ONLY_ERRNOS:
            raise IndexFolderReadOnly(root, exc.strerror, current_version_dir(root) is not None) from None
        raise
    try:
        np.save(tmp / "vectors.npy", index.vectors)
        payload = {"articles": index.articles, "passages": index.passages, "bodies": index.bodies}
        (tmp / "passages.json").write_text(json.dumps(payload, ensure_ascii=False))
        # Compact: the manifest lists every file, and indented JSON is written by a slow pure-Python encoder.
        (tmp / "manifest.json").write_text(json.dumps(index.manifest, ensure_ascii=False, separators=(",", ":")))
        for name in ("vectors.npy", "passages.json", "manifest.json"):
            _fsync(tmp / name)
        final = root / f"v-{index.version}"
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer_tmp = root / f".CURRENT.{uuid.uuid4().hex}"
    pointer_tmp.write_text(final.name)
    _fsync(pointer_tmp)
    os.replace(pointer_tmp, root / "CURRENT")
    _prune(root, keep=final.name)
    return final


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _prune(root: Path, keep: str) -> None:
    """Drop old versions (keeping a few for readers mid-load) and stale temp folders."""
    versions = sorted((p for p in root.glob("v-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in [p for p in versions if p.name != keep][: max(0, len(versions) - KEEP_VERSIONS)]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob(".tmp-*"):
        if time.time() - tmp.stat().st_mtime > 3600:
            shutil.rmtree(tmp, ignore_errors=True)


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


def build_index(
    kb_dir: str | Path,
    index_dir: str | Path,
    embedder,
    model_id: str,
    default_locale: str = "en",
    passage_chars: int = 700,
    progress: bool = False,
    calibrate=None,
) -> tuple[KBIndex, BuildReport]:
    """Bring the index up to date with kb_dir, embedding only added or changed files.

    Files whose size, times and inode are those recorded in the manifest are not even read
    (see articles.load_kb); the rest are hashed and only the changed ones parsed and embedded.
    A different model, passage size or parser (articles.PARSER_VERSION) makes old vectors
    or articles stale, so it forces a full rebuild instead of mixing them.
    `calibrate(index)` returns the calibration stored in the manifest (see
    calibration.fit_calibration).

    The live version also settles duplicate ids (the file that held an id keeps it) and
    says which skip warnings were already logged, so they are not logged on every reindex
    (the report still lists them all).
    """
    report = BuildReport()
    live = previous = _live_index(index_dir)
    if previous is not None and (
        previous.manifest.get("model") != model_id
        or previous.manifest.get("passage_chars") != passage_chars
        or previous.manifest.get("parser") != PARSER_VERSION
    ):
        log.info("model, passage size or article parser changed: rebuilding the whole index")
        previous = None
    if previous is not None and not _grouped(previous):
        log.warning("index %s has passages out of article order: rebuilding the whole index", previous.version)
        previous = None
    report.rebuilt = previous is None
    scanned_ns = time.time_ns()
    known = _known_articles(previous, default_locale)
    articles, report.warnings = load_kb(
        kb_dir,
        default_locale,
        passage_chars,
        known,
        previous.manifest.get("scanned_ns", 0) if previous else 0,
        id_holders={row["id"]: row["path"] for row in live.articles} if live else None,
        reported=live.derived.get("warnings", ()) if live else (),
    )
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
    if not report.changed_anything and previous is not None and article_rows == previous.articles:
        report.version = previous.version
        previous.derived["kb_articles"] = articles
        previous.derived["warnings"] = report.warnings
        _remember(index_dir, previous)
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
    }
    index = KBIndex(manifest, article_rows, passage_rows, matrix, {a.id: a.body for a in articles})
    if calibrate is not None:
        manifest["calibration"] = _reusable_calibration(previous, report, len(article_rows)) or calibrate(index)
    save_index(index, index_dir)
    index.derived["kb_articles"] = articles
    index.derived["warnings"] = report.warnings  # logged once; the next build logs only new ones
    _remember(index_dir, index)
    report.version = version
    return index, report


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
        )
    return known
