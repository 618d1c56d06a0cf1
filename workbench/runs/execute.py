"""Run one training run to its end and record the outcome: the body shared by both executors.

The thread executor calls `execute` in a background thread of the caller's process (the CLI, the
API, notebooks, tests); the app's engine workers (`workbench.runs.worker`) call the same function in
their own process. Whatever happens, the run ends with a status in the store: `completed`,
`stopped`, or `failed` with a one-line reason and the step it happened at.
"""

from __future__ import annotations

import threading
import time
import traceback

from workbench.config import TrainConfig
from workbench.models.registry import BUILD_LOCK
from workbench.runs.store import RunStore
from workbench.train.callbacks import LiveState, TrainingDiverged


def execute(store: RunStore, run_id: str, config: TrainConfig, stop: threading.Event, live: LiveState) -> str:
    """Prepare, train, evaluate and save one run; returns its final status (also written to the store)."""
    import keras

    from workbench.train.device import device_name
    from workbench.train.distribute import strategy_scope
    from workbench.train.trainer import prepare, train

    live.publish = lambda snapshot: store.update_progress(run_id, snapshot)
    store.update_run(run_id, status="running", started=time.time(), device=device_name())
    try:
        keras.config.set_dtype_policy("float32" if config.mixed_precision == "off" else config.mixed_precision)
        with strategy_scope(config.strategy):
            with BUILD_LOCK:
                keras.utils.set_random_seed(config.seed)
                prepared = prepare(config, live=live)
            store.update_run(run_id, trainable_params=prepared.report.trainable, total_params=prepared.report.total)
            summary = train(prepared, store=store, run_id=run_id, stop_event=stop, live=live)
        status = "stopped" if stop.is_set() else "completed"
        store.update_run(run_id, status=status, final_metrics=summary, ended=time.time())
    except TrainingDiverged as exc:
        status = "failed"
        store.update_run(run_id, status=status, error=str(exc), error_step=exc.step, ended=time.time())
    except Exception as exc:  # noqa: BLE001 - any failure ends this run only
        status = "failed"
        store.update_run(run_id, status=status, error=explain(exc), error_step=live.step, ended=time.time())
        (store.run_dir(run_id) / "error.txt").write_text(traceback.format_exc())
    finally:
        live.set_phase("done")
    return status


def explain(exc: BaseException) -> str:
    """One line for the run table; out-of-memory gets a hint."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    name = type(exc).__name__
    if isinstance(exc, MemoryError) or "ResourceExhausted" in name or "out of memory" in text.lower() or "OOM" in text:
        return f"out of memory ({name}): lower the batch size or max_seq_len, or use method 'lora'"
    return f"{name}: {text}"
