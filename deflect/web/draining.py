"""Stopping a waitress server without cutting a request in half.

On SIGTERM, `deflect serve` stops accepting connections, answers the requests already sent
with `Connection: close` (a client reconnects, to another worker under `--workers`), waits
until none is in flight, then stops. With `--workers`, a reload (SIGHUP) replaces workers
this way one at a time, so no request is refused or dropped while new code or settings come in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask

log = logging.getLogger(__name__)

# How long requests in flight may take to finish before the server stops anyway. The supervisor
# of --workers waits 30 s before it kills a worker.
DRAIN_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.05
# A kept-alive connection idle this long after draining began is closed when the server stops
# (its client reconnects); one in use gets `Connection: close` on its next response instead.
IDLE_GRACE_SECONDS = 1.0


class Drain:
    """Drain `server` (what waitress's create_server returned), then call `stop`, from a thread of its own.

    `stop` is called once, when the requests in flight are answered (or after `timeout`); the
    caller makes it end the server's loop. `finished` is set just before.
    """

    def __init__(self, server, stop: Callable[[], None], timeout: float = DRAIN_TIMEOUT_SECONDS):
        self.server, self.stop, self.timeout = server, stop, timeout
        self.started = self.finished = self.closed = False
        # A host name with several addresses (localhost: 127.0.0.1 and ::1) gives a
        # MultiSocketServer, one listening dispatcher per address on one map.
        self._map = getattr(server, "_map", None) or server.map
        self._listeners = [d for d in list(self._map.values()) if isinstance(d, BaseWSGIServer)]

    def start(self) -> None:
        self.started = True
        threading.Thread(target=self._run, name="deflect-drain", daemon=True).start()

    def close(self) -> None:
        """The server's loop has ended: nothing more may be sent into it."""
        self.closed = True

    def _run(self) -> None:
        try:
            started = time.monotonic()
            busy = None
            while not self.closed and time.monotonic() - started < self.timeout:
                counted = self._in_server_loop(self._answer_last_requests)
                if counted is not None:
                    open_connections, busy = counted
                    if not open_connections or (not busy and time.monotonic() - started >= IDLE_GRACE_SECONDS):
                        break
                time.sleep(POLL_SECONDS)
            if busy:
                log.warning("stopping with %d request(s) still being answered after %.0f s", busy, self.timeout)
        except Exception:  # never keep a server from stopping
            log.warning("draining failed; stopping now", exc_info=True)
        finally:
            self.finished = True
            if not self.closed:
                self.stop()

    def _in_server_loop(self, thunk: Callable[[], tuple[int, int]]) -> tuple[int, int] | None:
        """Run `thunk` in the server's own loop thread (waitress's channels are not thread-safe)."""
        answer: list[tuple[int, int]] = []
        done = threading.Event()

        def run() -> None:
            try:
                answer.append(thunk())
            finally:
                done.set()

        if self.closed or not self._listeners:
            return None
        try:
            self._listeners[0].trigger.pull_trigger(run)
        except OSError:  # the loop ended and closed its trigger meanwhile
            return None
        done.wait(timeout=1.0)
        return answer[0] if answer else None

    def _answer_last_requests(self) -> tuple[int, int]:
        """Stop listening; make each connection's next response its last; count (open, busy) connections."""
        for listener in self._listeners:
            if listener.accepting:
                # Closed here: a new connection is refused at once (a load balancer tries another
                # replica) instead of waiting in the queue until this process exits. Under
                # --workers the socket stays open in the other workers, which take it.
                listener.accepting = False
                listener.del_channel()
                listener.socket.close()
        open_connections = busy = 0
        for channel in list(self._map.values()):
            if not isinstance(channel, HTTPChannel) or channel.will_close:
                continue
            channel.task_class = LastTask
            open_connections += 1
            if channel.requests or channel.request is not None or channel.total_outbufs_len:
                busy += 1
        return open_connections, busy


class LastTask(WSGITask):
    """A waitress task whose response says `Connection: close`: the client's next request opens a
    new connection (to another worker) instead of finding this one closed under it."""

    def __init__(self, channel, request):
        super().__init__(channel, request)
        request.headers["CONNECTION"] = "close"  # as if the client had asked: waitress closes after it
