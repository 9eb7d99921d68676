"""Permission bits for files and folders written atomically (scratch name, then a rename).

tempfile.mkdtemp makes 0700 folders and tempfile.mkstemp 0600 files whatever the umask, so a
folder published by renaming one would stay private to the user who wrote it, and a server
running as another user (an index built into a container image, one index folder on NFS
shared by several machines) could not read it. Before such a rename, open_up gives the
scratch tree the modes the process umask gives ordinary new files and folders: 0755/0644
under the usual umask 022, still 0700/0600 under an operator's umask 077.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def _umask_by_toggling() -> int:
    # Only where /proc/self/status has no Umask line (not Linux, or a kernel before 4.7).
    # os.umask sets as it reads and is process-wide: the value set meanwhile is the most
    # private one, so a file another thread creates in that instant is never too open.
    current = os.umask(0o077)
    os.umask(current)
    return current


def _umask_from_proc() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        pass
    return None


# Read once at import where /proc cannot tell it, before the process has threads writing files.
_IMPORT_UMASK = _umask_by_toggling() if _umask_from_proc() is None else None


def process_umask() -> int:
    """The process umask, read without changing it (from /proc; else as it was at import)."""
    current = _umask_from_proc()
    if current is not None:
        return current
    assert _IMPORT_UMASK is not None
    return _IMPORT_UMASK


def open_up(path: str | os.PathLike, umask: int | None = None) -> None:
    """Give path (a file, or a folder and everything in it) the modes the umask gives new ones.

    Folders (and files with an execute bit) get 0777 & ~umask, other files 0666 & ~umask.
    Symbolic links are neither followed nor changed. A file system that refuses chmod
    (some FUSE or SMB mounts) leaves the modes as they are, with a warning.
    """
    mask = process_umask() if umask is None else umask
    folder_mode, file_mode = 0o777 & ~mask, 0o666 & ~mask
    root = Path(path)
    paths = [root]
    if root.is_dir() and not root.is_symlink():
        for parent, folders, files in os.walk(root):
            paths.extend(Path(parent, name) for name in (*folders, *files))
    for item in paths:
        try:
            mode = item.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            wanted = folder_mode if stat.S_ISDIR(mode) or mode & 0o111 else file_mode
            if stat.S_IMODE(mode) != wanted:
                os.chmod(item, wanted)
        except OSError as exc:
            log.warning("cannot set the permissions of %s (%s); other users may not be able to read it", item, exc)
            return
