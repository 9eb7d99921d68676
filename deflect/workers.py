"""Several `deflect serve` processes on one port (`deflect serve --workers N`).

One process answers at most about 800 cached requests a second whatever the number of cores:
its request threads share one GIL (bench/README.md, "Speed"). On a machine with more cores,
`--workers N` opens the listening socket once, then starts N copies of `deflect serve` that all
accept connections from it, and starts a new one when a worker dies. Each worker is a whole
server (model, index, database connection) and they share the index folder and the database
as replicas do (README, "Scaling out"): an alias learned through one worker, or an index
version built by one, reaches the others within sync_interval_seconds.

Only the standard library here: the supervising process loads no model and no index.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

# A worker finds the listening socket, and the pipe on which it says it is ready, in these.
LISTEN_FD_ENV = "_DEFLECT_LISTEN_FD"  # not DEFLECT_*: those are settings
READY_FD_ENV = "_DEFLECT_READY_FD"
SUPERVISOR_PID_ENV = "_DEFLECT_SUPERVISOR_PID"
# How often a worker checks that its supervisor is still there.
SUPERVISOR_CHECK_SECONDS = 1.0
# How long a worker may take to start (it may build the index: the first one does, once).
START_TIMEOUT_SECONDS = 3600.0
# A worker that dies this soon after starting, this many times in a row, stops the supervisor:
# restarting a worker that cannot start (a broken setting, a full disk) would only spin.
CRASH_WINDOW_SECONDS = 30.0
MAX_QUICK_CRASHES = 3
STOP_TIMEOUT_SECONDS = 30.0


class WorkerError(RuntimeError):
    """A worker could not start, or kept dying right after starting."""


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port (as waitress would), with a descriptor workers can inherit."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress does
        sock.bind(address)
        sock.listen(1024)  # waitress's own backlog
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def inherited_socket() -> socket.socket | None:
    """In a worker: the listening socket its supervisor opened (None when not run as a worker)."""
    fd = os.environ.pop(LISTEN_FD_ENV, None)  # not handed on to this worker's own child processes
    return socket.socket(fileno=int(fd)) if fd else None


def tell_ready() -> None:
    """In a worker: tell the supervisor it is about to serve (nothing when not run as a worker)."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd:
        try:
            os.write(int(fd), b"1")
            os.close(int(fd))
        except OSError:  # the supervisor is gone: serving is still right
            pass


def follow_supervisor(stop: Callable[[], None], every: float = SUPERVISOR_CHECK_SECONDS) -> None:
    """In a worker: call `stop` once its supervisor is gone (nothing when not run as a worker).

    A supervisor killed with SIGKILL cannot stop its workers, and they would go on serving the
    port as orphans; each worker notices instead that it has another parent now, and stops as
    SIGTERM would stop it (its queued searches written first).
    """
    pid = os.environ.pop(SUPERVISOR_PID_ENV, None)
    if not pid:
        return

    def watch() -> None:
        while os.getppid() == int(pid):
            time.sleep(every)
        log.warning("the supervisor (pid %s) is gone: this worker stops", pid)
        stop()

    threading.Thread(target=watch, name="deflect-supervisor-watch", daemon=True).start()


class Worker:
    """One worker process and when it was started."""

    def __init__(self, number: int, process: subprocess.Popen, ready_fd: int):
        self.number, self.process, self.ready_fd = number, process, ready_fd
        self.started = time.monotonic()


class Supervisor:
    """Start `count` workers running `command(number)` on `sock`, keep them running, stop them together."""

    def __init__(self, command: Callable[[int], Sequence[str]], count: int, sock: socket.socket):
        self.command, self.count, self.sock = command, count, sock
        self.workers: dict[int, Worker] = {}
        self.retiring: list[subprocess.Popen] = []  # replaced by a reload, finishing their requests
        self.stopping = False
        self.reload_asked = False
        self.quick_crashes = 0

    def start(self, number: int) -> Worker:
        read_fd, write_fd = os.pipe()
        env = dict(os.environ) | {
            LISTEN_FD_ENV: str(self.sock.fileno()),
            READY_FD_ENV: str(write_fd),
            SUPERVISOR_PID_ENV: str(os.getpid()),
        }
        process = subprocess.Popen(list(self.command(number)), env=env, pass_fds=(self.sock.fileno(), write_fd))
        os.close(write_fd)  # the worker holds the only write end: its exit ends the pipe
        worker = Worker(number, process, read_fd)
        self.workers[number] = worker
        return worker

    def wait_ready(self, worker: Worker, timeout: float = START_TIMEOUT_SECONDS) -> bool:
        """Wait until the worker says it serves (True), or the supervisor is told to stop (False).

        WorkerError if the worker exits, or stays silent for `timeout` seconds, first.
        """
        deadline = time.monotonic() + timeout
        try:
            while not self.stopping and time.monotonic() < deadline:
                readable, _, _ = select.select([worker.ready_fd], [], [], 0.5)
                if readable:  # "1", or nothing: the worker exited and its end of the pipe closed
                    if os.read(worker.ready_fd, 1) == b"1":
                        worker.started = time.monotonic()  # a quick crash counts from here
                        return True
                    break
        finally:
            os.close(worker.ready_fd)
        if self.stopping:
            return False
        try:  # its end of the pipe closes as it exits: give it a moment to be reaped
            worker.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        code = worker.process.returncode
        what = f"exited with code {code}" if code is not None else f"did not start within {timeout:.0f} s"
        raise WorkerError(f"worker {worker.number} (pid {worker.process.pid}) {what}")

    def run(self, on_ready: Callable[[], None] = lambda: None) -> None:
        """Start every worker (the first alone: it builds or refreshes the index once), then keep them up."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._ask_reload)
        try:
            if not self.wait_ready(self.start(1)):
                return
            later = [self.start(number) for number in range(2, self.count + 1)]
            if not all([self.wait_ready(worker) for worker in later]):
                return
            on_ready()
            while not self.stopping:
                self._restart_dead()
                if self.reload_asked:
                    self.reload_asked = False
                    self.reload()
                time.sleep(0.2)
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _restart_dead(self) -> None:
        for number, worker in list(self.workers.items()):
            code = worker.process.poll()
            if code is None or self.stopping:
                continue
            quick = time.monotonic() - worker.started < CRASH_WINDOW_SECONDS
            self.quick_crashes = self.quick_crashes + 1 if quick else 0
            if self.quick_crashes >= MAX_QUICK_CRASHES:
                raise WorkerError(f"workers keep exiting right after they start (last: worker {number}, code {code})")
            log.warning("worker %d (pid %d) exited with code %s; starting another", number, worker.process.pid, code)
            try:
                self.wait_ready(self.start(number))
            except WorkerError as exc:  # seen dead on the next round, and counted
                log.warning("%s", exc)

    def reload(self) -> None:
        """Replace every worker, one at a time: the new one serves before the old one stops.

        A new worker runs the code installed now and reads deflect.toml again (environment
        variables and --options stay as the server was started with). The old one finishes the
        requests it is answering first (deflect.web.draining), so none is refused or cut. If a
        new worker cannot start, the reload stops there and the workers still running go on.
        """
        log.info("reloading %d worker(s), one at a time", len(self.workers))
        for number in sorted(self.workers):
            if self.stopping:
                return  # stop_all stops every worker, old and new
            old = self.workers[number]
            self.retiring.append(old.process)
            try:
                ready = self.wait_ready(self.start(number))
            except WorkerError as exc:
                self._abandon(self.workers[number].process)
                self.workers[number] = old
                self.retiring.remove(old.process)
                log.warning("reload stopped: %s; the workers running go on with what they run", exc)
                return
            if not ready:
                return  # stopping: stop_all stops the new one and the old one
            log.info("worker %d reloaded (pid %d, was %d)", number, self.workers[number].process.pid, old.process.pid)
            self._retire(old.process)
            self.retiring.remove(old.process)
        log.info("reload done: %d worker(s) serving", len(self.workers))

    def _retire(self, process: subprocess.Popen) -> None:
        """SIGTERM: it stops accepting, finishes what it answers, then exits (SIGKILL after a while)."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        self._abandon(process, wait=STOP_TIMEOUT_SECONDS)

    @staticmethod
    def _abandon(process: subprocess.Popen, wait: float = 0.0) -> None:
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _ask_reload(self, _signum, _frame) -> None:
        self.reload_asked = True

    def _stop(self, _signum, _frame) -> None:
        self.stopping = True

    def stop_all(self) -> None:
        """SIGTERM every worker (each writes its queued searches first), SIGKILL what is left after a while."""
        self.stopping = True
        everyone = [w.process for w in self.workers.values()] + self.retiring
        running = [process for process in everyone if process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def worker_command(serve_args: Sequence[str], verbose: bool) -> list[str]:
    """The command line of one worker: this Python running `deflect serve` with the same options."""
    return [sys.executable, "-m", "deflect", *(["--verbose"] if verbose else []), "serve", *serve_args]
