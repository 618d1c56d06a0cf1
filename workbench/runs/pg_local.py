"""A throwaway PostgreSQL server on loopback, for the tests and the store benchmark (never for users' data).

Why here and not in `tests/`: the benchmark (`benchmarks.store_backends`) starts one too, and both
import it from the package. The server runs as the `postgres` OS user when this process is root
(PostgreSQL refuses root), keeps its data and socket in a private temporary folder, listens on
127.0.0.1 only, trusts loopback connections and skips fsync (a crash loses nothing anyone keeps).
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = "apt-get install postgresql"


class PostgresNotInstalled(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql/*/bin."""


def find_bin_dir() -> Path:
    """The folder holding initdb, pg_ctl and postgres: PATH first, then Debian's versioned folders."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent  # (/usr/local/bin/initdb may be a link into the real folder)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
                      if Path(p).parts[-3].isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    raise PostgresNotInstalled(f"PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin): "
                               f"{INSTALL_HINT}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """`start()`, then `new_database()` for each empty database wanted (a URL), then `stop()`."""

    def __init__(self, max_connections: int = 300) -> None:
        self.max_connections = max_connections
        self.root: Path | None = None
        self._bin_dir = Path()
        self.port: int | None = None
        self._databases = 0

    def _as_owner(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)

    def _run(self, *args: str) -> None:
        done = subprocess.run(self._as_owner(*args), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")

    def start(self) -> PostgresServer:
        bin_dir = find_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="wb-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        data, self.port = self.root / "data", free_port()
        self._run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off -c max_connections={self.max_connections}")
        self._run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "start")
        self._bin_dir = bin_dir
        atexit.register(self.stop)  # a test session or benchmark that ends early leaves no server behind
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg

        self._databases += 1
        name = f"wb_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            self._run(str(self._bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
