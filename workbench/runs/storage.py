"""Write failures of the runs directory (a full, read-only or failing disk): recognised, explained, survived.

Why: a run that cannot write its metrics must end `failed` with a reason a person can act on, not
die with a raw `sqlite3.OperationalError` while the store still says `running`. SQLite reports a
full disk as SQLITE_FULL, a failed write (EIO, or EFBIG past `ulimit -f`) as SQLITE_IOERR (a probe
write then asks the OS which) and a read-only file system as SQLITE_READONLY; Python's own writes raise `OSError` (ENOSPC, EDQUOT, EFBIG,
EROFS, EIO), and TensorFlow's file writers put the C library's text in their message. A PostgreSQL
store (`runs.store_sql`) reports its server's disk by SQLSTATE (53100 disk full, 25006 read-only
transaction, 58030 I/O error); the message then names the server, not the runs directory.

A 1 MiB reserve file lies under the runs directory. When the disk fills, the run that notices
deletes it, so that its `failed` status (a few database pages) still fits; the store puts the
reserve back once there is room again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from workbench.errors import WorkbenchError

RESERVE_NAME = ".space-reserve"
RESERVE_BYTES = 2**20

_ERRNOS = {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EFBIG: "limit", errno.EROFS: "readonly",
           errno.EIO: "io"}
_SQLITE = (("SQLITE_FULL", "full"), ("SQLITE_READONLY", "readonly"), ("SQLITE_IOERR", "io"))
_TEXTS = (("database or disk is full", "full"), ("no space left on device", "full"),
          ("disk quota exceeded", "full"), ("file too large", "limit"), ("read-only file system", "readonly"),
          ("readonly database", "readonly"), ("disk i/o error", "io"), ("input/output error", "io"))
_IO_MODULES = ("tensorflow", "tensorboard", "h5py", "jaxlib")
_SQLSTATES = {"53100": "full", "25006": "readonly", "58030": "io"}  # PostgreSQL's (psycopg's `sqlstate`)


class StoreWriteError(WorkbenchError):
    """The runs directory could not be written (full, read-only, failing): the message says which and what to do."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def write_problem(exc: BaseException | None) -> str | None:
    """'full', 'limit', 'readonly' or 'io' when `exc` (or the exception it was raised from) is a failed write.

    Messages are read only from I/O-level exceptions (OSError, sqlite3, TensorFlow/TensorBoard/h5py
    file writers), so a user-facing error that merely mentions "file too large" is not mistaken for one.
    """
    for _ in range(8):
        if exc is None:
            return None
        if isinstance(exc, StoreWriteError):
            return exc.kind
        if isinstance(exc, OSError) and exc.errno in _ERRNOS:
            return _ERRNOS[exc.errno]
        if type(exc).__module__.split(".")[0] == "psycopg" and getattr(exc, "sqlstate", None) in _SQLSTATES:
            return _SQLSTATES[exc.sqlstate]
        if isinstance(exc, sqlite3.Error):
            name = getattr(exc, "sqlite_errorname", None) or ""
            for prefix, kind in _SQLITE:
                if name.startswith(prefix):
                    return kind
        if isinstance(exc, OSError | sqlite3.Error) or type(exc).__module__.split(".")[0] in _IO_MODULES:
            text = str(exc).lower()
            for fragment, kind in _TEXTS:
                if fragment in text:
                    return kind
        exc = exc.__cause__
    return None


def free_text(path: Path) -> str:
    """'3.2 MiB free' (or 'free space unknown' when even that cannot be asked)."""
    try:
        return f"{shutil.disk_usage(path).free / 2**20:.1f} MiB free"
    except OSError:
        return "free space unknown"


def describe(kind: str, runs_dir: Path, where: Path | None = None) -> str:
    """One line naming the problem and the fix; `where` is the file that failed, when it is known."""
    if where is None or _is_within(where, runs_dir):
        disk, place, fix = "the runs directory's disk", runs_dir, "use --runs-dir on another disk"
    else:
        disk, place, fix = f"the disk holding {where}", where.parent, "write it elsewhere"
    if kind == "full":
        return f"{disk} is full ({free_text(place)} at {place}): free space or {fix}"
    if kind == "limit":
        return f"a file on {disk} reached the file-size limit (ulimit -f, at {place}): raise the limit or {fix}"
    if kind == "readonly":
        return f"{disk} became read-only (at {place}): remount it read-write or {fix}"
    return (f"{disk} failed a write (disk I/O error, {free_text(place)} at {place}): check the disk, its quota "
            f"and `ulimit -f`, or {fix}")


def describe_server(kind: str, server: str) -> str:
    """`describe` for a PostgreSQL store: the server's disk, which the runs directory's owner may not manage."""
    if kind == "readonly":
        return (f"the run store's server accepts no writes ({server} is read-only: a standby, or "
                "default_transaction_read_only): point WORKBENCH_STORE_URL at the primary")
    what = "is full" if kind in ("full", "limit") else "failed a write (I/O error)"
    return f"the disk of the run store's server {what} ({server}): free space or check the database server's disk"


def store_error(exc: BaseException, runs_dir: Path, server: str | None = None) -> StoreWriteError | None:
    """The StoreWriteError for a failed write of the run store, or None when `exc` is another failure.
    `server`: the PostgreSQL store's description, whose own errors are about its disk, not the runs directory."""
    if isinstance(exc, StoreWriteError):
        return exc
    kind = write_problem(exc)
    if server and kind and not isinstance(exc, OSError):
        return StoreWriteError(describe_server(kind, server), kind)
    if kind == "io":  # SQLite says "disk I/O error" for any failed write(): ask the disk what it was
        kind = probe(runs_dir) or kind
    return StoreWriteError(describe(kind, runs_dir), kind) if kind else None


def probe(runs_dir: Path) -> str | None:
    """Write 64 KiB under the runs directory: the kind of failure the OS reports (EFBIG, ENOSPC…), or None."""
    try:
        with tempfile.TemporaryFile(dir=runs_dir) as f:
            f.write(b"\0" * 2**16)
            f.flush()
    except OSError as exc:
        return _ERRNOS.get(exc.errno)
    return None


def failure_text(exc: BaseException, runs_dir: Path) -> str | None:
    """The run's error line when `exc` is a failed write anywhere (store, TensorBoard, export), else None."""
    if isinstance(exc, StoreWriteError):
        return str(exc)
    kind = write_problem(exc)
    if kind is None:
        return None
    filename = getattr(exc, "filename", None)
    return describe(kind, runs_dir, Path(filename) if isinstance(filename, str) and filename else None)


def keep_reserve(runs_dir: Path) -> None:
    """Put the reserve file back when it is missing and the disk has room (best effort, never raises)."""
    path = runs_dir / RESERVE_NAME
    if path.exists():
        return
    partial = runs_dir / (RESERVE_NAME + ".partial")
    try:
        if shutil.disk_usage(runs_dir).free < 8 * RESERVE_BYTES:
            return
        with partial.open("wb") as f:
            f.write(os.urandom(RESERVE_BYTES))  # written, neither sparse nor compressible: the blocks are taken
        partial.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink()


def release_reserve(runs_dir: Path) -> bool:
    """Delete the reserve so that a run's last status fits on a full disk; True when there was one."""
    try:
        (runs_dir / RESERVE_NAME).unlink()
        return True
    except OSError:
        return False


def _is_within(path: Path, root: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError):
        return False
