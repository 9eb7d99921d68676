"""An index folder: its versions on disk, written atomically, and the live one in memory.

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

from .errors import DeflectError
from .filemodes import open_up

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


def remember(index_dir: str | Path, index: KBIndex) -> None:
    folder = current_version_dir(index_dir)
    if folder is None or folder.name != f"v-{index.version}":
        return
    key = str(Path(index_dir).resolve())
    _LIVE.pop(key, None)
    _LIVE[key] = (folder.name, (folder / "manifest.json").stat().st_mtime_ns, index)
    while len(_LIVE) > _LIVE_LIMIT:
        _LIVE.pop(next(iter(_LIVE)))


def live_index(index_dir: str | Path) -> KBIndex | None:
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
        remember(index_dir, index)
    return index


_DAMAGED_SAID: set[str] = set()  # version folders already named in a warning (once per process)


def load_index(index_dir: str | Path) -> KBIndex | None:
    """Load the live version, or None when there is none yet, or it cannot be read (a damaged disk, a
    file cut short by hand): then the next build makes a whole new version, as for no index, and
    the folder is named in one warning."""
    folder = current_version_dir(index_dir)
    if folder is None:
        return None
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format") != FORMAT:
            return None
        data = json.loads((folder / "passages.json").read_text())
        vectors = np.load(folder / "vectors.npy")
        index = KBIndex(manifest, data["articles"], data["passages"], vectors, data.get("bodies", {}))
        if vectors.ndim != 2 or len(index.passages) != vectors.shape[0]:
            raise ValueError(f"{len(index.passages)} passages but {vectors.shape[0] if vectors.ndim else 0} vectors")
        return index
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:  # JSONDecodeError is a ValueError
        if current_version_dir(index_dir) != folder:
            return None  # replaced and pruned while it was read (another process built a newer one): no damage
        if str(folder) not in _DAMAGED_SAID:
            _DAMAGED_SAID.add(str(folder))
            log.warning("index version %s cannot be read (%s: %s); a new one is built in its place "
                        "(deflect index, or the server's next start or KB change)", folder, type(exc).__name__, exc)
        return None


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
        open_up(tmp)  # mkdtemp's 0700 would keep the version from servers running as another user
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
