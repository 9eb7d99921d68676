"""Dynamic micro-batching and an LRU cache, for as-you-type query encoding.

Many people typing at once send many one-line queries. Encoding them one by one costs a
full model call each; folding whatever queries are waiting into one call costs little more
than one of them. MicroBatcher does that without adding any delay: a single worker thread
encodes everything queued while it was busy, so a lone query is encoded at once and a burst
shares one call.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Any


class LRUCache:
    """Thread-safe least-recently-used map with a fixed number of entries (0 = disabled)."""

    def __init__(self, capacity: int):
        self.capacity = max(0, int(capacity))
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        if not self.capacity:
            return None
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        if not self.capacity:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class MicroBatcher:
    """Run `fn(items) -> results` (one result per item, in order) for items submitted from many threads.

    `submit(item)` blocks until the result for `item` is ready; whatever was submitted while
    the previous call ran goes into the next call (up to max_batch). The worker thread starts
    on first use; equal (hashable) items waiting together are passed once. An exception from
    `fn` is raised in every caller of that batch.
    """

    def __init__(self, fn: Callable[[list], Sequence], max_batch: int = 64, name: str = "micro-batcher"):
        self.fn = fn
        self.max_batch = max(1, int(max_batch))
        self.name = name
        self._pending: list[tuple[Hashable, Future]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.batches = 0  # calls of fn made
        self.items = 0  # items submitted

    def submit(self, item: Hashable) -> Any:
        future: Future = Future()
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._pending.append((item, future))
            self.items += 1
            self._cond.notify()
        return future.result()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
            self._call(batch)

    def _call(self, batch: list[tuple[Hashable, Future]]) -> None:
        unique: dict[Hashable, int] = {}
        for item, _ in batch:
            unique.setdefault(item, len(unique))
        self.batches += 1
        try:
            results = self.fn(list(unique))
        except BaseException as exc:  # hand the failure to every waiting caller
            for _, future in batch:
                future.set_exception(exc)
            return
        for item, future in batch:
            future.set_result(results[unique[item]])
