"""Hierarchical fine-tuning: layer groups unfreeze in stages.

- bottom-up (the source document): the lowest group trains first (with the head), then each stage
  adds the next higher group;
- top-down (ULMFiT's gradual unfreezing): the head alone first, then each stage adds the next lower
  group.
Unfreezing a group makes *that group's* parameters of the chosen method trainable (its LoRA factors,
adapters or biases, or all its weights for `full`), so a group with none (the embeddings under LoRA)
is no stage: `plan_stages` is the one derivation the preview, the Train page and the trainer share.
The optimizer is built on every candidate up front, so earlier groups keep their optimizer state;
each stage change re-traces the train step once (a new `train_function`), and writes
`trainable/<group>` change points for the timeline chart.

The same code runs on TensorFlow and JAX. TensorFlow's step takes the variables themselves, so a
smaller `trainable_variables` list is all a stage needs. Keras's JAX step is stateless: the trainer
carries the values of the trainable / non-trainable / optimizer variables between steps, and the
optimizer maps the values it is handed back to its variables. So on JAX a stage change first writes
that state back into the variables (`sync_state`) before flipping `trainable` (the trainer then
re-splits the state on the next step), and `GroupedOptimizer.stateless_apply` accepts the stage's
subset. Rejected alternative: keeping every variable trainable and zeroing frozen groups' LR would
still move their Adam moments and step counts (and compute their gradients), so the two backends
would train differently.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import keras

from workbench.errors import ConfigError, received
from workbench.run_notes import what_trains
from workbench.train.lr_control import sync_state


def stage_plan(groups: Sequence[str], mode: str) -> list[list[str]]:
    """The rule alone: the groups of each stage, for `groups` ordered bottom to top ('head' last, if present).

    Every caller that knows a model goes through `plan_stages`, which first drops the groups with
    nothing to train; this function is the rule the Learn page draws for a generic stack.
    """
    body = [g for g in groups if g != "head"]
    top = [g for g in groups if g == "head"]
    if mode == "off" or not body:
        return [list(groups)]
    if mode == "bottom-up":
        return [body[:k] + top for k in range(1, len(body) + 1)]
    if mode == "top-down":
        return [body[len(body) - k:] + top for k in range(0, len(body) + 1)]
    raise ConfigError(f"hierarchical must be off, bottom-up or top-down. {received(hierarchical=mode)}")


@dataclass(frozen=True)
class StagePlan:
    """The one stage plan of a model under a method: what the preview draws and the trainer runs.

    Why one derivation: a group with nothing to train (the embeddings under LoRA, mnist-cnn's blocks
    without LoRA) would be a stage in which nothing new trains, so the preview would promise stages
    the trainer never runs. `skipped` keeps those groups so the diagrams can show them greyed.
    """

    mode: str
    groups: list[str]  # every layer group, bottom to top, head last
    stages: list[list[str]]  # the groups that train in each stage
    skipped: list[str]  # groups with nothing to train under the method: never part of a stage

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def body(self) -> list[str]:
        """The groups below the head that have something to train: what staging unfreezes."""
        return [g for g in self.groups if g != "head" and g not in self.skipped]

    def no_effect(self, method: str) -> str | None:
        """Why this staging changes nothing compared with hierarchical off (None: it changes something)."""
        if self.mode == "off" or self.n_stages > 1:
            return None
        what = what_trains(method)
        if not self.body:
            return (f"{self.mode} changes nothing here: nothing below the head trains under {method}, "
                    "so there is one stage (the head), as with hierarchical off")
        return (f"{self.mode} changes nothing here: only {self.body[0]} has {what} to train, so its one stage "
                "trains everything from step 0, as with hierarchical off")


def plan_stages(groups: Sequence[str], trainable: Collection[str], mode: str) -> StagePlan:
    """The stage plan: `groups` ordered bottom to top (head last); `trainable`: the groups that have
    something to train under the method (the trainer's `trainable_groups`). Stages hold only those."""
    kept = [g for g in groups if g in trainable]
    unknown = sorted(set(trainable) - set(groups))
    if unknown:
        raise ConfigError(f"Trainable group {unknown[0]!r} is not a layer group of the model: pass every group "
                          f"name in `groups`. {received(groups=list(groups))}")
    return StagePlan(mode=mode, groups=list(groups), stages=stage_plan(kept, mode),
                     skipped=[g for g in groups if g not in trainable])


def stage_length(config, n_stages: int, steps_per_epoch: int, total_steps: int) -> int:
    """Steps per stage: from stage_steps / stage_epochs, else the run split evenly across stages."""
    if config.stage_steps:
        length = config.stage_steps
    elif config.stage_epochs:
        length = max(1, round(config.stage_epochs * steps_per_epoch))
    else:
        length = max(1, total_steps // n_stages)
    if (n_stages - 1) * length >= total_steps:
        raise ConfigError(f"{n_stages} stages of {length} steps do not fit in a {total_steps}-step run (the last "
                          f"stage would never start): shorten the stages or add epochs. "
                          f"{received(stage_epochs=config.stage_epochs, stage_steps=config.stage_steps)}")
    return length


class StagedUnfreezing(keras.callbacks.Callback):
    """Switches the trainable groups at stage boundaries (call `begin()` before `fit`)."""

    def __init__(self, group_vars: dict[str, list], plan: list[list[str]], length: int, recorder) -> None:
        super().__init__()
        self.group_vars, self.plan, self.length, self.recorder = group_vars, plan, length, recorder
        self.stage = 0
        self.step = 0
        self.retraces = 0
        self.extra: set[str] = set()  # unfrozen by a person ahead of the plan (`unfreeze`)
        self.held: set[str] = set()  # frozen by a person (`freeze`), whatever the plan says
        self.on_change = None  # called with the step after the flags change (the prefix cache moves its cut)

    def begin(self) -> None:
        self._apply(0)

    def active(self) -> set[str]:
        return (set(self.plan[self.stage]) | self.extra) - self.held

    def _apply(self, stage: int, record: bool = True) -> None:
        self.stage = stage
        active = self.active()
        for group, variables in self.group_vars.items():
            for variable in variables:
                variable.trainable = group in active
            if record:
                self.recorder.add(f"trainable/{group}", 1.0 if group in active else 0.0, step=self.step)
        if self.on_change is not None:
            self.on_change(self.step)

    # -- a person's interventions (`train.steering`); each returns what it did or raises ValueError ----
    def unfreeze(self, group: str | None = None) -> str:
        """`group`, or the plan's next stage now, or (no stage left) the lowest group still frozen."""
        before = self.active()
        if group is None and self.stage + 1 < len(self.plan):
            self._switch(self.stage + 1)
            return f"stage {self.stage + 1} of {len(self.plan)} now: {', '.join(sorted(self.active() - before))} trains"
        if group is None:
            group = next((g for g in self.group_vars if g not in before), None)
            if group is None:
                raise ValueError("every group with something to train already trains")
        self.require_group(group)
        if group in before:
            raise ValueError(f"{group} already trains")
        self.held.discard(group)
        self.extra.add(group)
        self._switch(self.stage)
        return f"{group} trains from here"

    def freeze(self, group: str) -> str:
        self.require_group(group)
        if group not in self.active():
            raise ValueError(f"{group} is already frozen")
        if self.active() == {group}:
            raise ValueError(f"{group} is the only group that trains: freezing it would leave nothing to train "
                             "(stop the run instead)")
        self.extra.discard(group)
        self.held.add(group)
        self._switch(self.stage)
        return f"{group} frozen from here"

    def require_group(self, group: str) -> None:
        if group not in self.group_vars:
            raise ValueError(f"{group!r} has nothing to train in this run: pick one of {', '.join(self.group_vars)}")

    def _switch(self, stage: int) -> None:
        sync_state(self)
        self._apply(stage)
        self.model.make_train_function(force=True)
        self.retraces += 1

    def state(self) -> dict:
        return {"stage": self.stage, "step": self.step, "extra": sorted(self.extra), "held": sorted(self.held)}

    def restore(self, state: dict) -> None:
        """Before `fit` (the train function is made with the restored trainable flags)."""
        self.step, self.extra, self.held = state["step"], set(state["extra"]), set(state["held"])
        self._apply(state["stage"], record=False)  # (the timeline has these flags from before the checkpoint)

    def on_train_batch_begin(self, batch, logs=None):
        next_stage = self.stage + 1
        if next_stage < len(self.plan) and self.step >= next_stage * self.length:
            sync_state(self)  # JAX: the running values back into the variables before `trainable` changes
            self._apply(next_stage)
            self.model.make_train_function(force=True)
            self.retraces += 1
        self.step += 1  # counted when a batch begins (see `LearningRateControl.on_train_batch_begin`)
