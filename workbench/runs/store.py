"""The run store: one embedded SQLite database (WAL) under the runs directory, nothing to start;
or, for workers on several machines, a PostgreSQL database (`WORKBENCH_STORE_URL`, `runs.store_sql`).

Why SQLite in WAL mode: readers (the app, notebooks, the CLI) never block the training thread's
writes, a crash loses at most the last unflushed second, and `sqlite3` ships with Python.
Why PostgreSQL as well: a file database cannot be shared by machines; the same SQL (written once,
`?` placeholders) runs there with the same semantics, and artifacts stay in the shared runs directory.
Each thread gets its own connection; metric rows arrive in batches (see `train.recorder`).

A run records the process that owns it (host, pid + that process's start time). When a store opens,
runs left `running` or `queued` by a process of this host that no longer exists become `interrupted`
(`runs.recovery`). Every write goes through `_write`: a full, read-only or failing disk raises
`StoreWriteError` with one line that says so and what to do (`runs.storage`), never a raw
`sqlite3.OperationalError`, and leaves the database as it was (the transaction is rolled back).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.errors import WorkbenchError, received
from workbench.runs import storage, store_sql
from workbench.runs.recovery import HOST as _HOST
from workbench.runs.recovery import OWNER as _OWNER
from workbench.runs.recovery import process_token  # noqa: F401 - (its former home)
from workbench.runs.storage import StoreWriteError
from workbench.runs.store_sql import Connection
from workbench.runs.store_sql import SqliteConnection as _Transactional  # noqa: F401 - (tests patch it by this name)

MIN_FREE_BYTES = 200 * 2**20  # a run writes metrics, TensorBoard events and (for MiniLM) a 90 MB export
STATUSES = ("queued", "running", "paused", "completed", "stopped", "failed", "interrupted")
ACTIVE = ("queued", "running", "paused")  # not finished: a paused run keeps its worker and its memory
RESUMABLE = ("stopped", "interrupted", "failed")  # ended early: Resume continues them from their checkpoint
_RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    status TEXT NOT NULL, config TEXT NOT NULL, device TEXT, trainable_params INTEGER, total_params INTEGER,
    final_metrics TEXT, error TEXT, error_step INTEGER, started REAL, ended REAL,
    owner_pid INTEGER, owner_start TEXT, progress TEXT, stop_requested REAL
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL, key TEXT NOT NULL,
    value REAL, wall REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_run_key_step ON metrics (run_id, key, step);
CREATE TABLE IF NOT EXISTS interventions (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, requested REAL NOT NULL, kind TEXT NOT NULL, args TEXT NOT NULL,
    source TEXT, step INTEGER, applied REAL, outcome TEXT, PRIMARY KEY (run_id, seq)
);
"""
# Columns added after the first release: stores written before them gain them when opened.
ADDED_COLUMNS = {"progress": "TEXT", "stop_requested": "REAL", "origin": "TEXT", "owner_host": "TEXT"}
METRIC_COLUMNS = "run_id, step, epoch, key, value, wall"
RUN_COLUMNS = ("id, name, created, updated, status, config, device, trainable_params, total_params, final_metrics, "
               "error, error_step, started, ended, progress, stop_requested, origin")


def default_runs_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_RUNS_DIR", "runs"))


def store_exists(runs_dir: Path) -> bool:
    """Whether there is a store to read (a reader must not create one for a mistyped --runs-dir): a
    PostgreSQL store (WORKBENCH_STORE_URL) always is; a SQLite one when its file exists."""
    return bool(os.environ.get("WORKBENCH_STORE_URL")) or (Path(runs_dir) / "workbench.db").is_file()


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str
    created: float
    updated: float
    status: str
    config: dict[str, Any]
    device: str | None
    trainable_params: int | None
    total_params: int | None
    final_metrics: dict[str, Any]
    error: str | None
    error_step: int | None
    started: float | None
    ended: float | None
    progress: dict[str, Any] = field(default_factory=dict)  # phase, step, ETA… (see LiveState.to_dict)
    stop_requested: float | None = None  # when Stop was pressed (the run ends after its current batch)
    origin: dict[str, Any] | None = None  # an imported run: {"imported": when, "bundle": file name, ...}
    # True only on `RunManager.record`: the run ended, but the store could not record it (a full disk);
    # status, error and ended then come from the manager's memory.
    unrecorded: bool = False

    @property
    def wall_s(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if not self.unrecorded:  # (a stored run never is: `runs show` and `runs list --json` stay as they were)
            del data["unrecorded"]
        data["wall_s"] = self.wall_s
        return data


class RunStore:
    """Runs and their metrics in `<runs_dir>/workbench.db` (or the PostgreSQL database at `url`, by default
    `WORKBENCH_STORE_URL`); artifacts in `<runs_dir>/<run_id>/`."""

    def __init__(self, runs_dir: str | Path | None = None, url: str | None = None) -> None:
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.url = url or os.environ.get("WORKBENCH_STORE_URL") or None
        if self.url and not self.url.startswith(("postgresql://", "postgres://")):
            raise WorkbenchError("The store URL must be a PostgreSQL URL like postgresql://user@host:5432/db (or "
                                 f"unset, for SQLite). Received: store_url={store_sql.redact(self.url)}")
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=self.runs_dir).close()  # can we write here at all?
        except OSError as exc:
            raise WorkbenchError(f"The runs directory is not writable ({exc.strerror}): choose another with "
                                 f"--runs-dir or WORKBENCH_RUNS_DIR. {received(runs_dir=str(self.runs_dir))}") from None
        self.path = None if self.url else self.runs_dir / "workbench.db"
        self._local = threading.local()
        # what a failing disk raises, and a duplicate key (`runs.bundle_import`): known before any connection
        self._errors, self.integrity_errors = store_sql.error_types(self.url)
        with self._disk_errors():  # a new store on a full disk: say so, as for any write
            self._conn().executescript(SCHEMA)
        self._add_missing_columns()
        with contextlib.suppress(StoreWriteError):  # a full disk: the runs are still readable; recover next time
            self.recover_interrupted()
        storage.keep_reserve(self.runs_dir)

    # -- connections ----------------------------------------------------------------------
    def _conn(self) -> Connection:
        """This thread's connection; a PostgreSQL one the server dropped (a restart) is replaced."""
        conn = getattr(self._local, "conn", None)
        if conn is None or not conn.usable():
            conn = self._local.conn = store_sql.connect(self.path, self.url)
        return conn

    def describe(self) -> str:
        """'SQLite runs/workbench.db' or 'PostgreSQL 127.0.0.1:5432/workbench' (never a password)."""
        return f"PostgreSQL {store_sql.redact(self.url).split('://', 1)[1]}" if self.url else f"SQLite {self.path}"

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction; a disk that cannot take it raises StoreWriteError (rolled back, store intact)."""
        with self._disk_errors(), self._conn() as conn:
            yield conn

    @contextlib.contextmanager
    def _disk_errors(self) -> Iterator[None]:
        try:
            yield
        except (*self._errors, OSError) as exc:
            error = storage.store_error(exc, self.runs_dir, server=self.describe() if self.url else None)
            if error is None:
                raise
            raise error from exc

    def ensure_schema(self, schema: str) -> None:
        """Create the tables and indexes of another part of the engine (e.g. `workbench.sweeps`) in this
        store: `CREATE TABLE IF NOT EXISTS ...` statements in SQLite's dialect (TEXT, INTEGER, REAL), which a
        PostgreSQL store translates (`runs.store_sql`)."""
        with self._disk_errors():
            self._conn().executescript(schema)

    def release_reserve(self) -> bool:
        """Free the runs directory's reserve so that a run's last status fits on a full disk (`runs.storage`)."""
        return storage.release_reserve(self.runs_dir)

    def _add_missing_columns(self) -> None:
        have = {row[1] for row in self._conn().execute("PRAGMA table_info(runs)")}
        for name, kind in ADDED_COLUMNS.items():
            if name not in have:
                with contextlib.suppress(*self._errors):  # another process added it first
                    self._conn().execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")

    # -- runs -----------------------------------------------------------------------------
    def create_run(self, config: dict[str, Any], name: str, status: str = "queued") -> str:
        now = time.time()
        run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + "-" + secrets.token_hex(3)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (id, name, created, updated, status, config, final_metrics, owner_pid, owner_start,"
                " owner_host) VALUES (?, ?, ?, ?, ?, ?, '{}', ?, ?, ?)",
                (run_id, name, now, now, status, json.dumps(config), _OWNER[0], _OWNER[1], _HOST))
        return run_id

    def update_run(self, run_id: str, **fields: Any) -> None:
        allowed = {"status", "device", "trainable_params", "total_params", "final_metrics", "error",
                   "error_step", "started", "ended", "name", "progress", "stop_requested", "origin"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"Unknown run fields {sorted(bad)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"Unknown status {fields['status']!r}")
        for key in ("final_metrics", "progress", "origin"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        fields["updated"] = time.time()
        columns = ", ".join(f"{k} = ?" for k in fields)
        with self._write() as conn:
            conn.execute(f"UPDATE runs SET {columns} WHERE id = ?", (*fields.values(), self.check_id(run_id)))

    def claim(self, run_id: str, from_statuses: Sequence[str], status: str = "queued") -> bool:
        """This process owns the run from now on, if it is still in one of `from_statuses` (a resumed run:
        `runs.recovery` asks whether its owner lives). One conditional UPDATE, so of two tabs or processes
        resuming the same run at once exactly one gets it; returns whether this one did."""
        marks = ", ".join("?" * len(from_statuses))
        with self._write() as conn:
            return conn.execute(
                f"UPDATE runs SET status = ?, owner_pid = ?, owner_start = ?, owner_host = ?, stop_requested = NULL, "
                f"updated = ? WHERE id = ? AND status IN ({marks})",
                (status, _OWNER[0], _OWNER[1], _HOST, time.time(), self.check_id(run_id), *from_statuses)).rowcount == 1

    def update_progress(self, run_id: str, progress: dict[str, Any]) -> None:
        """The live snapshot of a training run (a phase change, or every recorder flush): one small UPDATE."""
        with self._write() as conn:
            conn.execute("UPDATE runs SET progress = ? WHERE id = ?", (json.dumps(progress), self.check_id(run_id)))

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._conn().execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (self.check_id(run_id),)).fetchone()
        return _record(row) if row else None

    def statuses(self, run_ids: Sequence[str]) -> dict[str, str]:
        """{run_id: status}: the cheap poll of a page that watches some runs."""
        ids = [self.check_id(i) for i in run_ids]
        if not ids:  # (`IN ()` is SQLite's alone)
            return {}
        rows = self._conn().execute(f"SELECT id, status FROM runs WHERE id IN ({', '.join('?' * len(ids))})",
                                    ids).fetchall()
        return dict(rows)

    def list_runs(self, statuses: Sequence[str] | None = None) -> list[RunRecord]:
        query, args = f"SELECT {RUN_COLUMNS} FROM runs", ()
        if statuses:
            query += f" WHERE status IN ({', '.join('?' * len(statuses))})"
            args = tuple(statuses)
        rows = self._conn().execute(query + " ORDER BY created DESC", args).fetchall()
        return [_record(r) for r in rows]

    def runs_frame(self, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per run with the fields charts and tables need (config flattened where useful)."""
        records = self.list_runs()
        if run_ids is not None:
            wanted = set(run_ids)
            records = [r for r in records if r.id in wanted]
        rows = []
        for r in records:
            c = r.config
            rows.append({"id": r.id, "name": r.name, "status": r.status, "created": r.created,
                         "model": c.get("model"), "dataset": c.get("data"), "method": c.get("method"),
                         "seed": c.get("seed"), "batch_size": c.get("batch_size"), "epochs": c.get("epochs"),
                         "trainable_params": r.trainable_params, "total_params": r.total_params,
                         "wall_s": r.wall_s, "device": r.device, "error": r.error, "config": c,
                         "imported": (r.origin or {}).get("bundle"),  # the bundle it came from (None: trained here)
                         **{k: v for k, v in r.final_metrics.items() if isinstance(v, int | float)}})
        return pd.DataFrame(rows)

    def delete_run(self, run_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM metrics WHERE run_id = ?", (self.check_id(run_id),))
            conn.execute("DELETE FROM interventions WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # -- metrics --------------------------------------------------------------------------
    def append_metrics(self, rows: Iterable[tuple[str, int, int, str, float, float]]) -> None:
        """Insert (run_id, step, epoch, key, value, wall) rows in one transaction."""
        rows = list(rows)
        if rows:
            with self._write() as conn:
                conn.executemany("INSERT INTO metrics (run_id, step, epoch, key, value, wall) VALUES (?, ?, ?, ?, ?, ?)",
                                 rows)

    def delete_metrics_after(self, run_id: str, step: int) -> int:
        """Drop the rows after `step` (a run resumed from its checkpoint there retrains them); returns how many.
        Stage changes are written when the next step begins, labelled with the step before it: those at
        `step` itself belong to the lost steps too."""
        with self._write() as conn:
            return conn.execute("DELETE FROM metrics WHERE run_id = ? AND (step > ? OR (step = ? AND key LIKE "
                                "'trainable/%'))", (self.check_id(run_id), int(step), int(step))).rowcount

    def metrics(self, run_ids: str | Sequence[str], keys: Sequence[str] | None = None,
                since_step: int | None = None) -> pd.DataFrame:
        """Long frame: run_id, step, epoch, key, value, wall (what `workbench.charts` reads)."""
        args: list[Any] = [self.check_id(i) for i in ([run_ids] if isinstance(run_ids, str) else run_ids)] or [""]
        query = f"SELECT {METRIC_COLUMNS} FROM metrics WHERE run_id IN ({', '.join('?' * len(args))})"  # ("": none)
        if keys:
            query += f" AND key IN ({', '.join('?' * len(keys))})"
            args += list(keys)
        if since_step is not None:
            query += " AND step > ?"
            args.append(since_step)
        rows = self._conn().execute(query + " ORDER BY run_id, step, rowid", args).fetchall()
        frame = pd.DataFrame.from_records(rows, columns=METRIC_COLUMNS.split(", "))
        return frame.astype({"step": "int64", "epoch": "int64", "value": "float64", "wall": "float64"})

    # -- lifecycle ------------------------------------------------------------------------
    def recover_interrupted(self) -> list[str]:
        """Mark runs whose owning process is gone as `interrupted`, ended when they last wrote (`runs.recovery`)."""
        from workbench.runs.recovery import recover_interrupted

        return recover_interrupted(self)

    def check_space(self, needed: int = MIN_FREE_BYTES) -> None:
        """Refuse to start a run on a nearly full disk (better now than a crash mid-run)."""
        free = shutil.disk_usage(self.runs_dir).free
        if free < needed:
            raise WorkbenchError(f"Only {free // 2**20} MiB free under the runs directory: free some space or use "
                                 f"--runs-dir on another disk. {received(runs_dir=str(self.runs_dir))}")

    def run_dir(self, run_id: str) -> Path:
        path = self.runs_dir / self.check_id(run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def check_id(run_id: str) -> str:
        """Run ids are generated, never user text: anything else is refused before it meets a path."""
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise WorkbenchError(f"Not a run id: copy one from `workbench runs list`. {received(run_id=run_id)}")
        return run_id

    def resolve_id(self, prefix: str) -> str:
        """Accept a unique prefix of a run id, as git does for commits."""
        if _RUN_ID.match(prefix or ""):
            return prefix
        return self.unique_id("runs", "run", prefix or "", r"[0-9a-f-]{4,22}", shown=prefix)

    def unique_id(self, table: str, noun: str, text: str, pattern: str, shown: Any) -> str:
        """The one id in `table` that starts with `text` (run ids, sweep ids), or one line naming the problem."""
        hint = f"copy one from `workbench {noun}s list`. {received(**{f'{noun}_id': shown})}"
        if not re.fullmatch(pattern, text):
            raise WorkbenchError(f"Not a {noun} id: {hint}")
        rows = self._conn().execute(f"SELECT id FROM {table} WHERE id LIKE ?", (text + "%",)).fetchall()
        if len(rows) != 1:
            raise WorkbenchError(f"{f'No {noun}' if not rows else f'{len(rows)} {noun}s'} match this id: {hint}")
        return rows[0][0]


def _record(row: Sequence[Any]) -> RunRecord:
    (run_id, name, created, updated, status, config, device, trainable, total, final, error, error_step,
     started, ended, progress, stop_requested, origin) = row
    return RunRecord(run_id, name, created, updated, status, json.loads(config), device, trainable, total,
                     json.loads(final or "{}"), error, error_step, started, ended, json.loads(progress or "{}"),
                     stop_requested, json.loads(origin) if origin else None)
