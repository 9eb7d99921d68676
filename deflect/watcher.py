"""Follow the KB folder: when writers save, add or delete articles, reindex after a quiet moment.

Editors write a file in several steps (temp file, rename, chmod), and a writer often
saves several articles at once, so changes are collected until `debounce` seconds pass
without another one; then `on_change` runs once, on the watcher's own thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from .articles import is_article_file
from .errors import DeflectError

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
    ):
        """A failed reindex (disk full, a database blip) is retried after `retry_first` seconds,
        doubling up to `retry_max`, or at the next change, whichever comes first: the edit that
        failed must not wait for another edit to be served."""
        self.kb_dir = Path(kb_dir)
        self.on_change = on_change
        self.debounce = debounce
        self.retry_first = retry_first
        self.retry_max = retry_max
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
        self._observer = Observer()
        self._observer.schedule(_Handler(), str(self.kb_dir), recursive=True)
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

    def _run(self) -> None:
        retry_in: float | None = None  # seconds until a failed reindex is tried again
        while not self._stop.is_set():
            changed = self._pending.wait(retry_in)
            if self._stop.is_set():
                return
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
                # The traceback once per failing streak (an operator's error: its one-line cause
                # instead); then one line per retry.
                cause = f": {exc}" if isinstance(exc, DeflectError) else ""
                log.warning("reindex after a KB change failed%s; next try in %.0f s or at the next change",
                            cause, retry_in, exc_info=first and not cause)  # fmt: skip
            else:
                if retry_in is not None:
                    log.info("reindex after a KB change succeeded again")
                retry_in = None
