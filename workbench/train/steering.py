"""Steering a run while it trains: pause, LR, unfreeze/freeze, stop after this epoch; early stopping.

`Steering` reads the run's pending interventions (`runs.interventions`, rows in the run store) at most
every `POLL_S` when a batch begins, on the training thread, so a request takes effect at the next
step boundary and is recorded with that step. It comes first in the callback list: an LR set now is
what the learning-rate callback applies to this very step.

A paused run waits inside `on_train_batch_begin`: its thread, model and optimizer stay in memory, and
LR and freezing requests made while it waits are applied at once. A paused run keeps its worker, so
runs queued behind it wait too; after `PAUSE_LIMIT_S` (WORKBENCH_PAUSE_LIMIT_S, default 10 minutes)
of pause *while another run waits*, it stops to free the worker, says so, and Resume continues it
from its last epoch checkpoint (`train.checkpoint`). Nobody waiting: it stays paused.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any

import keras
import numpy as np

from workbench.runs import interventions
from workbench.train.lr_control import sync_state

POLL_S = 0.25  # how often a training run looks for requests (an indexed SQLite read)
PAUSED_POLL_S = 0.2
QUEUE_CHECK_S = 5.0  # how often a paused run asks whether another run waits for its worker


def pause_limit_s() -> float:
    return float(os.environ.get("WORKBENCH_PAUSE_LIMIT_S", "600"))


class Steering(keras.callbacks.Callback):
    """Applies a person's interventions at step boundaries (see the module docstring)."""

    def __init__(self, store, run_id: str, *, lr_control, staging, recorder, live, stop_event: threading.Event) -> None:
        super().__init__()
        self.store, self.run_id = store, run_id
        self.lr_control, self.staging, self.recorder, self.live = lr_control, staging, recorder, live
        self.stop_event = stop_event
        self.stop_at_epoch_end = False
        self._polled = 0.0

    @property
    def step(self) -> int:
        return self.lr_control.step  # steps begun so far = the step a change takes effect after

    def on_train_batch_begin(self, batch, logs=None):
        now = time.monotonic()
        if now - self._polled < POLL_S:
            return
        self._polled = now
        for item in interventions.pending(self.store, self.run_id):
            if item.kind == "pause":
                self._pause(item)  # (it handles what else is pending, during the pause)
                return
            else:
                self._apply(item)

    def on_epoch_end(self, epoch, logs=None):
        if self.stop_at_epoch_end:
            self.model.stop_training = True

    # -- one request ----------------------------------------------------------------------------
    def _apply(self, item: interventions.Intervention) -> None:
        try:
            outcome = self._do(item.kind, item.args)
        except ValueError as exc:
            outcome = f"refused: {exc}"
        interventions.applied(self.store, self.run_id, item.seq, self.step, outcome)

    def _do(self, kind: str, args: dict[str, Any]) -> str:
        if kind == "lr":
            return self.lr_control.steer(**args)
        if kind == "unfreeze":
            return self.staging.unfreeze(args.get("group"))
        if kind == "freeze":
            self.staging.require_group(args["group"])  # (an unknown group is refused as such on every backend)
            if keras.backend.backend() == "jax" and self.lr_control.single_optimizer:
                raise ValueError("on JAX a run with one optimizer trains all its groups or none: start it with "
                                 "hierarchical fine-tuning or discriminative LRs to freeze groups")
            return self.staging.freeze(args["group"])
        if kind == "stop_epoch":
            self.stop_at_epoch_end = True
            return f"training ends at the end of epoch {self.recorder.epoch + 1}"
        if kind == "unpause":
            raise ValueError("the run is not paused")
        raise ValueError(f"unknown intervention {kind!r}")

    # -- pause ----------------------------------------------------------------------------------
    def _pause(self, item: interventions.Intervention) -> None:
        """Wait between two steps until unpaused or stopped; other requests apply meanwhile."""
        began = time.time()
        interventions.applied(self.store, self.run_id, item.seq, self.step, f"paused after step {self.step}")
        self.recorder.flush()  # the charts of a paused run show every step it made
        self.store.update_run(self.run_id, status="paused")
        self.live.set_phase("paused")
        checked_queue, paused = 0.0, True
        while paused and not self.stop_event.is_set():
            time.sleep(PAUSED_POLL_S)
            for other in interventions.pending(self.store, self.run_id):
                if other.kind == "unpause" and paused:
                    paused = False
                    interventions.applied(self.store, self.run_id, other.seq, self.step,
                                          f"continued after {time.time() - began:.0f} s of pause")
                elif other.kind == "pause" and paused:
                    interventions.applied(self.store, self.run_id, other.seq, self.step, "refused: already paused")
                elif other.kind not in ("pause", "unpause"):
                    self._apply(other)
                    self.recorder.flush()  # (an unfreeze shows on the timeline while the run waits)
            if time.monotonic() - checked_queue > QUEUE_CHECK_S:
                checked_queue = time.monotonic()
                self._release_if_blocking(began)
        self.store.update_run(self.run_id, status="running")
        self.live.set_phase("training")
        self.recorder.resume_clock()

    def _release_if_blocking(self, began: float) -> None:
        """Paused past the limit while another run waits for a worker: stop (Resume continues it)."""
        paused_for = time.time() - began
        if paused_for < pause_limit_s():
            return
        queued = self.store.list_runs(statuses=["queued"])
        if not queued:
            return
        self.store.update_run(self.run_id, error=(
            f"paused for {paused_for / 60:.0f} min while {len(queued)} run(s) waited for its worker: stopped at step "
            f"{self.step} to let them start; Resume continues it from its last epoch checkpoint"))
        self.stop_event.set()


class EarlyStop(keras.callbacks.Callback):
    """Ends training after `patience` epochs without improvement of a validation metric; optionally puts
    back the best epoch's weights (only what trains: `variables`, the method's trainable candidates)."""

    def __init__(self, metric: str, patience: int, restore_best: bool, variables: list, store, run_id: str,
                 recorder) -> None:
        super().__init__()
        self.metric, self.patience, self.restore_best = metric, patience, restore_best
        self.key = "val_" + metric.split("/", 1)[1]
        self.sign = -1.0 if metric == "val/accuracy" else 1.0  # minimise sign × value
        self.variables, self.store, self.run_id, self.recorder = variables, store, run_id, recorder
        self.best, self.best_epoch, self.wait = math.inf, None, 0
        self.best_values: list[np.ndarray] | None = None
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.key)
        if value is None:
            return
        if self.sign * float(value) < self.best:
            self.best, self.best_epoch, self.wait = self.sign * float(value), epoch, 0
            if self.restore_best:
                sync_state(self)
                self.best_values = [keras.ops.convert_to_numpy(v).copy() for v in self.variables]
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        self.model.stop_training = True
        self.stopped_epoch = epoch
        restored = ""
        if self.restore_best and self.best_values is not None:
            sync_state(self)
            for variable, value in zip(self.variables, self.best_values, strict=True):
                variable.assign(value)
            restored = f"; the weights of epoch {self.best_epoch + 1} are back ({self.metric} {self.sign * self.best:.4g})"
        interventions.add(self.store, self.run_id, "early_stop", {"metric": self.metric, "patience": self.patience},
                          "engine", step=self.recorder.step,
                          outcome=f"no better {self.metric} for {self.wait} epoch(s): stopped after epoch {epoch + 1}"
                                  + restored)

    def summary(self) -> dict[str, Any]:
        if self.stopped_epoch is None:
            return {}
        return {"early_stopped_epoch": self.stopped_epoch + 1, "best_epoch": (self.best_epoch or 0) + 1}

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def restore(self, state: dict[str, Any], best_values: list[np.ndarray] | None) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_values = best_values
