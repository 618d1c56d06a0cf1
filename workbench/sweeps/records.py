"""Sweeps in the run store: two tables beside the runs, so a sweep reads back after a restart.

Why in the run store and not in Optuna's storage: every page, the CLI and the bundles already read
this one store (SQLite now, PostgreSQL soon), so the statements here are plain SQL: `CREATE TABLE IF
NOT EXISTS` with TEXT/INTEGER/REAL columns, `?` placeholders, no SQLite-only syntax.

A sweep records the process that drives it (host, pid + start time, as runs do): a sweep left
`running` by a process of this host that is gone reads as `interrupted` (its trials' runs end
`interrupted` through the run store).
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
import weakref
from dataclasses import dataclass
from typing import Any

from workbench.errors import WorkbenchError, received
from workbench.runs.recovery import HOST, OWNER, process_token

SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY, name TEXT, created REAL NOT NULL, updated REAL NOT NULL, spec TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT, best_run_id TEXT, owner_pid INTEGER, owner_start TEXT, owner_host TEXT,
    stop_requested REAL
);
CREATE TABLE IF NOT EXISTS sweep_trials (
    sweep_id TEXT NOT NULL, trial INTEGER NOT NULL, run_id TEXT, params TEXT NOT NULL, state TEXT NOT NULL,
    value REAL, epochs_done INTEGER, error TEXT, updated REAL NOT NULL, PRIMARY KEY (sweep_id, trial)
);
"""
SWEEP_STATUSES = ("running", "completed", "stopped", "failed", "interrupted")
TRIAL_STATES = ("running", "complete", "pruned", "failed", "stopped")
_SWEEP_ID = re.compile(r"^sweep-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
_COLUMNS = "id, name, created, spec, status, error, best_run_id, owner_pid, owner_start, owner_host"
_ready: weakref.WeakSet[Any] = weakref.WeakSet()  # stores whose sweep tables exist


@dataclass(frozen=True)
class SweepRecord:
    id: str
    name: str | None
    created: float
    spec: dict[str, Any]
    status: str
    error: str | None
    best_run_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TrialRow:
    """One trial as stored (`sweep_frame` turns these into its table)."""

    trial: int
    run_id: str | None
    params: dict[str, Any]
    state: str
    value: float | None
    epochs_done: int | None
    error: str | None


def ensure(store: Any) -> None:
    """The sweep tables in this store (created once per store object)."""
    if store not in _ready:
        store.ensure_schema(SCHEMA)
        _ready.add(store)


def check_id(sweep_id: object) -> str:
    if not isinstance(sweep_id, str) or not _SWEEP_ID.match(sweep_id):
        raise WorkbenchError(f"Not a sweep id: copy one from `workbench sweeps list`. {received(sweep_id=sweep_id)}")
    return sweep_id


def resolve_id(store: Any, prefix: str) -> str:
    """A sweep id from a unique prefix of it (with or without 'sweep-'), as `workbench runs` reads run ids."""
    ensure(store)
    text = str(prefix or "")
    text = text if text.startswith("sweep-") else "sweep-" + text
    return store.unique_id("sweeps", "sweep", text, r"sweep-[0-9a-f-]{4,22}", shown=prefix)


def create(store: Any, spec: dict[str, Any], name: str | None) -> str:
    ensure(store)
    now = time.time()
    sweep_id = "sweep-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + "-" + secrets.token_hex(3)
    with store._write() as conn:
        conn.execute("INSERT INTO sweeps (id, name, created, updated, spec, status, owner_pid, owner_start, "
                     "owner_host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (sweep_id, name, now, now, json.dumps(spec), "running", OWNER[0], OWNER[1], HOST))
    return sweep_id


def finish(store: Any, sweep_id: str, status: str, error: str | None = None) -> None:
    assert status in SWEEP_STATUSES, status
    with store._write() as conn:
        conn.execute("UPDATE sweeps SET status = ?, error = ?, updated = ? WHERE id = ?",
                     (status, error, time.time(), sweep_id))


def set_best(store: Any, sweep_id: str, run_id: str | None) -> None:
    with store._write() as conn:
        conn.execute("UPDATE sweeps SET best_run_id = ?, updated = ? WHERE id = ?", (run_id, time.time(), sweep_id))


def request_stop(store: Any, sweep_id: str) -> None:
    with store._write() as conn:
        conn.execute("UPDATE sweeps SET stop_requested = ?, updated = ? WHERE id = ?",
                     (time.time(), time.time(), sweep_id))


def stop_requested(store: Any, sweep_id: str) -> bool:
    row = store._conn().execute("SELECT stop_requested FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
    return bool(row and row[0] is not None)


def put_trial(store: Any, sweep_id: str, trial: int, params: dict[str, Any], state: str,
              run_id: str | None = None, value: float | None = None, epochs_done: int | None = None,
              error: str | None = None) -> None:
    """Write a trial's row (insert on its first write, update after: no dialect-specific upsert)."""
    assert state in TRIAL_STATES, state
    value = None if value is None or not math.isfinite(value) else float(value)
    now = time.time()
    with store._write() as conn:
        changed = conn.execute(
            "UPDATE sweep_trials SET run_id = ?, params = ?, state = ?, value = ?, epochs_done = ?, error = ?, "
            "updated = ? WHERE sweep_id = ? AND trial = ?",
            (run_id, json.dumps(params), state, value, epochs_done, error, now, sweep_id, trial)).rowcount
        if not changed:
            conn.execute("INSERT INTO sweep_trials (sweep_id, trial, run_id, params, state, value, epochs_done, "
                         "error, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (sweep_id, trial, run_id, json.dumps(params), state, value, epochs_done, error, now))


def trials(store: Any, sweep_id: str) -> list[TrialRow]:
    ensure(store)
    rows = store._conn().execute(
        "SELECT trial, run_id, params, state, value, epochs_done, error FROM sweep_trials WHERE sweep_id = ? "
        "ORDER BY trial", (check_id(sweep_id),)).fetchall()
    return [TrialRow(int(t), run_id, json.loads(params), state, value, epochs, error)
            for t, run_id, params, state, value, epochs, error in rows]


def get(store: Any, sweep_id: str) -> SweepRecord | None:
    ensure(store)
    row = store._conn().execute(f"SELECT {_COLUMNS} FROM sweeps WHERE id = ?", (check_id(sweep_id),)).fetchone()
    return _record(row) if row else None


def all_sweeps(store: Any) -> list[SweepRecord]:
    ensure(store)
    rows = store._conn().execute(f"SELECT {_COLUMNS} FROM sweeps ORDER BY created DESC, id DESC").fetchall()
    return [_record(row) for row in rows]


def _record(row: tuple) -> SweepRecord:
    sweep_id, name, created, spec, status, error, best, pid, token, host = row
    here = host is None or host == HOST  # a pid means nothing on another machine (a shared PostgreSQL store)
    if status == "running" and here and (pid, token) != OWNER and (pid is None or process_token(pid) != token):
        status, error = "interrupted", error or "the process driving it ended (crash, kill or restart)"
    return SweepRecord(sweep_id, name, created, json.loads(spec), status, error, best)
