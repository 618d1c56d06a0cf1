"""Driving a sweep: ask Optuna for a trial, start it as a run, watch it, tell Optuna how it went.

Why a background thread of the calling process and not a worker of its own: the sweep does no
training, it only starts runs through the `RunManager` (whatever its executor: a thread here, an
engine worker process, a Ray cluster) and reads their progress from the run store, every half
second. Each trial is one run, tagged `sweep:<id>` and `trial:<n>`, so any page can find the group.

A trial's run that fails, is interrupted (its worker died) or was stopped by hand ends that trial
only: Optuna is told FAIL and the sweep starts the next one. With `halving`, each new per-epoch value
is reported to Optuna's successive-halving pruner; a trial it prunes is stopped (`manager.stop`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from workbench.errors import WorkbenchError, received
from workbench.runs.storage import StoreWriteError
from workbench.sweeps import records
from workbench.sweeps.records import TrialRow
from workbench.sweeps.search import make_study, suggest
from workbench.sweeps.spec import SweepSpec, epoch_key

POLL_S = 0.5
ACTIVE = ("queued", "running", "paused")  # a run not ended yet (as `runs.store.ACTIVE`)
log = logging.getLogger(__name__)

OnTrial = Callable[[TrialRow], None]


@dataclass
class _Trial:
    trial: optuna.Trial
    values: dict[str, Any]
    run_id: str
    reported: int = 0  # per-epoch values told to Optuna so far
    last: float | None = None
    pruned_at: int | None = None  # epochs done when the pruner stopped it


class _Driver:
    """One sweep's loop, in a daemon thread: at most `parallel` trials in flight, `budget` in all."""

    def __init__(self, manager: Any, spec: SweepSpec, sweep_id: str, on_trial: OnTrial | None) -> None:
        self.manager, self.store, self.spec, self.sweep_id = manager, manager.store, spec, sweep_id
        self.on_trial = on_trial
        self.stop = threading.Event()
        self.key = epoch_key(spec.metric)
        self.parallel = spec.parallel or default_parallel(manager, spec.budget or 1)
        self.active: dict[int, _Trial] = {}
        self.thread = threading.Thread(target=self.run, name=f"sweep-{sweep_id}", daemon=True)

    def run(self) -> None:
        try:
            status = self._loop()
            records.finish(self.store, self.sweep_id, status)
        except BaseException as exc:  # a bug or the store: end the sweep as failed, its runs stopped
            log.exception("sweep %s failed", self.sweep_id)
            for t in self.active.values():
                with contextlib.suppress(Exception):
                    self.manager.stop(t.run_id)
            with contextlib.suppress(Exception):
                records.finish(self.store, self.sweep_id, "failed", f"{type(exc).__name__}: {exc}")
        finally:
            _DRIVERS.pop(self.sweep_id, None)

    def _loop(self) -> str:
        study, asked, stopping = make_study(self.spec), 0, False
        while True:
            if not stopping and (self.stop.is_set() or records.stop_requested(self.store, self.sweep_id)):
                stopping = True
                for t in self.active.values():
                    self.manager.stop(t.run_id)
            while not stopping and asked < (self.spec.budget or 0) and len(self.active) < self.parallel:
                self._ask(study)
                asked += 1
            for number in list(self.active):
                self._poll(study, number)
            if not self.active and (stopping or asked >= (self.spec.budget or 0)):
                return "stopped" if stopping else "completed"
            if stopping:
                time.sleep(POLL_S)
            else:
                self.stop.wait(POLL_S)

    def _ask(self, study: optuna.Study) -> None:
        trial = study.ask()
        values = suggest(trial, self.spec)
        try:
            config = self.spec.trial_config(values, self.sweep_id, trial.number)
            run_id = self.manager.start(config)
        except Exception as exc:  # noqa: BLE001 - this trial cannot start (its config, the disk): the next may
            study.tell(trial, state=TrialState.FAIL)
            self._end(TrialRow(trial.number, None, values, "failed", None, 0, str(exc)))
            return
        records.put_trial(self.store, self.sweep_id, trial.number, values, "running", run_id, epochs_done=0)
        self.active[trial.number] = _Trial(trial, values, run_id)

    def _poll(self, study: optuna.Study, number: int) -> None:
        t = self.active[number]
        status = self.manager.status(t.run_id)
        ended = status not in ACTIVE
        self._read_epochs(t, judge=not ended)
        if not ended:
            return
        del self.active[number]
        record = self.manager.record(t.run_id)
        final = (record.final_metrics or {}).get(self.spec.metric) if record is not None else None
        value = float(final) if isinstance(final, int | float) and math.isfinite(final) else None
        epochs = t.reported if t.pruned_at is None else t.pruned_at
        if status == "completed" and value is not None:
            study.tell(t.trial, value)
            row = TrialRow(number, t.run_id, t.values, "complete", value, epochs, None)
        elif t.pruned_at is not None:
            study.tell(t.trial, state=TrialState.PRUNED)
            row = TrialRow(number, t.run_id, t.values, "pruned", t.last, epochs, None)
        else:
            study.tell(t.trial, state=TrialState.FAIL)
            error = (record.error if record is not None else None) or (
                f"the run has no {self.spec.metric}" if status == "completed" else None)
            state = "stopped" if status == "stopped" else "failed"
            row = TrialRow(number, t.run_id, t.values, state, t.last, epochs, error)
        self._end(row)
        if row.state == "complete":
            with contextlib.suppress(ValueError):  # (no complete trial yet)
                best = study.best_trial.number
                if best == number:
                    records.set_best(self.store, self.sweep_id, t.run_id)

    def _read_epochs(self, t: _Trial, judge: bool) -> None:
        """Report the run's new per-epoch values; with halving, stop it when Optuna prunes it."""
        if self.key is None or t.pruned_at is not None:
            return
        values = self.store.metrics(t.run_id, keys=[self.key]).value.tolist()
        if len(values) <= t.reported:
            return
        for epoch in range(t.reported, len(values)):
            t.last, t.reported = float(values[epoch]), epoch + 1
            t.trial.report(t.last, t.reported)
            last_epoch = t.reported >= int(t.values.get("epochs") or self.spec.base.get("epochs") or 0)
            # Judged at each epoch, as ASHA's rungs, but never after the last: the training is done by then,
            # and stopping it would only cost the trial its test evaluation.
            if self.spec.halving and judge and not last_epoch and t.trial.should_prune():
                t.pruned_at = t.reported
                self.manager.stop(t.run_id)
                break
        with contextlib.suppress(StoreWriteError):  # progress only: the end is written again
            records.put_trial(self.store, self.sweep_id, t.trial.number, t.values, "running", t.run_id,
                              t.last, t.reported)

    def _end(self, row: TrialRow) -> None:
        records.put_trial(self.store, self.sweep_id, row.trial, row.params, row.state, row.run_id, row.value,
                          row.epochs_done, row.error)
        if self.on_trial is not None:
            try:
                self.on_trial(row)
            except Exception:  # noqa: BLE001 - a printing callback must not end the sweep
                log.exception("sweep %s: on_trial failed", self.sweep_id)


_DRIVERS: dict[str, _Driver] = {}  # the sweeps this process drives


def default_parallel(manager: Any, budget: int) -> int:
    """Trials at once when the spec leaves it open: as many as the manager trains at once (`capacity()`
    where it has one: on Ray the cluster's room now, not its unbounded queue), at most the budget."""
    try:
        capacity = manager.capacity() if callable(getattr(manager, "capacity", None)) else manager.max_concurrent
    except Exception:  # noqa: BLE001 - a cluster that cannot say: one at a time
        capacity = 1
    return max(1, min(int(capacity or 1), budget))


def start_sweep(manager: Any, spec: SweepSpec | dict[str, Any], on_trial: OnTrial | None = None) -> str:
    """Check every trial's configuration, record the sweep and drive it in a daemon thread; returns its id
    at once. Bad input raises a one-line `WorkbenchError` here, before any run starts."""
    from workbench.train.preflight import preflight

    if isinstance(spec, dict):
        spec = SweepSpec.from_dict(spec)
    planned = spec.trial_configs()
    preflight(planned[0][1])  # the data and the model, once: a missing file is refused now, not per trial
    sweep_id = records.create(manager.store, spec.to_dict(), spec.name)
    driver = _Driver(manager, spec, sweep_id, on_trial)
    _DRIVERS[sweep_id] = driver
    driver.thread.start()
    return sweep_id


def run_sweep(manager: Any, spec: SweepSpec | dict[str, Any], on_trial: OnTrial | None = None) -> str:
    """`start_sweep`, returning once the sweep ends. Ctrl-C stops it (its runs too) and re-raises."""
    sweep_id = start_sweep(manager, spec, on_trial)
    try:
        wait_sweep(sweep_id)
    except KeyboardInterrupt:
        stop_sweep(manager, sweep_id)
        wait_sweep(sweep_id)
        raise
    return sweep_id


def wait_sweep(sweep_id: str, timeout: float | None = None) -> bool:
    """Wait for a sweep this process drives to end; True once it has (or was never driven here)."""
    driver = _DRIVERS.get(sweep_id)
    if driver is None:
        return True
    end = None if timeout is None else time.monotonic() + timeout
    while driver.thread.is_alive():
        left = None if end is None else end - time.monotonic()
        if left is not None and left <= 0:
            return False
        driver.thread.join(0.25 if left is None else min(0.25, left))  # short joins: Ctrl-C gets through
    return True


def stop_sweep(manager: Any, sweep_id: str) -> None:
    """No new trials; the running ones are stopped. The sweep ends `stopped` once they have ended.
    Works on a sweep another process drives too: that process reads the request from the store."""
    record = records.get(manager.store, sweep_id)
    if record is None:
        raise WorkbenchError(f"No sweep {sweep_id} here: see `workbench sweeps list`. {received(sweep_id=sweep_id)}")
    if record.status != "running":
        return
    records.request_stop(manager.store, sweep_id)
    driver = _DRIVERS.get(sweep_id)
    if driver is not None:
        driver.stop.set()
    for row in records.trials(manager.store, sweep_id):
        if row.state == "running" and row.run_id:
            with contextlib.suppress(WorkbenchError):
                manager.stop(row.run_id)


def start_best_with_seeds(manager: Any, sweep_id: str, seeds: Sequence[int]) -> list[str]:
    """The sweep's best configuration once per seed (one seed group, Compare's "more seeds"), each run
    tagged `sweep-best:<id>`."""
    from workbench.sweeps.results import best_config

    config = best_config(manager.store, sweep_id)
    config["tags"] = [*config.get("tags", []), f"sweep-best:{sweep_id}"]
    return manager.start_group(config, list(seeds))
