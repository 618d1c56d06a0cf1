"""`RunManager`: the one place that starts, queues and stops training runs in background threads.

Process-wide (one per runs directory), thread-safe. The UI and the CLI only call `start`, `stop`,
`status`, `list` and `snapshot`; the worker threads never touch the UI. Runs beyond `max_concurrent`
wait in a FIFO queue. Each thread sets its own Keras seed and dtype policy (Keras global state is
thread-local). Any exception ends that run as `failed` with its message and step; others carry on.
"""

from __future__ import annotations

import collections
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.config import TrainConfig
from workbench.models.registry import BUILD_LOCK
from workbench.runs.store import ACTIVE, RunRecord, RunStore, default_runs_dir
from workbench.train.callbacks import LiveState, TrainingDiverged


@dataclass
class _Run:
    run_id: str
    config: TrainConfig
    stop: threading.Event = field(default_factory=threading.Event)
    live: LiveState = field(default_factory=LiveState)
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)


class RunManager:
    _instances: dict[Path, RunManager] = {}
    _instances_lock = threading.Lock()

    def __init__(self, runs_dir: str | Path | None = None, max_concurrent: int = 1) -> None:
        self.store = RunStore(runs_dir)
        self.max_concurrent = max_concurrent
        self._lock = threading.RLock()
        self._queue: collections.deque[_Run] = collections.deque()
        self._active: dict[str, _Run] = {}
        self._runs: dict[str, _Run] = {}

    @classmethod
    def get(cls, runs_dir: str | Path | None = None) -> RunManager:
        """The process-wide manager for a runs directory (created on first use)."""
        key = Path(runs_dir if runs_dir is not None else default_runs_dir()).resolve()
        with cls._instances_lock:
            if key not in cls._instances:
                cls._instances[key] = cls(key)
            return cls._instances[key]

    # -- public API -------------------------------------------------------------------------
    def start(self, config: TrainConfig | dict[str, Any]) -> str:
        """Validate, record as `queued`, and launch when a slot is free. Bad input raises here."""
        from workbench.train.trainer import preflight

        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        self.store.check_space()
        with BUILD_LOCK:
            preflight(config)  # data and model problems surface now, as a WorkbenchError, not in a thread
        run_id = self.store.create_run(config.to_dict(), config.display_name(), status="queued")
        run = _Run(run_id, config)
        with self._lock:
            self._runs[run_id] = run
            self._queue.append(run)
            self._launch_ready()
        return run_id

    def stop(self, run_id: str) -> bool:
        """Ask a run to end after its current batch (or drop it from the queue)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.done.is_set():
                return False
            run.stop.set()
            if run in self._queue:
                self._queue.remove(run)
                self.store.update_run(run_id, status="stopped", ended=time.time())
                run.done.set()
        return True

    def status(self, run_id: str) -> str | None:
        record = self.store.get_run(run_id)
        return record.status if record else None

    def list(self) -> list[RunRecord]:
        return self.store.list_runs()

    def snapshot(self, run_id: str) -> dict[str, Any] | None:
        """Live progress of a run this process is training (None otherwise)."""
        run = self._runs.get(run_id)
        return run.live.to_dict() if run else None

    def wait(self, run_id: str, timeout: float | None = None) -> str | None:
        run = self._runs.get(run_id)
        if run is not None:
            run.done.wait(timeout)
        return self.status(run_id)

    def active(self) -> list[str]:
        with self._lock:
            return [r.run_id for r in self._queue] + list(self._active)

    # -- internals --------------------------------------------------------------------------
    def _launch_ready(self) -> None:
        while self._queue and len(self._active) < self.max_concurrent:
            run = self._queue.popleft()
            self._active[run.run_id] = run
            run.thread = threading.Thread(target=self._work, args=(run,), name=f"run-{run.run_id}", daemon=True)
            run.thread.start()

    def _work(self, run: _Run) -> None:
        try:
            self._train(run)
        finally:
            with self._lock:
                self._active.pop(run.run_id, None)
                run.done.set()
                self._launch_ready()

    def _train(self, run: _Run) -> None:
        import keras

        from workbench.train.device import device_name
        from workbench.train.distribute import strategy_scope
        from workbench.train.trainer import prepare, train

        store, cfg = self.store, run.config
        store.update_run(run.run_id, status="running", started=time.time(), device=device_name())
        try:
            keras.config.set_dtype_policy("float32" if cfg.mixed_precision == "off" else cfg.mixed_precision)
            with strategy_scope(cfg.strategy):
                with BUILD_LOCK:
                    keras.utils.set_random_seed(cfg.seed)
                    prepared = prepare(cfg)
                store.update_run(run.run_id, trainable_params=prepared.report.trainable,
                                 total_params=prepared.report.total)
                summary = train(prepared, store=store, run_id=run.run_id, stop_event=run.stop, live=run.live)
            status = "stopped" if run.stop.is_set() else "completed"
            store.update_run(run.run_id, status=status, final_metrics=summary, ended=time.time())
        except TrainingDiverged as exc:
            store.update_run(run.run_id, status="failed", error=str(exc), error_step=exc.step, ended=time.time())
        except Exception as exc:  # noqa: BLE001 - any failure ends this run only
            store.update_run(run.run_id, status="failed", error=_explain(exc), error_step=run.live.step,
                             ended=time.time())
            (store.run_dir(run.run_id) / "error.txt").write_text(traceback.format_exc())
        finally:
            run.live.phase = "done"


def _explain(exc: BaseException) -> str:
    """One line for the run table; out-of-memory gets a hint."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    name = type(exc).__name__
    if isinstance(exc, MemoryError) or "ResourceExhausted" in name or "out of memory" in text.lower() or "OOM" in text:
        return f"out of memory ({name}): lower the batch size or max_seq_len, or use method 'lora'"
    return f"{name}: {text}"


__all__ = ["ACTIVE", "RunManager"]
