"""Micro-batching, the LRU cache and group commit: pure logic, plus a real SQLite file."""

from __future__ import annotations

import threading
import time

from deflect.batching import LRUCache, MicroBatcher


def test_lru_cache_evicts_the_least_recently_used():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)
    assert len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 1)


def test_lru_cache_of_size_zero_keeps_nothing():
    cache = LRUCache(0)
    cache.put("a", 1)
    assert cache.get("a") is None
    assert len(cache) == 0


def _run_threads(count: int, target) -> list:
    results: list = [None] * count

    def work(i: int) -> None:
        try:
            results[i] = target(i)
        except Exception as exc:  # collected, asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


class GatedDoubler:
    """fn for MicroBatcher: doubles items; its first call waits until `release` is set."""

    def __init__(self):
        self.release = threading.Event()
        self.calls: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        if not self.calls:
            self.calls.append(list(items))
            assert self.release.wait(10)
        else:
            self.calls.append(list(items))
        return [2 * i for i in items]


def _wait_pending(batcher: MicroBatcher, count: int) -> None:
    deadline = time.time() + 10
    while len(batcher._pending) < count and time.time() < deadline:
        time.sleep(0.005)


def test_micro_batcher_folds_waiting_items_into_one_call_and_answers_each_caller():
    fn = GatedDoubler()
    batcher = MicroBatcher(fn, max_batch=64)
    first = threading.Thread(target=batcher.submit, args=(100,))
    first.start()
    while not fn.calls:
        time.sleep(0.005)
    releaser = threading.Thread(target=lambda: (_wait_pending(batcher, 20), fn.release.set()))
    releaser.start()
    results = _run_threads(20, lambda i: batcher.submit(i % 10))  # each value submitted twice
    first.join(10)
    releaser.join(10)
    assert results == [2 * (i % 10) for i in range(20)]
    assert fn.calls[0] == [100]
    assert sorted(fn.calls[1]) == list(range(10)), "identical waiting items are passed once"
    assert batcher.batches == 2 and batcher.items == 21


def test_micro_batcher_respects_max_batch():
    fn = GatedDoubler()
    batcher = MicroBatcher(fn, max_batch=4)
    first = threading.Thread(target=batcher.submit, args=(-1,))
    first.start()
    while not fn.calls:
        time.sleep(0.005)
    releaser = threading.Thread(target=lambda: (_wait_pending(batcher, 10), fn.release.set()))
    releaser.start()
    results = _run_threads(10, batcher.submit)
    first.join(10)
    releaser.join(10)
    assert results == [2 * i for i in range(10)]
    assert [len(c) for c in fn.calls[1:]] == [4, 4, 2]


def test_micro_batcher_raises_the_failure_in_every_caller_of_the_batch():
    def fail(items):
        raise RuntimeError(f"cannot encode {len(items)}")

    batcher = MicroBatcher(fail)
    results = _run_threads(5, batcher.submit)
    assert all(isinstance(r, RuntimeError) for r in results)
    # The worker survives a failure.
    batcher.fn = lambda items: [i + 1 for i in items]
    assert batcher.submit(41) == 42
