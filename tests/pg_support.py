"""A throwaway PostgreSQL server for the tests and benchmarks (Debian's binaries, 127.0.0.1 only)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class LocalPostgres:
    """A throwaway PostgreSQL server on 127.0.0.1 from Debian's binaries, in a temp folder.

    stop() and start() again keep its data and port (the database outage tests); remove()
    stops it for good and deletes the folder.
    """

    def __init__(self) -> None:
        initdb, self.pg_ctl = find_pg_bin("initdb"), find_pg_bin("pg_ctl")
        if not initdb or not self.pg_ctl:
            raise RuntimeError("PostgreSQL binaries not found (apt-get install postgresql)")
        # Not under pytest's tmp folder: that one is private to root, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="deflect-pg-"))
        self.data, sockets = self.root / "data", self.root / "sock"
        sockets.mkdir()
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.root, "postgres")
            shutil.chown(sockets, "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        subprocess.run([*self.prefix, initdb, "-D", str(self.data), "-U", "deflect", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True)
        self.options = f"-p {self.port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200"
        self.url = f"postgresql+psycopg://deflect@127.0.0.1:{self.port}"

    def start(self) -> None:
        subprocess.run([*self.prefix, self.pg_ctl, "-D", str(self.data), "-o", self.options,
                        "-l", str(self.root / "log"), "-w", "start"], check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run([*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"], capture_output=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def local_postgres() -> Iterator[str]:
    """Start a throwaway PostgreSQL server on 127.0.0.1 from Debian's binaries; yield its URL."""
    server = LocalPostgres()
    try:
        server.start()
        yield server.url
    finally:
        server.remove()


def fresh_database(server_url: str) -> str:
    """Create an empty database on the server; return its URL."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"{server_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return f"{server_url}/{name}"
