"""Runs whose process is gone: found when a store opens, marked `interrupted`, ended when they last wrote.

A run records the process that owns it (host, pid + that process's start time, so a reused pid is
not mistaken for the owner). A run left `running` or `queued` by a process that no longer exists (a
crash, `kill -9`, a power cut, a process that could not write its last status on a full disk)
becomes `interrupted` the next time any store opens on its host. Only there: a shared PostgreSQL
store is opened by workers on several machines, and a pid means nothing on another one (machine B
would otherwise mark machine A's live runs interrupted). Runs recorded before hosts were (NULL) are
judged by pid alone, as they always were.

Why `ended` is not "now": the store may be opened hours after the process died, and a wall time
that runs to that moment is a lie in every table and estimate. A run's last sign of life is the
later of its last metric row (the recorder's `wall` is seconds since training began, so it is
added to the progress snapshot's `started`) and its last progress snapshot (`written`).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.runs.storage import free_text

if TYPE_CHECKING:
    from workbench.runs.store import RunStore

REASON = "the process running it ended (crash, kill or restart)"
LOW_SPACE_BYTES = 64 * 2**20  # below this, a full disk is the likely reason a run could not record its end


def process_token(pid: int) -> str | None:
    """The start time of a process (from /proc), so a reused pid is not mistaken for the owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return "alive"
        except OSError:
            return None


OWNER = (os.getpid(), process_token(os.getpid()))
HOST = socket.gethostname()


def recover_interrupted(store: RunStore) -> list[str]:
    """Mark runs whose owning process is gone as `interrupted`; their metrics stay. Returns their ids."""
    rows = store._conn().execute(
        "SELECT id, owner_pid, owner_start, created, started, progress FROM runs "
        "WHERE status IN ('queued', 'running', 'paused') AND (owner_host IS NULL OR owner_host = ?)", (HOST,)).fetchall()
    dead = [row for row in rows if (row[1], row[2]) != OWNER and (row[1] is None or process_token(row[1]) != row[2])]
    if not dead:
        return []
    reason = REASON + low_space_hint(store.runs_dir)
    for run_id, _pid, _token, created, started, progress_text in dead:
        progress = _progress(progress_text)
        store.update_run(run_id, status="interrupted", error=reason, error_step=progress.get("step") or None,
                         ended=last_sign_of_life(store, run_id, created, started, progress))
    return [row[0] for row in dead]


def last_sign_of_life(store: RunStore, run_id: str, created: float, started: float | None,
                      progress: dict[str, Any]) -> float:
    """The wall-clock time of the run's last metric row or progress snapshot, whichever is later."""
    signs = [t for t in (started, progress.get("written")) if isinstance(t, int | float)]
    (last_wall,) = store._conn().execute("SELECT MAX(wall) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()
    began = progress.get("started")
    if last_wall is not None and isinstance(began, int | float):
        signs.append(began + last_wall)
    return max(signs) if signs else created


def low_space_hint(runs_dir: Path) -> str:
    """'; the runs directory's disk has only 0.2 MiB free…' when a full disk may be why, else ''."""
    import shutil

    try:
        if shutil.disk_usage(runs_dir).free >= LOW_SPACE_BYTES:
            return ""
    except OSError:
        return ""
    return (f"; the runs directory's disk is nearly full ({free_text(runs_dir)} at {runs_dir}), which ends runs: "
            "free space or use --runs-dir on another disk")


def _progress(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
