"""`RunManager`: the one place that starts, queues and stops training runs.

Process-wide (one per runs directory), thread-safe. The UI and the CLI only call `start`, `stop`,
`steer` (`pause`, `unpause`), `resume`, `status`, `wait`, `record`, `list` and `snapshot`; runs never touch the UI. Runs beyond `max_concurrent` wait in a
FIFO queue. Two executors carry a run out, both through `workbench.runs.execute`:

- `thread` (the CLI, the API, notebooks, tests): a background thread of this process. Keras global
  state is thread-local, so each thread sets its own seed and dtype policy.
- `process` (the app): an engine worker process from a warm `WorkerPool`, driven by the pool's
  background threads, so rendering pages never competes with a training loop for the interpreter.
  Stop goes to the worker as a control message; a worker that dies marks its run, nothing else.
- `ray`: a Ray task per run on a cluster (`runs.ray_executor`), as many at once as the cluster has
  room for; stop and steering travel through the run store, which every node shares.

Either way any exception ends that run as `failed` with its message and step; others carry on, and
progress (phase, step, ETA) is written to the run store, where every page reads it.

The manager also keeps each run's `Outcome` in memory. When the store cannot record it (a full
disk, `runs.storage`), `wait` and `status` still answer the real end and `record` hands it over with
`unrecorded=True` (and tries the store again), so no caller waits forever on a run that says `running`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.config import TrainConfig
from workbench.runs.execute import Outcome, execute, explain, record_outcome
from workbench.runs.storage import StoreWriteError
from workbench.runs.store import ACTIVE, RESUMABLE, RunRecord, RunStore, default_runs_dir
from workbench.train.callbacks import LiveState

EXECUTORS = ("thread", "process", "ray")


@dataclass
class _Run:
    run_id: str
    config: TrainConfig
    stop: threading.Event = field(default_factory=threading.Event)
    live: LiveState = field(default_factory=LiveState)
    thread: threading.Thread | None = None
    in_process: bool = True  # False: an engine worker trains it (progress comes from the store)
    resume: bool = False  # continue from the run's epoch checkpoint
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None  # set before `done`: how it ended, and whether the store holds that


def default_executor() -> str:
    """WORKBENCH_EXECUTOR, else `thread`; the app asks for `process` itself."""
    return os.environ.get("WORKBENCH_EXECUTOR", "thread")


class RunManager:
    _instances: dict[Path, RunManager] = {}
    _instances_lock = threading.Lock()

    def __init__(self, runs_dir: str | Path | None = None, max_concurrent: int = 1, executor: str = "thread",
                 ray_address: str | None = None, store_url: str | None = None) -> None:
        if executor not in EXECUTORS:
            from workbench.errors import WorkbenchError

            raise WorkbenchError(f"executor must be one of {', '.join(EXECUTORS)}. Received: executor={executor!r}")
        self.store = RunStore(runs_dir, url=store_url) if store_url else RunStore(runs_dir)  # url: WORKBENCH_STORE_URL
        self.max_concurrent = max_concurrent
        self.executor = executor
        self._lock = threading.RLock()
        self._queue: collections.deque[_Run] = collections.deque()
        self._active: dict[str, _Run] = {}
        self._runs: dict[str, _Run] = {}
        self._broken: str | None = None
        self.pool = None
        if executor == "process":
            from workbench.runs.pool import WorkerPool

            self.pool = WorkerPool(self.store.runs_dir, max_concurrent, on_ready=self._launch,
                                   on_done=self._worker_done, on_broken=self._pool_broken)
        elif executor == "ray":
            from workbench.runs.ray_executor import RayExecutor, default_address

            self.ray_address = ray_address or default_address()
            self.pool = RayExecutor(self.store, self.ray_address, on_ready=self._launch, on_done=self._worker_done,
                                    on_broken=self._pool_broken)
            self.max_concurrent = 10**6  # the cluster's room decides (`RayExecutor.idle_slot`)

    @classmethod
    def get(cls, runs_dir: str | Path | None = None, executor: str | None = None,
            max_concurrent: int = 1, ray_address: str | None = None) -> RunManager:
        """The process-wide manager for a runs directory (created on first use, with `executor`)."""
        key = Path(runs_dir if runs_dir is not None else default_runs_dir()).resolve()
        with cls._instances_lock:
            if key not in cls._instances:
                cls._instances[key] = cls(key, max_concurrent=max_concurrent, executor=executor or default_executor(),
                                          ray_address=ray_address)
            return cls._instances[key]

    # -- public API -------------------------------------------------------------------------
    def start(self, config: TrainConfig | dict[str, Any]) -> str:
        """Validate, record as `queued`, and launch when a slot is free. Bad input raises here."""
        from workbench.train.preflight import preflight

        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        self.store.check_space()
        preflight(config)  # data and model problems surface now, as a WorkbenchError, not in a thread
        if self._broken:
            from workbench.errors import WorkbenchError

            raise WorkbenchError(f"No run can start: {self._broken}")
        run_id = self.store.create_run(config.to_dict(), config.display_name(), status="queued")
        run = _Run(run_id, config, in_process=self.pool is None)
        with self._lock:
            self._runs[run_id] = run
            self._queue.append(run)
            self._launch()
        return run_id

    def start_group(self, config: TrainConfig | dict[str, Any], seeds: Sequence[int]) -> list[str]:
        """The same configuration once per seed, queued in order: replicates that Compare folds into one
        seed group (`workbench.seed_groups`). Every replicate's config is validated before the first is queued."""
        from workbench.seed_groups import replicates

        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        return [self.start(replicate) for replicate in replicates(config, seeds)]

    def stop(self, run_id: str) -> bool:
        """Ask a run to end after its current batch (or drop it from the queue). Every page sees
        `stop_requested` at once and shows "stopping…" until the run's status says it ended."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.done.is_set():
                return False
            run.stop.set()
            if run in self._queue:
                self._queue.remove(run)
                with contextlib.suppress(StoreWriteError):  # (recorded with the outcome below, if it can be)
                    self.store.update_run(run_id, stop_requested=time.time())
                run.outcome = record_outcome(self.store, run_id, Outcome("stopped"))
                run.done.set()
                return True
            with contextlib.suppress(StoreWriteError):  # a full disk: the stop still reaches the run
                self.store.update_run(run_id, stop_requested=time.time())
        if self.pool is not None:
            self.pool.stop(run_id)
        return True

    # -- steering and resuming (`runs.interventions`, `train.steering`, `train.checkpoint`) ----------
    def steer(self, run_id: str, kind: str, source: str = "api", **args: Any):
        """Ask a queued, running or paused run for an intervention: "pause", "unpause", "lr" (set= or
        scale=, group=), "unfreeze" (group=), "freeze" (group=), "stop_epoch". It applies at the run's
        next step boundary and is recorded with that step (`runs.interventions.history`)."""
        from workbench.runs import interventions

        return interventions.steer(self.store, run_id, kind, args, source)

    def pause(self, run_id: str, source: str = "api"):
        return self.steer(run_id, "pause", source)

    def unpause(self, run_id: str, source: str = "api"):
        return self.steer(run_id, "unpause", source)

    def resume(self, run_id: str) -> str:
        """Continue a stopped, interrupted or failed run from its last epoch checkpoint, as the same run
        (same id, the same curve from the checkpoint's step on). Queued like a new run."""
        from workbench.errors import WorkbenchError
        from workbench.errors import received as got
        from workbench.train import checkpoint
        from workbench.train.preflight import preflight

        record = self.store.get_run(run_id)
        if record is None:
            raise WorkbenchError(f"No run {run_id} here: see `workbench runs list`. {got(run_id=run_id)}")
        if record.status not in RESUMABLE:
            raise WorkbenchError(f"Only a stopped, interrupted or failed run can be resumed; this one is "
                                 f"{record.status}. {got(status=record.status)}")
        found = checkpoint.describe(self.store.runs_dir / run_id)
        if found is None:
            raise WorkbenchError("This run has no checkpoint (it ended before its first epoch did, or was imported): "
                                 f"start it again with Run again. {got(run_id=run_id)}")
        config = TrainConfig.from_dict(record.config)
        preflight(config)
        with self._lock:
            old = self._runs.get(run_id)
            if old is not None and not old.done.is_set():
                raise WorkbenchError(f"Run {run_id} is still ending here: try again in a moment. {got(run_id=run_id)}")
            if not self.store.claim(run_id, RESUMABLE):
                now = self.store.get_run(run_id).status
                raise WorkbenchError(f"Run {run_id} was resumed a moment ago (it is {now} now): nothing to do. "
                                     f"{got(status=now)}")
            run = _Run(run_id, config, in_process=self.pool is None, resume=True)
            self._runs[run_id] = run
            self._queue.append(run)
            self._launch()
        return run_id

    def status(self, run_id: str) -> str | None:
        record = self._overlay(self.store.get_run(run_id))
        return record.status if record else None

    def list(self) -> list[RunRecord]:
        return [self._overlay(r) for r in self.store.list_runs()]

    def record(self, run_id: str) -> RunRecord | None:
        """The run as stored, or, when it ended here but the store could not record that (a full disk),
        with its real status, error and end overlaid and `unrecorded=True`. Tries the store again first."""
        run = self._runs.get(run_id)
        if run is not None and run.done.is_set() and run.outcome is not None and not run.outcome.recorded:
            with self._lock:
                if not run.outcome.recorded:
                    run.outcome = record_outcome(self.store, run_id, run.outcome)
        return self._overlay(self.store.get_run(run_id))

    def snapshot(self, run_id: str) -> dict[str, Any] | None:
        """Live progress of a run: read in memory when a thread here trains it, else from the store."""
        run = self._runs.get(run_id)
        if run is not None and run.in_process:
            return run.live.to_dict()
        record = self.store.get_run(run_id)
        return progress_now(record) if record is not None and record.progress else None

    def wait(self, run_id: str, timeout: float | None = None) -> str | None:
        """The run's status once it ends (or after `timeout`). A run that ended here answers its real
        end even when the store could not record it: a caller polling for an end always gets one."""
        run = self._runs.get(run_id)
        if run is not None:
            run.done.wait(timeout)
        return self.status(run_id)

    @property
    def unavailable(self) -> str | None:
        """Why no run can start now (no engine worker starts, the Ray cluster cannot be reached), or None."""
        return self._broken

    def capacity(self) -> int:
        """How many runs train at once here: `max_concurrent`, or on Ray what the cluster has room for now."""
        if self.executor == "ray":
            return self.pool.capacity()
        return self.max_concurrent

    def describe(self) -> str:
        """Where runs train and where they are kept, for the pages: 'a Ray cluster at 10.0.0.5:6379 (8 runs at
        once) · runs in PostgreSQL db:5432/workbench'."""
        at_once = self.capacity()
        where = {"thread": "a thread of this process", "process": "engine worker processes on this machine",
                 "ray": f"a Ray cluster at {getattr(self, 'ray_address', None) or 'a private local instance'}"}
        return (f"{where[self.executor]} ({at_once} run{'s' if at_once != 1 else ''} at once) · "
                f"runs in {self.store.describe()}")

    def queue_note(self) -> str | None:
        """'3 run(s) queued or running: new runs wait in line (1 trains at a time).' once the slots are full."""
        active, at_once = self.active(), self.capacity()
        if len(active) < at_once:
            return None
        return (f"{len(active)} run(s) queued or running: new runs wait in line ({at_once} "
                f"train{'s' if at_once == 1 else ''} at a time).")

    def active(self) -> list[str]:
        with self._lock:
            return [r.run_id for r in self._queue] + list(self._active)

    def close(self) -> None:
        """End the engine workers (the process executor); a thread executor has nothing to close."""
        if self.pool is not None:
            self.pool.close()

    # -- internals --------------------------------------------------------------------------
    def _launch(self) -> None:
        """Start queued runs while a slot is free (a thread, or an idle engine worker)."""
        with self._lock:
            while self._queue and len(self._active) < self.max_concurrent:
                slot = self.pool.idle_slot() if self.pool is not None else None
                if self.pool is not None and slot is None:
                    return  # the workers are starting: `on_ready` calls back
                run = self._queue.popleft()
                self._active[run.run_id] = run
                if slot is not None:
                    self.pool.assign(slot, run.run_id, run.config.to_dict(), resume=run.resume)
                    continue
                run.thread = threading.Thread(target=self._work, args=(run,), name=f"run-{run.run_id}", daemon=True)
                run.thread.start()

    _launch_ready = _launch  # (older name)

    def _work(self, run: _Run) -> None:
        outcome = Outcome("failed", "the run's thread ended without an outcome (a bug: see the log)", run.live.step,
                          recorded=False)
        try:
            outcome = execute(self.store, run.run_id, run.config, run.stop, run.live, resume=run.resume)
        except BaseException as exc:
            outcome = record_outcome(self.store, run.run_id, dataclasses.replace(outcome, error=explain(exc)))
            raise
        finally:
            self._finish(run.run_id, outcome)

    def _finish(self, run_id: str, outcome: Outcome) -> None:
        with self._lock:
            run = self._active.pop(run_id, None)
            if run is not None:
                run.outcome = outcome
                run.done.set()
        self._launch()

    def _worker_done(self, run_id: str, report: dict[str, Any]) -> None:
        """A worker finished `run_id`, or died while training it (`report["status"] == "died"`).

        A worker that could not write the run's end (its disk, or its `ulimit -f`) reports it here
        with `recorded: false`; this process writes it, or keeps it in memory if it cannot either.
        The run ends here whatever happens, or a caller would wait on it forever."""
        outcome = Outcome("failed", report.get("reason") or report.get("error"), recorded=False)
        try:
            outcome = self._worker_outcome(run_id, report)
        except Exception as exc:  # noqa: BLE001 - e.g. the store unreadable: keep the supervisor thread alive
            outcome = dataclasses.replace(outcome, store_error=explain(exc, self.store))
        finally:
            self._finish(run_id, outcome)

    def _worker_outcome(self, run_id: str, report: dict[str, Any]) -> Outcome:
        if report["status"] == "died":
            reason = report["reason"]
            record = self.store.get_run(run_id)
            if record is None or record.status in ACTIVE:
                step = ((record.progress if record else None) or {}).get("step")
                killed = report.get("interrupted") or "SIGKILL" in reason  # resumable from its checkpoint
                outcome = Outcome("interrupted" if killed else "failed", reason, step)
                outcome = record_outcome(self.store, run_id, outcome)
            else:
                outcome = Outcome(record.status, record.error, record.error_step, record.ended or time.time())
        else:
            outcome = Outcome.from_dict(report)
            if not outcome.recorded:
                outcome = record_outcome(self.store, run_id, outcome)
        return outcome

    def _pool_broken(self, message: str | None) -> None:
        """No worker can start: queued runs fail with the reason instead of waiting forever (None: they can
        again, e.g. a Ray cluster that is back)."""
        self._broken = message
        if message is None:
            return
        with self._lock:
            queued, self._queue = list(self._queue), collections.deque()
        for run in queued:
            run.outcome = record_outcome(self.store, run.run_id, Outcome("failed", message))
            run.done.set()

    def _overlay(self, record: RunRecord | None) -> RunRecord | None:
        """`record` with the in-memory end of a run the store could not record (or that it still calls active)."""
        run = self._runs.get(record.id) if record is not None else None
        if run is None or not run.done.is_set() or run.outcome is None:
            return record
        outcome = run.outcome
        if outcome.recorded and record.status not in ACTIVE:
            return record
        return dataclasses.replace(record, status=outcome.status, error=outcome.error, error_step=outcome.error_step,
                                   ended=outcome.ended, final_metrics=outcome.final_metrics or record.final_metrics,
                                   unrecorded=True)


def progress_now(record: RunRecord) -> dict[str, Any]:
    """A stored progress snapshot brought to now: the ETA counts down from when it was written."""
    progress = dict(record.progress)
    if progress.get("eta_s") is not None and progress.get("written") and record.status == "running":
        progress["eta_s"] = max(0.0, progress["eta_s"] - (time.time() - progress["written"]))
    return progress


def training_age(record: RunRecord, now: float) -> float | None:
    """Seconds the run has been in its training phase (None before training began or once it ended)."""
    began = dict((record.progress or {}).get("phases", [])).get("training")
    return now - began if record.status in ACTIVE and began is not None else None


def phase_summary(progress: dict[str, Any], now: float) -> str:
    """'loading data 0s → building the model 1s → training 35s' (the current phase still counting)."""
    from workbench.runs.estimate import duration_text

    phases = [p for p in progress.get("phases", []) if p[0] != "done"]
    parts = []
    for i, (name, began) in enumerate(phases):
        end = phases[i + 1][1] if i + 1 < len(phases) else (now if progress.get("phase") != "done" else began)
        parts.append(f"{name} {duration_text(max(0.0, end - began))}" if end > began or i + 1 == len(phases) else name)
    return " → ".join(parts)


__all__ = ["ACTIVE", "EXECUTORS", "RunManager", "phase_summary", "progress_now", "training_age"]
