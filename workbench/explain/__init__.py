"""Explaining a run: what changed where, what was forgotten, which examples it gets wrong.

Each part is one module with the same two entry points, called by the trainer:

    callbacks(run: RunContext) -> list[keras.callbacks.Callback]   recorders that run during `fit`
    finish(run: RunContext) -> dict[str, Any]                       after the test evaluation; the
                                                                    returned numbers join the summary

    changes      the change map: relative change of each group's effective weights, gradient norms
    retention    the source task's probe before/after (forgetting), and with the trained part removed
    predictions  the test predictions (compact, with the examples) for confusion matrices and diffs

The callbacks come before the `Recorder` in the callback list, so what they `recorder.add` at an
epoch end is flushed with that epoch's validation metrics.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunContext:
    """What the explain modules may look at while a run trains (read-only: never change training)."""

    prepared: Any  # workbench.train.trainer.Prepared: config, dataset, split, task_model, report, inputs
    recorder: Any  # workbench.train.callbacks.Recorder: `add(key, value, step=None)`, `.step`, `.epoch`
    run_dir: Path  # the run's own directory (config.json, adapter.npz, ...)
    steps_per_epoch: int
    fit_model: Any  # the model `fit` trains: the task model, or the head on cached features (linear probe)
    inputs: dict[str, Any]  # "train" | "val" | "test" -> what `fit_model` takes (cached features for a probe)
    stop_event: threading.Event
    stopped: bool = False  # set before `finish`: a stopped run has no test evaluation
    resume_step: int = 0  # a resumed run continues from this step (its step-0 records exist already)
    seconds: dict[str, float] = field(default_factory=dict)  # part -> time spent explaining (the bench's ratio)


def enabled() -> bool:
    """`WORKBENCH_EXPLAIN=0` turns every part off (the benchmark's baseline; a way out, should one misbehave)."""
    return os.environ.get("WORKBENCH_EXPLAIN", "1").strip().lower() not in ("0", "false", "off", "no")


def callbacks(run: RunContext) -> list:
    if not enabled():
        return []
    from workbench.explain import changes, retention
    from workbench.explain.timed import Timed

    return [Timed(c, run.seconds, part.__name__.rsplit(".", 1)[-1])
            for part in (changes, retention) for c in part.callbacks(run)]


def finish(run: RunContext) -> dict[str, Any]:
    """Every part's closing numbers; a failure of one part is recorded, never fails the run."""
    if not enabled():
        return {}
    from workbench.explain import changes, predictions, retention

    out: dict[str, Any] = {}
    for part in (changes, retention, predictions):
        name = part.__name__.rsplit(".", 1)[-1]
        t0 = time.perf_counter()
        try:
            out.update(part.finish(run))
        except Exception as exc:  # noqa: BLE001 - an explanation must never cost the run its result
            out[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
        run.seconds[name] = run.seconds.get(name, 0.0) + time.perf_counter() - t0
    # What each part cost the run (seconds): `make bench` row 8 divides them by the run's wall time.
    out.update({f"explain_s_{name}": round(s, 3) for name, s in run.seconds.items()})
    return out
