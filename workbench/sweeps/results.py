"""Reading a sweep back: its record, its trials as one table sorted by the metric, its best configuration.

Why functions of the run store only (no manager, no Optuna): the pages, the CLI and a notebook read
sweeps that another process may be driving, or that a process long gone drove.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from workbench.errors import WorkbenchError, received
from workbench.sweeps import records
from workbench.sweeps.records import SweepRecord, TrialRow
from workbench.sweeps.spec import default_direction

BASE_COLUMNS = ("trial", "run_id", "state", "status")


def get_sweep(store: Any, sweep_id: str) -> SweepRecord | None:
    """The sweep as recorded (`interrupted` when the process driving it is gone), or None."""
    return records.get(store, sweep_id)


def list_sweeps(store: Any) -> list[SweepRecord]:
    """Every sweep in the store, newest first."""
    return records.all_sweeps(store)


def _direction(spec: dict[str, Any]) -> str:
    return spec.get("direction") or default_direction(spec.get("metric", "val_accuracy"))


def _require(store: Any, sweep_id: str) -> SweepRecord:
    record = records.get(store, sweep_id)
    if record is None:
        raise WorkbenchError(f"No sweep {sweep_id} here: see `workbench sweeps list`. {received(sweep_id=sweep_id)}")
    return record


def trial_rows(store: Any, sweep_id: str) -> tuple[SweepRecord, list[TrialRow]]:
    """The record and its trials; a trial an interrupted sweep left `running` takes its run's ending."""
    record = _require(store, sweep_id)
    rows = records.trials(store, sweep_id)
    if record.status != "interrupted":
        return record, rows
    metric = record.spec.get("metric", "val_accuracy")
    out = []
    for row in rows:
        run = store.get_run(row.run_id) if row.state == "running" and row.run_id else None
        if run is not None and run.status not in ("queued", "running", "paused"):
            value = run.final_metrics.get(metric) if run.status == "completed" else None
            state = "complete" if isinstance(value, int | float) else "stopped" if run.status == "stopped" else "failed"
            row = TrialRow(row.trial, row.run_id, row.params, state, value if state == "complete" else row.value,
                           row.epochs_done, run.error)
        out.append(row)
    return record, out


def sweep_frame(store: Any, sweep_id: str) -> pd.DataFrame:
    """One row per trial: trial, run_id, state, status (its run's), one column per swept setting (named as
    in the spec's params), value (the metric; NaN when none), epochs_done. Best first, NaN last."""
    record, rows = trial_rows(store, sweep_id)
    names = list(record.spec.get("params", {}))
    run_ids = [r.run_id for r in rows if r.run_id]
    statuses = store.statuses(run_ids) if run_ids else {}
    data = [{"trial": r.trial, "run_id": r.run_id, "state": r.state, "status": statuses.get(r.run_id),
             **{name: r.params.get(name) for name in names},
             "value": float(r.value) if r.value is not None else math.nan, "epochs_done": int(r.epochs_done or 0)}
            for r in rows]
    frame = pd.DataFrame(data, columns=[*BASE_COLUMNS, *names, "value", "epochs_done"])
    frame = frame.astype({"trial": "int64", "value": "float64", "epochs_done": "int64"})
    ascending = _direction(record.spec) == "minimize"
    return frame.sort_values(["value", "trial"], ascending=[ascending, True], na_position="last",
                             kind="stable").reset_index(drop=True)


def best_trial(store: Any, sweep_id: str) -> TrialRow | None:
    """The best complete trial (ties: the earlier one), or None."""
    record, rows = trial_rows(store, sweep_id)
    done = [r for r in rows if r.state == "complete" and r.value is not None and r.run_id]
    if not done:
        return None
    sign = 1.0 if _direction(record.spec) == "minimize" else -1.0
    return min(done, key=lambda r: (sign * r.value, r.trial))


def best_config(store: Any, sweep_id: str) -> dict[str, Any]:
    """The best complete trial's TrainConfig dict, its sweep labels taken off (the base's name and tags),
    so starting it again makes a run of its own, not another trial of the sweep."""
    record = _require(store, sweep_id)
    best = best_trial(store, sweep_id)
    if best is None:
        raise WorkbenchError(f"Sweep {sweep_id} has no completed trial yet: wait for one, or start a new sweep. "
                             f"{received(status=record.status)}")
    run = store.get_run(best.run_id)
    if run is None:
        raise WorkbenchError(f"The best trial's run {best.run_id} is no longer in the store (deleted?): "
                             f"rerun the sweep. {received(run_id=best.run_id)}")
    config = dict(run.config)
    base = record.spec.get("base", {})
    config["name"] = base.get("name")
    config["tags"] = list(base.get("tags") or [])
    return config
