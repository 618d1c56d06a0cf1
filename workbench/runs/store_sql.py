"""The run store's two SQL back ends behind one small connection interface; the SQL is written once.

Why: the store (and `runs.interventions`, `runs.recovery`, `runs.bundle_import`, `workbench.sweeps`)
writes SQLite's SQL with `?` placeholders. One machine needs nothing more than the embedded SQLite
file; workers on several machines share a PostgreSQL database (`WORKBENCH_STORE_URL`) and the
runs directory. The PostgreSQL connection translates as it goes: `?` → `%s` (and a literal `%` →
`%%`), DDL types (REAL → DOUBLE PRECISION: PostgreSQL's REAL is a 4-byte float that would round a
timestamp to minutes; INTEGER → BIGINT), `PRAGMA table_info(t)` → information_schema, and a
script → one statement at a time. `metrics` gains a `rowid BIGSERIAL` column there, so
`ORDER BY ..., rowid` (SQLite's insertion order) means the same on both: INSERTs name their columns.

Both have the same semantics: outside a `with` block each statement commits on its own; a `with`
block is one write transaction that waits for every other writer (SQLite: BEGIN IMMEDIATE;
PostgreSQL: `pg_advisory_xact_lock`, taken before its first statement that is not a plain INSERT),
so read-modify-writes (an intervention's next `seq`, an import's exists-then-insert) stay correct.
Readers never wait for writers (WAL / MVCC). A PostgreSQL connection the server dropped (a restart)
is replaced: a read, or a transaction not yet begun, runs again on a new one (`_again_if_dropped`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

WRITE_LOCK = 0x57424E43  # the advisory lock of a PostgreSQL store's writers (`_lock_for`; "WBNC")
ROWID_TABLES = ("metrics",)  # PostgreSQL tables given SQLite's implicit insertion order as a column
_INHERITED: list[Any] = []  # connections a forked child inherited: kept, never closed (they are the parent's)


class SqliteConnection:
    """A SQLite connection whose `with` block is one IMMEDIATE transaction (so writers queue, not fail)."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        self.raw = conn

    def usable(self) -> bool:
        return True

    def execute(self, *args: Any) -> sqlite3.Cursor:
        return self.raw.execute(*args)

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        return self.raw.executemany(*args)

    def executescript(self, script: str) -> None:
        self.raw.executescript(script)

    def __enter__(self) -> SqliteConnection:
        self.raw.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            try:
                self.raw.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()  # a COMMIT that failed (full disk) may leave the transaction open
                raise
        self._rollback()

    def _rollback(self) -> None:
        """Roll back if a transaction is still open: SQLite has already rolled back after some errors
        (SQLITE_FULL), and a second failure here must not hide the first or leave the connection stuck."""
        if self.raw.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.raw.execute("ROLLBACK")


class PostgresConnection:
    """A psycopg 3 connection that speaks the store's SQLite SQL (see the module's docstring)."""

    kind = "postgresql"

    def __init__(self, url: str) -> None:
        self.url, self.pid, self._txs = url, os.getpid(), []  # (open transactions: nested ones are savepoints)
        self._locked = False  # whether this transaction holds the writers' lock (`_lock_for`)
        self._connect()

    def _connect(self) -> None:
        import psycopg

        try:
            self.raw = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise WorkbenchError(
                f"Cannot reach the PostgreSQL run store ({reason}): start the server or fix WORKBENCH_STORE_URL "
                f"(postgresql://user@host:port/db), or unset it to use the SQLite file under the runs directory. "
                f"Received: store_url={redact(self.url)}") from None
        self.raw.adapters.register_loader("numeric", _numeric_loader())  # SUM, AVG: int or float, not Decimal

    def _again_if_dropped(self, safe: bool, action: Callable[[], Any]) -> Any:
        """`action()`; when the server dropped the connection (a restart) and nothing was written yet (a read,
        or a transaction's start), connect again and run it once more. Anything else raises as it was."""
        import psycopg

        try:
            return action()
        except psycopg.OperationalError:
            if not (safe and not self._txs and self.raw.broken):
                raise
            self._connect()
            return action()

    def usable(self) -> bool:
        """False once the server dropped the connection (a restart) or in a forked child: reconnect."""
        if self.pid != os.getpid():
            _INHERITED.append(self.raw)  # closing it here would end the parent's session
            return False
        return not (self.raw.closed or self.raw.broken)

    def execute(self, sql: str, params: Any = ()) -> Any:
        query, values = translate(sql), _values(params)
        self._lock_for(sql)
        return self._again_if_dropped(_READ.match(sql) is not None, lambda: self.raw.execute(query, values))

    def executemany(self, sql: str, rows: Any) -> Any:
        self._lock_for(sql)
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), [_values(row) for row in rows])
        return cursor

    def _lock_for(self, sql: str) -> None:
        """In a write transaction, wait for every other writer before the first statement that could depend on
        what they write (anything but a plain INSERT ... VALUES). Why not at BEGIN, as SQLite does: appends
        (metric batches, most of the writes) read nothing, so they need not queue behind one another; a
        duplicate key still fails as it would in turn."""
        if self._txs and not self._locked and not _APPEND.match(sql):
            self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            self._locked = True

    def executescript(self, script: str) -> None:
        """Each statement in turn, in one write transaction (two processes creating a table at once
        would otherwise race in PostgreSQL's catalog)."""
        with self:
            for statement in split_statements(script):
                self.execute(statement)

    def __enter__(self) -> PostgresConnection:
        def begin() -> Any:
            tx = self.raw.transaction()
            tx.__enter__()
            return tx

        self._txs.append(self._again_if_dropped(not self._txs, begin))
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._txs.pop().__exit__(exc_type, exc, tb)
        finally:
            self._locked = self._locked and bool(self._txs)  # (released with the outermost transaction)


Connection = SqliteConnection | PostgresConnection


def connect(path: Path | None, url: str | None) -> Connection:
    return PostgresConnection(url) if url else SqliteConnection(path)


def error_types(url: str | None) -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """(what a full, read-only or failing disk raises, what a duplicate key raises) for a store's back end."""
    if not url:
        return (sqlite3.OperationalError,), (sqlite3.IntegrityError,)
    import psycopg

    return (psycopg.Error,), (psycopg.IntegrityError,)


@functools.cache
def _numeric_loader() -> type:
    """PostgreSQL's SUM of integers is `numeric` (a Decimal, which refuses float arithmetic): load it as SQLite
    gives it, an int when whole, else a float."""
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        def load(self, data: Any) -> int | float:
            text = bytes(data).decode()
            return int(text) if text.lstrip("-").isdigit() else float(text)

    return NumericLoader


def _values(params: Any) -> tuple:
    """SQLite stores a NaN as NULL (so MAX and IS NULL ignore it); PostgreSQL would keep it: do as SQLite."""
    return tuple(None if isinstance(v, float) and v != v else v for v in params)


def redact(url: str) -> str:
    """postgresql://host:port/db: a URL fit for a message (no user, no password, no options)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - unreadable: say only what kind of address it was
        return url.split(":", 1)[0] + "://?"
    return f"postgresql://{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def split_statements(script: str) -> list[str]:
    """A script's statements: split at `;` outside quotes."""
    out, start, quote = [], 0, ""
    for i, ch in enumerate(script):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ";":
            out.append(script[start:i])
            start = i + 1
    out.append(script[start:])
    return [s.strip() for s in out if s.strip()]


_APPEND = re.compile(r"^\s*INSERT\s+INTO\s+\w+\s*(\([\w\s,]*\))?\s*VALUES\s*\([?,\s]*\)\s*$", re.IGNORECASE)
_READ = re.compile(r"^\s*(SELECT|PRAGMA|WITH)\b", re.IGNORECASE)  # statements safe to run twice
_TABLE_INFO = re.compile(r"^\s*PRAGMA\s+table_info\s*\(\s*[\"']?(\w+)[\"']?\s*\)\s*;?\s*$", re.IGNORECASE)
_DDL = re.compile(r"^\s*(CREATE|ALTER)\s+TABLE\b", re.IGNORECASE)
_TYPES = ((re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?\b", re.IGNORECASE), "BIGSERIAL PRIMARY KEY"),
          (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
          (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
          (re.compile(r"\bBLOB\b", re.IGNORECASE), "BYTEA"),
          (re.compile(r"\bADD\s+COLUMN\s+(?!IF\b)", re.IGNORECASE), "ADD COLUMN IF NOT EXISTS "))
_CREATE = re.compile(r"^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?[\"']?(\w+)", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """SQLite's SQL → PostgreSQL's (see the module's docstring); cached, as the store repeats itself."""
    info = _TABLE_INFO.match(sql)
    if info:  # rows shaped like SQLite's: (cid, name, type, notnull, dflt_value, pk)
        return ("SELECT ordinal_position - 1, column_name, data_type, (is_nullable = 'NO')::int, column_default, 0 "
                "FROM information_schema.columns WHERE table_schema = current_schema() "
                f"AND table_name = '{info.group(1).lower()}' ORDER BY ordinal_position")
    if re.match(r"^\s*PRAGMA\b", sql, re.IGNORECASE):
        return "SELECT 1 WHERE false"  # SQLite's tuning switches mean nothing here
    if _DDL.match(sql):
        for pattern, replacement in _TYPES:
            sql = pattern.sub(replacement, sql)
        created = _CREATE.match(sql)
        if created and created.group(2).lower() in ROWID_TABLES:
            sql = sql[:sql.rindex(")")] + ", rowid BIGSERIAL" + sql[sql.rindex(")"):]
    return _placeholders(sql)


def _placeholders(sql: str) -> str:
    """`?` → `%s` outside quotes; every `%` → `%%` (psycopg reads `%` everywhere, quotes or not)."""
    out, quote = [], ""
    for ch in sql:
        if ch == "%":
            out.append("%%")
        elif quote:
            quote = "" if ch == quote else quote
            out.append(ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        else:
            out.append("%s" if ch == "?" else ch)
    return "".join(out)
