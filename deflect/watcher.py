"""Follow the KB folder: when writers save, add or delete articles, reindex after a quiet moment.

Editors write a file in several steps (temp file, rename, chmod), and a writer often
saves several articles at once, so changes are collected until `debounce` seconds pass
without another one; then `on_change` runs once, on the watcher's own thread.

The operating system watches a folder, not a path: when kb_dir is moved away and back, or
swapped for a new copy (a deploy), the watch would stay on the old folder. So the watcher
looks every `folder_check` seconds whether kb_dir is still the folder it watches, and if
not, watches the one there now and reindexes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import DeflectError
from .kb_folder import is_article_file

log = logging.getLogger(__name__)


def is_relevant(event_type: str, is_directory: bool, paths: list[str | bytes]) -> bool:
    """Article files changing, or whole folders of them appearing, moving or going away."""
    if is_directory:
        return event_type in ("created", "moved", "deleted")
    if event_type in ("opened", "closed_no_write"):
        return False
    names = [p.decode(errors="replace") if isinstance(p, bytes) else p for p in paths if p]
    return any(is_article_file(name) for name in names)  # the files load_kb reads


class KBWatcher:
    """Calls `on_change()` after Markdown files under `kb_dir` change (debounced)."""

    def __init__(
        self,
        kb_dir: str | Path,
        on_change: Callable[[], object],
        debounce: float = 1.0,
        retry_first: float = 5.0,
        retry_max: float = 300.0,
        folder_check: float = 2.0,
    ):
        """A failed reindex (disk full, a database blip) is retried after `retry_first` seconds,
        doubling up to `retry_max`, or at the next change, whichever comes first: the edit that
        failed must not wait for another edit to be served."""
        self.kb_dir = Path(kb_dir)
        self.on_change = on_change
        self.debounce = debounce
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.folder_check = folder_check
        self._watched: tuple[int, int] | None = None  # (device, inode) of the folder watched
        self._handler = None
        self._pending = threading.Event()
        self._stop = threading.Event()
        self._observer = None
        self._thread = threading.Thread(target=self._run, name="deflect-kb-watcher", daemon=True)

    def start(self) -> KBWatcher:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                paths = [event.src_path, getattr(event, "dest_path", "")]
                if is_relevant(event.event_type, event.is_directory, paths):
                    watcher._pending.set()

        self.kb_dir.mkdir(parents=True, exist_ok=True)
        self._handler = _Handler()
        self._observer = Observer()
        self._watched = self._folder_identity()
        self._observer.schedule(self._handler, str(self.kb_dir), recursive=True)
        self._observer.daemon = True
        self._observer.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._pending.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        self._thread.join(timeout=5)

    def _folder_identity(self) -> tuple[int, int] | None:
        try:
            info = self.kb_dir.stat()
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def _follow_folder(self) -> bool:
        """Watch the folder now at kb_dir if it is not the one watched; True if it changed."""
        current = self._folder_identity()
        if current == self._watched:
            return False
        self._watched = current
        if self._observer is not None:
            self._observer.unschedule_all()  # the old folder's edits are no longer the KB's
            if current is not None:
                self._observer.schedule(self._handler, str(self.kb_dir), recursive=True)
        log.info("KB folder %s %s; reindexing", self.kb_dir, "is another folder now" if current else "is gone")
        return True

    def _run(self) -> None:
        retry_in: float | None = None  # seconds between tries of a failed reindex
        retry_at: float | None = None  # when the next try is due
        while not self._stop.is_set():
            wait = self.folder_check if retry_at is None else min(self.folder_check, retry_at - time.monotonic())
            changed = self._pending.wait(max(wait, 0.0))
            if self._stop.is_set():
                return
            changed = self._follow_folder() or changed
            if not changed and (retry_at is None or time.monotonic() < retry_at):
                continue
            if changed:  # wait for a quiet moment: every new change restarts the countdown
                self._pending.clear()
                while self._pending.wait(self.debounce) and not self._stop.is_set():
                    self._pending.clear()
                if self._stop.is_set():
                    return
            try:
                self.on_change()
            except Exception as exc:  # a broken save must not stop the watcher
                first = retry_in is None
                retry_in = self.retry_first if first else min(retry_in * 2, self.retry_max)
                retry_at = time.monotonic() + retry_in
                # The traceback once per failing streak (an operator's error: its one-line cause
                # instead); then one line per retry.
                cause = f": {exc}" if isinstance(exc, DeflectError) else ""
                log.warning("reindex after a KB change failed%s; next try in %.0f s or at the next change",
                            cause, retry_in, exc_info=first and not cause)  # fmt: skip
            else:
                if retry_in is not None:
                    log.info("reindex after a KB change succeeded again")
                retry_in = retry_at = None
