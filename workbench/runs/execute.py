"""Run one training run to its end and record the outcome: the body shared by both executors.

The thread executor calls `execute` in a background thread of the caller's process (the CLI, the
API, notebooks, tests); the app's engine workers (`workbench.runs.worker`) call the same function in
their own process. Whatever happens, the run ends with an `Outcome`: `completed`, `stopped`, or
`failed` with a one-line reason and the step it happened at, written to the store.

A full, read-only or failing disk under the runs directory (`runs.storage`) ends the run at the
first write that fails (a metrics flush, a progress snapshot, TensorBoard, the export) with a reason
that says so. If even the final status cannot be written, `execute` still returns the outcome, with
`recorded=False`: the caller (the run manager, or the engine worker's supervisor) keeps it in memory
and tries the store again; a store opened later marks the run `interrupted` (`runs.recovery`).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from workbench.config import TrainConfig
from workbench.runs.storage import StoreWriteError, failure_text
from workbench.runs.store import RunStore
from workbench.train.callbacks import LiveState, TrainingDiverged


@dataclass(frozen=True)
class Outcome:
    """How a run ended; `recorded` says whether the run store holds it (False: only memory does)."""

    status: str
    error: str | None = None
    error_step: int | None = None
    ended: float = field(default_factory=time.time)
    final_metrics: dict[str, Any] = field(default_factory=dict)
    recorded: bool = True
    store_error: str | None = None  # why the store could not take it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def execute(store: RunStore, run_id: str, config: TrainConfig, stop: threading.Event, live: LiveState,
            resume: bool = False) -> Outcome:
    """Prepare, train, evaluate and save one run; returns its outcome (written to the store if it can be).
    `resume`: continue the run from its epoch checkpoint (`train.checkpoint`)."""
    import keras

    from workbench.train.device import device_name
    from workbench.train.distribute import strategy_scope
    from workbench.train.trainer import prepare, train

    live.publish = lambda snapshot: store.update_progress(run_id, snapshot)  # a failed write ends the run
    details = None
    try:
        store.update_run(run_id, status="running", started=time.time(), device=device_name(),
                         **({"error": None, "error_step": None, "ended": None} if resume else {}))
        keras.config.set_dtype_policy("float32" if config.mixed_precision == "off" else config.mixed_precision)
        with strategy_scope(config.strategy):
            prepared = prepare(config, live=live)  # seeded, under the build lock
            store.update_run(run_id, trainable_params=prepared.report.trainable, total_params=prepared.report.total)
            summary = train(prepared, store=store, run_id=run_id, stop_event=stop, live=live, resume=resume)
        outcome = Outcome("stopped" if stop.is_set() else "completed", final_metrics=summary)
    except TrainingDiverged as exc:
        outcome = Outcome("failed", str(exc), exc.step)
    except Exception as exc:  # noqa: BLE001 - any failure ends this run only
        outcome = Outcome("failed", explain(exc, store), live.step)
        details = traceback.format_exc()
    outcome = record_outcome(store, run_id, outcome)
    if details is not None:
        with contextlib.suppress(OSError, StoreWriteError):  # (a full disk takes no traceback either)
            (store.run_dir(run_id) / "error.txt").write_text(details)
    with contextlib.suppress(Exception):  # (the store may be the thing that failed)
        live.set_phase("done")
    return outcome


def record_outcome(store: RunStore, run_id: str, outcome: Outcome) -> Outcome:
    """Write the run's end to the store; on a full disk free the reserve and try once more.

    Never raises: an outcome the store cannot take comes back with `recorded=False` and the reason.
    """
    fields: dict[str, Any] = {"status": outcome.status, "ended": outcome.ended}
    if outcome.status == "failed" or outcome.error is not None:
        fields.update(error=outcome.error, error_step=outcome.error_step)
    if outcome.final_metrics:
        fields["final_metrics"] = outcome.final_metrics
    problem = None
    for attempt in range(2):
        try:
            store.update_run(run_id, **fields)
            return replace(outcome, recorded=True, store_error=None)
        except StoreWriteError as exc:
            problem = str(exc)
            if not (attempt == 0 and exc.kind == "full" and store.release_reserve()):
                break
        except Exception as exc:  # noqa: BLE001 - e.g. a store locked for 30 s: the outcome stays in memory
            problem = explain(exc, store)
            break
    return replace(outcome, recorded=False, store_error=problem)


def explain(exc: BaseException, store: RunStore | None = None) -> str:
    """One line for the run table; a full or failing disk and out-of-memory get a hint."""
    if store is not None:
        disk = failure_text(exc, store.runs_dir)
        if disk is not None:  # before the OOM check: TensorFlow calls a full disk "ResourceExhausted"
            return disk
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    name = type(exc).__name__
    if isinstance(exc, MemoryError) or "ResourceExhausted" in name or "out of memory" in text.lower() or "OOM" in text:
        from workbench.peft import method_with_role

        return (f"out of memory ({name}): lower the batch size or max_seq_len, or use method "
                f"'{method_with_role('default').name}'")
    return f"{name}: {text}"
