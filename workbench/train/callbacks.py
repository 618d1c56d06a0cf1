"""Keras callbacks of the engine, one class each: record, stop, and the live snapshot they share.

`Recorder` writes the *true* per-batch loss (Keras's `logs["loss"]` is the running epoch mean; the
`BatchLoss` metric holds the last batch's value), the LR and examples/s every step, validation
metrics every epoch, and flushes to the run store at least every half second and at each epoch end.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import keras


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the run fails at that step, with a hint."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"loss became {value} at step {step}: lower the learning rate (or use "
                         f"mixed_precision='off') and start again")
        self.step = step


@keras.saving.register_keras_serializable(package="workbench")
class BatchLoss(keras.metrics.Metric):
    """The loss of the last batch only (not averaged over the epoch as Keras's loss log is)."""

    def __init__(self, loss_fn: Any = None, name: str = "batch_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.loss_fn = loss_fn
        # Under tf.distribute each replica sees its own batch; keep the first replica's value.
        self.last = self.add_variable(shape=(), initializer="zeros", name="last", aggregation="only_first_replica")

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self.loss_fn(y_true, keras.ops.cast(y_pred, "float32"))
        self.last.assign(keras.ops.cast(keras.ops.mean(values), self.last.dtype))

    def result(self):
        # A tensor, not the variable: JAX cannot trace a function that returns a Variable object.
        return keras.ops.convert_to_tensor(self.last)

    def reset_state(self):
        self.last.assign(0.0)


PHASES = ("queued", "loading data", "building the model", "computing features", "compiling the first step",
          "training", "paused", "evaluating", "explaining", "saving", "done")


@dataclass
class LiveState:
    """What the app and the CLI's progress bar read while a run trains.

    A run in this process is read directly; `publish` (set by the executor) writes the snapshot to
    the run store at every phase change and every recorder flush, so a page in another process (the
    app watching an engine worker, a second app, the CLI) reads the same progress from the store.
    """

    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    examples_per_s: float | None = None
    started: float = field(default_factory=time.time)
    phase: str = "queued"  # one of PHASES; set through `set_phase` so its start time is kept
    phases: list[tuple[str, float]] = field(default_factory=list)  # (phase, wall time it began)
    step_s: float | None = None  # recent seconds per step (EMA): graph tracing at the start must not skew ETA
    publish: Any = field(default=None, repr=False, compare=False)  # (snapshot dict) -> None

    def set_phase(self, phase: str) -> None:
        if phase != self.phase or not self.phases:
            self.phase = phase
            self.phases.append((phase, time.time()))
            self.push()

    def push(self) -> None:
        if self.publish is not None:
            self.publish(self.to_dict())

    def tick(self, seconds: float) -> None:
        self.step_s = seconds if self.step_s is None else 0.9 * self.step_s + 0.1 * seconds

    @property
    def eta_s(self) -> float | None:
        if self.step == 0 or self.total_steps == 0 or self.step_s is None:
            return None
        return self.step_s * max(self.total_steps - self.step, 0)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "publish"}
        return {**data, "phases": [list(p) for p in self.phases], "eta_s": self.eta_s, "written": time.time()}


class Recorder(keras.callbacks.Callback):
    """Streams metrics into the run store (and TensorBoard) from the training thread.

    `async_safe`: on JAX (the backends Keras deems thread-safe) Keras then runs `on_train_batch_end`
    in a worker thread, so reading the loss (a device-to-host copy that waits for the step) does
    not stall the dispatch of the next step; with a per-step sync a GPU idles between steps. So
    what a step needs (its number, start time, learning rates) is captured at `on_train_batch_begin`,
    which Keras always calls in order on the training thread, and the end handler takes a lock.
    On TensorFlow everything runs in order on the training thread, as before.
    """

    async_safe = True

    def __init__(self, store, run_id: str, live: LiveState, *, n_train: int, batch_size: int,
                 lr_reader, flush_interval: float = 0.5, tensorboard=None) -> None:
        super().__init__()
        self.store, self.run_id, self.live = store, run_id, live
        self.n_train, self.batch_size = n_train, batch_size
        self.read_lrs = lr_reader  # () -> {"train/lr": x, "lr/<group>": y, ...}
        self.flush_interval = flush_interval
        self.tensorboard = tensorboard
        self.rows: list[tuple] = []
        self.step = 0  # the highest step recorded
        self.epoch = 0
        self.t0 = time.perf_counter()
        self._last_flush = self.t0
        self._last_end = self.t0
        self._begun = 0
        self.wall_offset = 0.0  # seconds trained before this attempt (a resumed run)
        self._pending: dict[int, tuple[int, float, dict[str, float]]] = {}  # batch -> (step, start, LRs)
        self._lock = threading.RLock()

    def add(self, key: str, value: float, step: int | None = None) -> None:
        with self._lock:
            self.rows.append((self.run_id, self.step if step is None else step, self.epoch, key, float(value),
                              time.perf_counter() - self.t0))

    def flush(self) -> None:
        with self._lock:
            rows, self.rows = self.rows, []
            self.store.append_metrics(rows)
            if self.tensorboard is not None:
                self.tensorboard.write(rows)
            self.live.push()
            self._last_flush = time.perf_counter()

    def on_train_begin(self, logs=None):
        self._last_flush = self._last_end = time.perf_counter()
        self.t0 = self._last_end - self.wall_offset  # a resumed run's wall clock continues its own
        self.live.started = time.time() - self.wall_offset
        self.live.set_phase("compiling the first step")

    def resume_clock(self) -> None:
        """After a pause: the next step's time (and the ETA) must not include the pause."""
        self._last_end = time.perf_counter()

    def resume_at(self, step: int, epoch: int, wall: float) -> None:
        """Continue a run from its checkpoint: steps, epochs and wall time go on from there."""
        self.step = self._begun = self.live.step = step
        self.epoch = self.live.epoch = epoch
        self.wall_offset = wall

    def wall(self) -> float:
        return time.perf_counter() - self.t0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = self.live.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._begun += 1
        with self._lock:
            self._pending[batch] = (self._begun, time.perf_counter(), self.read_lrs())

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["batch_loss"])  # (already a float when Keras's callback list converted the logs)
        with self._lock:
            pending = self._pending.pop(batch, None)  # None: several steps per execution
            step, started, lrs = pending or (self.step + 1, self._last_end, self.read_lrs())
            now = time.perf_counter()
            if not math.isfinite(loss):
                self.add("train/loss", loss, step)
                self.flush()
                raise TrainingDiverged(step, loss)
            # Sync: the step ran from its begin to now. Async: steps overlap; the step took from the
            # previous step's end (or its own begin, if later) to now.
            seconds = max(now - max(started, self._last_end), 1e-9)
            examples = min(self.batch_size, self.n_train - batch * self.batch_size) or self.batch_size
            speed = examples / seconds
            self.add("train/loss", loss, step)
            self.add("train/examples_per_s", speed, step)
            for key, value in lrs.items():
                self.add(key, value, step)
            if step > self.step:
                if self.live.phase == "compiling the first step":
                    self.live.phase = "training"  # (published by the flush below)
                    self.live.phases.append(("training", time.time()))
                self.step = step
                self.live.step, self.live.loss, self.live.examples_per_s = step, loss, speed
            if step > 2:  # the first steps include tracing
                self.live.tick(now - self._last_end)
            self._last_end = now
            if now - self._last_flush >= self.flush_interval or step == 1:
                self.flush()

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            if key.startswith("val_") and key != "val_batch_loss":
                self.add("val/" + key[4:], value)
        self.flush()

    def on_train_end(self, logs=None):
        self.flush()


class StopOnEvent(keras.callbacks.Callback):
    """Ends training after the current batch once `event` is set (the Stop button, Ctrl-C).

    `async_safe`: it only sets a flag. It uses `_model`, because on JAX `Callback.model` first writes
    the running state back into the variables, which a worker thread must not do mid-step.
    """

    async_safe = True

    def __init__(self, event: threading.Event) -> None:
        super().__init__()
        self.event = event

    def on_train_batch_end(self, batch, logs=None):
        if self.event.is_set():
            self._model.stop_training = True
