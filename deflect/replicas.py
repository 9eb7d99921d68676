"""Several deflect processes on one index folder and one database.

One process builds at a time (an exclusive lock on the index folder, released by the
kernel if the process dies), and whoever builds records the live version in the
database; the other processes poll it and load that version from the shared folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import sqlalchemy as sa

from .db import sync_state, writing
from .index_folder import READ_ONLY_ERRNOS

INDEX_VERSION = "index_version"
LOCK_FILE = ".build.lock"


@contextlib.contextmanager
def build_lock(index_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the index folder's build lock (blocking); a killed holder frees it at once.

    flock needs no write access, so a lock file this process may only read (another user's,
    or on a read-only mount) is still locked. Only a folder with no lock file that cannot be
    written (an index built elsewhere and mounted read-only) goes without: nothing can be
    saved there, so there is nothing to take turns for. An up-to-date index is served as it
    is; a build that must save fails with IndexFolderReadOnly.
    """
    handle = _open_lock(Path(index_dir))
    if handle is None:
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _open_lock(root: Path) -> IO | None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        return open(root / LOCK_FILE, "a+")  # noqa: SIM115 - closed by build_lock
    except OSError as exc:
        if exc.errno not in READ_ONLY_ERRNOS:
            raise
        cannot_write = exc
    try:
        return open(root / LOCK_FILE)  # noqa: SIM115 - closed by build_lock
    except FileNotFoundError:
        if root.is_dir() and os.access(root, os.W_OK):
            raise cannot_write from None
        return None


def published_version(engine: sa.Engine) -> str | None:
    """The index version the last build (by any process) recorded, or None before the first."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sync_state.c.text).where(sync_state.c.name == INDEX_VERSION)).scalar()


def publish_version(engine: sa.Engine, version: str) -> None:
    """Record `version` as live; the counter lets operators see how many swaps happened."""
    update = (
        sync_state.update()
        .where(sync_state.c.name == INDEX_VERSION)
        .values(text=version, value=sync_state.c.value + 1)
    )
    try:
        with writing(engine) as conn:
            if not conn.execute(update).rowcount:
                conn.execute(sync_state.insert().values(name=INDEX_VERSION, value=1, text=version))
    except sa.exc.IntegrityError:  # another process inserted the first row at the same moment
        with writing(engine) as conn:
            conn.execute(update)
