"""Epoch checkpoints: what resuming a stopped, interrupted or failed run needs, in one file.

`<run_dir>/checkpoint.npz`, rewritten at each epoch end but the last (a completed run deletes it):
- the variables that training changes: every variable the method trains at some stage (adapter-only
  for PEFT methods, every weight for full fine-tuning) plus the model's state variables (dropout
  seed-generator states, batch-norm statistics); the frozen pretrained weights are not kept, because
  `prepare(config)` rebuilds them identically from the seed;
- every optimizer variable (moments, step counts; each group's optimizer for a grouped one);
- as JSON: the step and epoch, the learning-rate control (plateau state, a person's LR changes), the
  stages (which groups train, a person's freezes), early stopping, and the wall time trained so far.
The feed position needs nothing: the shuffle order of every epoch follows from the seed
(`train.feed`), and augmentation draws per (seed, epoch, batch).

Variables are matched by their position in `model.variables` (and the optimizer's), which is fixed for
a given config, and checked by shape; paths are kept for the error message only (auto-numbered layer
names differ from one process to the next). One file written under a temporary name and renamed:
a crash while writing leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from workbench.errors import ConfigError, WorkbenchError, received
from workbench.train.lr_control import sync_state

FILE = "checkpoint.npz"
VERSION = 1


def kept_variables(model: keras.Model) -> list:
    """What a checkpoint keeps (call before stages freeze anything: every candidate trains then)."""
    weights = {id(v) for v in model.non_trainable_weights}
    keep = {id(v) for v in model.trainable_variables}
    keep |= {id(v) for v in model.non_trainable_variables if id(v) not in weights}  # seed-generator states
    keep |= {id(v) for v in model.non_trainable_weights if "moving_" in v.path}  # batch-norm statistics
    return [v for v in model.variables if id(v) in keep]


def optimizer_variables(optimizer: keras.optimizers.Optimizer) -> list:
    """The optimizer's variables and those of the optimizers inside it (grouped, loss-scaled), once each."""
    seen: set[int] = set()
    out = []
    for opt in (optimizer, getattr(optimizer, "inner_optimizer", None), *getattr(optimizer, "_inner_optimizers", [])):
        for v in (opt.variables if opt is not None else []):
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


@dataclass
class Checkpoint:
    step: int
    epoch: int  # epochs completed: training continues with this epoch index
    wall: float  # seconds trained before the checkpoint
    state: dict[str, Any]  # lr_control, staging, early_stop: each part's `state()`
    variables: list[np.ndarray]
    optimizer: list[np.ndarray]
    best: list[np.ndarray] | None = None  # early stopping's best weights
    paths: list[str] = field(default_factory=list)


def path(run_dir: Path) -> Path:
    return Path(run_dir) / FILE


def save(run_dir: Path, ckpt: Checkpoint) -> None:
    arrays = {f"v{i}": a for i, a in enumerate(ckpt.variables)}
    arrays.update({f"o{i}": a for i, a in enumerate(ckpt.optimizer)})
    arrays.update({f"b{i}": a for i, a in enumerate(ckpt.best or [])})
    meta = {"version": VERSION, "step": ckpt.step, "epoch": ckpt.epoch, "wall": ckpt.wall, "state": ckpt.state,
            "n_variables": len(ckpt.variables), "n_optimizer": len(ckpt.optimizer),
            "n_best": len(ckpt.best) if ckpt.best is not None else None, "paths": ckpt.paths}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path(run_dir).with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path(run_dir))


def load(run_dir: Path) -> Checkpoint | None:
    file = path(run_dir)
    if not file.is_file():
        return None
    with np.load(file, allow_pickle=False) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        if meta.get("version") != VERSION:
            raise WorkbenchError(f"The run's checkpoint was written by another version of the workbench: start the "
                                 f"run again instead. {received(version=meta.get('version'))}")
        variables = [data[f"v{i}"] for i in range(meta["n_variables"])]
        optimizer = [data[f"o{i}"] for i in range(meta["n_optimizer"])]
        best = [data[f"b{i}"] for i in range(meta["n_best"])] if meta["n_best"] is not None else None
    return Checkpoint(meta["step"], meta["epoch"], meta["wall"], meta["state"], variables, optimizer, best,
                      meta.get("paths", []))


def describe(run_dir: Path) -> dict[str, Any] | None:
    """{"step", "epoch"} of the run's checkpoint without reading its arrays (None: there is none)."""
    file = path(run_dir)
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
    except (OSError, ValueError, KeyError):
        return None
    return {"step": meta["step"], "epoch": meta["epoch"]}


def discard(run_dir: Path) -> None:
    path(run_dir).unlink(missing_ok=True)


def assign(targets: list, values: list[np.ndarray], what: str) -> None:
    if len(targets) != len(values):
        raise WorkbenchError(f"The checkpoint does not fit this run's model ({len(values)} {what} saved, "
                             f"{len(targets)} here): start the run again. {received(saved=len(values))}")
    for target, value in zip(targets, values, strict=True):
        if tuple(target.shape) != tuple(value.shape):
            raise WorkbenchError(f"The checkpoint does not fit this run's model ({target.path} is "
                                 f"{tuple(target.shape)}, saved {tuple(value.shape)}): start the run again. "
                                 f"{received(variable=target.path)}")
        target.assign(value)


class Checkpointer(keras.callbacks.Callback):
    """Writes the checkpoint at each complete epoch's end (a stop mid-epoch writes none: the last whole
    epoch's stays); `parts` are the callbacks whose `state()` resuming needs."""

    def __init__(self, run_dir: Path, variables: list, optimizer, steps_per_epoch: int, epochs: int, recorder,
                 parts: dict[str, Any]) -> None:
        super().__init__()
        self.run_dir, self.variables, self.optimizer = run_dir, variables, optimizer
        self.steps_per_epoch, self.epochs, self.recorder, self.parts = steps_per_epoch, epochs, recorder, parts
        self.written: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs or self.parts["lr_control"].step != (epoch + 1) * self.steps_per_epoch:
            return  # the last epoch (the run completes) or a partial one (stopped mid-epoch)
        if self.model.stop_training:
            return  # early stopping or "stop after this epoch": the run completes now
        sync_state(self)
        early = self.parts.get("early_stop")
        save(self.run_dir, Checkpoint(
            step=self.recorder.step, epoch=epoch + 1, wall=self.recorder.wall(),
            state={name: part.state() for name, part in self.parts.items()},
            variables=[keras.ops.convert_to_numpy(v) for v in self.variables],
            optimizer=[keras.ops.convert_to_numpy(v) for v in optimizer_variables(self.optimizer)],
            best=early.best_values if early is not None else None, paths=[v.path for v in self.variables]))
        self.written.append(self.recorder.step)


class Restore(keras.callbacks.Callback):
    """Puts a checkpoint's weights and optimizer state in when training begins: after the explain
    callbacks have taken the run's starting point (the pretrained weights the change map measures from)."""

    def __init__(self, ckpt: Checkpoint, variables: list, optimizer) -> None:
        super().__init__()
        self.ckpt, self.variables, self.optimizer = ckpt, variables, optimizer

    def on_train_begin(self, logs=None):
        assign(self.variables, self.ckpt.variables, "variables")
        assign(optimizer_variables(self.optimizer), self.ckpt.optimizer, "optimizer variables")


def resumable(run_dir: Path) -> Checkpoint:
    ckpt = load(run_dir)
    if ckpt is None:
        raise ConfigError(f"The run has no checkpoint to resume from (it ended before its first epoch did): "
                          f"start it again instead. {received(run_dir=str(run_dir))}")
    return ckpt


def continue_from(ckpt: Checkpoint, store, run_id: str, parts: dict[str, Any], recorder) -> None:
    """Resume's bookkeeping before `fit`: the curve continues at the checkpoint's step, the requests made
    after it apply again, and every part takes its saved state (the weights go in at `Restore`)."""
    from workbench.runs import interventions

    dropped = store.delete_metrics_after(run_id, ckpt.step)
    interventions.replay_after(store, run_id, ckpt.step)
    interventions.add(store, run_id, "resume", {"from_step": ckpt.step, "epoch": ckpt.epoch}, "engine",
                      step=ckpt.step, outcome=f"continued from the checkpoint after epoch {ckpt.epoch} (step "
                      f"{ckpt.step}); {dropped} metric rows recorded after it were dropped")
    store.update_run(run_id, started=time.time() - ckpt.wall)
    recorder.resume_at(ckpt.step, ckpt.epoch, ckpt.wall)
    for name, part in parts.items():
        if name == "early_stop":
            part.restore(ckpt.state[name], ckpt.best)
        else:
            part.restore(ckpt.state[name])
