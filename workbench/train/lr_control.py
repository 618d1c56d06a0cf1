"""Learning-rate adaptation in training: the schedule, the plateau rule and per-group LRs.

One callback sets every group's LR before each batch:
    lr(group, step) = schedule(step) × plateau_scale × multiplier(group) × factor(variable)
so what the run records is exactly what the optimizer used. Per-group LRs need per-group
optimizers (scaling *gradients* does nothing under Adam, which divides by their magnitude), so
discriminative and hierarchical runs use `GroupedOptimizer`: one AdamW per layer group. A method may
also ask for per-variable LR factors (`Method.lr_multipliers`, e.g. LoRA+'s faster B): those variables
get an optimizer slot of their own inside their group ("block_1 ×16").

On JAX, Keras keeps a fitting model's variables (optimizer variables, hence the LR, included) outside
the `keras.Variable`s until the epoch ends; a callback that assigns one must first write that state
back (`sync_state`), else its assignment is overwritten by the next step's state.
"""

from __future__ import annotations

from collections import defaultdict

import keras

from workbench import schedules
from workbench.config import TrainConfig


def sync_state(callback: keras.callbacks.Callback) -> None:
    """Before a callback assigns model or optimizer variables mid-epoch: on JAX, put the running
    state back into the variables so the assignment enters the next step (a no-op elsewhere)."""
    model = callback.model  # Keras's `Callback.model` calls `jax_state_sync()` on JAX
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


class GroupedOptimizer(keras.optimizers.MultiOptimizer):
    """Keras's MultiOptimizer, but a step may update any subset of the variables it was built on.

    Hierarchical stages train a subset; each group's AdamW keeps its moments (and its own step
    count for bias correction) while frozen, so nothing is lost when the next stage starts. A frozen
    group's optimizer is not called at all: no moment update, no weight decay, no step counted.

    `optimizers` fixes the inner optimizers' order (the groups' order, bottom to top) whatever order
    the optimizer is built in; it is built on the model's `trainable_variables` (`compile_model`),
    because that is the order in which Keras's JAX trainer hands it values.
    """

    def __init__(self, optimizer_map, optimizers=(), **kwargs) -> None:
        super().__init__(optimizer_map, **kwargs)
        for optimizer in optimizers:
            if optimizer not in self._inner_optimizers:
                self._inner_optimizers.append(optimizer)

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            return super().apply(grads, trainable_variables)
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        buckets: dict[int, list] = defaultdict(list)
        for grad, variable in zip(grads, trainable_variables, strict=True):
            buckets[self._var_to_optimizer_idx[self._var_key(variable)]].append((grad, variable))
        for index, pairs in buckets.items():
            sub_grads, sub_vars = zip(*pairs, strict=True)
            self._inner_optimizers[index].apply(list(sub_grads), list(sub_vars))
        self._iterations.assign_add(1)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """The JAX trainer's update: `trainable_variables` are the *values* of the model's variables that
        train now, in the model's order. During a hierarchical stage that is a subset of what this
        optimizer was built on (the same order, filtered by `trainable`); Keras's own version accepts
        only the full list, so the subset is mapped to its variables here and only their groups step.
        """
        active = [v for v in self._trainable_variables if v.trainable]
        if len(active) == len(self._trainable_variables):
            return super().stateless_apply(optimizer_variables, grads, trainable_variables)
        expected, shapes = [tuple(v.shape) for v in active], [tuple(value.shape) for value in trainable_variables]
        if shapes != expected:
            raise ValueError(f"The values handed to the optimizer do not match its trainable variables {expected} "
                             f"(was it built in another order than the model's?). Received: shapes={shapes}")
        mapping = list(zip(active, trainable_variables, strict=True)) + list(
            zip(self.variables, optimizer_variables, strict=True))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self.apply(grads, active)
        return ([scope.get_current_value(v) for v in active], [scope.get_current_value(v) for v in self.variables])


def new_optimizer(config: TrainConfig, lr: float, name: str | None = None) -> keras.optimizers.Optimizer:
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, name=name or "sgd")
    return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay, name=name or "adamw")


def optimizer_slots(group_vars: dict[str, list], factors: dict[int, float] | None = None) -> dict[str, tuple]:
    """slot -> (group, LR factor, variables): each group, split off by the method's per-variable factors."""
    slots: dict[str, tuple] = {}
    for group, variables in group_vars.items():
        by_factor: dict[float, list] = defaultdict(list)
        for v in variables:
            by_factor[float((factors or {}).get(id(v), 1.0))].append(v)
        for factor, members in sorted(by_factor.items()):
            slots[group if factor == 1.0 else f"{group} ×{factor:g}"] = (group, factor, members)
    return slots


def make_optimizer(config: TrainConfig, lr: float, group_vars: dict[str, list], factors: dict[int, float] | None = None):
    """(optimizer for compile, {slot: the optimizer whose LR that slot uses}); see `optimizer_slots`.

    The grouped optimizer is left unbuilt: `compile_model` builds it on the model's
    `trainable_variables` (every candidate trains then; stages begin after it), in the model's order.
    """
    slots = optimizer_slots(group_vars, factors)
    if config.discriminative is None and config.hierarchical == "off" and len(slots) == len(group_vars):
        optimizer = new_optimizer(config, lr)
        return optimizer, {slot: optimizer for slot in slots}
    per_slot = {s: new_optimizer(config, lr, f"{config.optimizer}_{s.replace(' ×', '_x')}") for s in slots}
    owner = {id(v): per_slot[s] for s, (_, _, variables) in slots.items() for v in variables}
    optimizer = GroupedOptimizer(lambda variable: owner[id(variable)], optimizers=list(per_slot.values()))
    return optimizer, per_slot


class LearningRateControl(keras.callbacks.Callback):
    """Sets each group's LR before every batch; applies the plateau rule after every epoch."""

    def __init__(self, config: TrainConfig, base_lr: float, total_steps: int, optimizers: dict,
                 slots: dict[str, tuple] | None = None) -> None:
        super().__init__()
        self.name, self.base_lr, self.total_steps = config.lr_schedule, base_lr, total_steps
        self.options = {"warmup-cosine": {"warmup_frac": config.warmup_frac}}.get(self.name, {})
        self.optimizers = optimizers
        slots = slots or {s: (s, 1.0, []) for s in optimizers}
        groups = list(dict.fromkeys(group for group, _, _ in slots.values()))
        per_group = (schedules.discriminative_multipliers(groups, config.discriminative)
                     if config.discriminative is not None else dict.fromkeys(groups, 1.0))
        self.multipliers = {s: per_group[group] * factor for s, (group, factor, _) in slots.items()}
        self.per_group = config.discriminative is not None or any(f != 1.0 for _, f, _ in slots.values())
        self.plateau = (schedules.PlateauState(factor=config.plateau_factor, patience=config.plateau_patience,
                                               min_lr=config.min_lr) if self.name == "plateau" else None)
        self.slot_group = {s: group for s, (group, _, _) in slots.items()}
        self.group_multiplier = per_group
        self.scale = 1.0  # the plateau rule's
        self.steered = 1.0  # a person's, for every group (`steer`)
        self.group_steered: dict[str, float] = {}  # ... and per group
        self.step = 0
        self.lr = base_lr
        self._distinct = list({id(o): o for o in optimizers.values()}.values())
        self._applied: dict[int, float] = {}

    def on_train_batch_begin(self, batch, logs=None):
        # Steps are counted here, not in `on_train_batch_end`: a callback without an end handler
        # leaves Keras free to run end handlers asynchronously (see `callbacks.Recorder`).
        step = min(self.step, self.total_steps - 1)
        self.step += 1
        self.lr = schedules.lr_at(self.name, step, base_lr=self.base_lr, total_steps=self.total_steps,
                                  **self.options) * self.scale * self.steered
        if len(self._distinct) == 1:
            wanted = {id(self._distinct[0]): (self._distinct[0], self.lr)}
        else:
            wanted = {id(o): (o, self.lr * self._slot_multiplier(s)) for s, o in self.optimizers.items()}
        changed = {key: pair for key, pair in wanted.items() if self._applied.get(key) != pair[1]}
        if changed:  # only then: on JAX each assignment costs a state sync
            sync_state(self)
            for key, (optimizer, value) in changed.items():
                optimizer.learning_rate = value
                self._applied[key] = value

    def on_epoch_end(self, epoch, logs=None):
        if self.plateau is not None and logs and "val_loss" in logs:
            current = self.base_lr * self.scale
            self.scale = self.plateau.update(float(logs["val_loss"]), current) / self.base_lr

    def current(self) -> dict[str, float]:
        """What the recorder writes each step: the run's LR and, when per-group, each group's."""
        values = {"train/lr": self.lr}
        if self.per_group:
            values.update({f"lr/{s}": self.lr * self._slot_multiplier(s) for s in self.multipliers})
        return values

    @property
    def single_optimizer(self) -> bool:
        """One optimizer for every variable: no group can get an LR of its own (nor, on JAX, be frozen)."""
        return len(self._distinct) == 1

    def _slot_multiplier(self, slot: str) -> float:
        return self.multipliers[slot] * self.group_steered.get(self.slot_group.get(slot, slot), 1.0)

    # -- a person's interventions (`train.steering`) and a checkpoint's state (`train.checkpoint`) ----
    def steer(self, *, set: float | None = None, scale: float | None = None, group: str | None = None) -> str:
        """Set or scale the LR from the next step on; the schedule keeps its shape from there. Returns what
        it did; raises ValueError (the refusal's reason) when it cannot."""
        if group is None:
            before = self.lr
            factor = scale if scale is not None else set / before
            self.steered *= factor
            self.lr = before * factor
            return f"LR {before:.3g} → {before * factor:.3g} for every group (the schedule continues from there)"
        if group not in self.group_multiplier:
            raise ValueError(f"{group!r} is not a layer group that trains in this run (groups: "
                             f"{', '.join(self.group_multiplier)})")
        if self.single_optimizer:
            raise ValueError("this run has one optimizer for every group, so its groups cannot get LRs of their own: "
                             "set the LR for every group, or start the run with discriminative LRs or hierarchical "
                             "fine-tuning")
        before = self.lr * self.group_multiplier[group] * self.group_steered.get(group, 1.0)
        factor = scale if scale is not None else set / before
        self.group_steered[group] = self.group_steered.get(group, 1.0) * factor
        self.per_group = True  # record every group's LR from now on
        return f"LR of {group} {before:.3g} → {before * factor:.3g} (the schedule continues from there)"

    def state(self) -> dict:
        plateau = self.plateau.__dict__ if self.plateau is not None else None
        return {"step": self.step, "scale": self.scale, "steered": self.steered, "group_steered": self.group_steered,
                "per_group": self.per_group, "plateau": dict(plateau) if plateau is not None else None}

    def restore(self, state: dict) -> None:
        self.step, self.scale, self.steered = state["step"], state["scale"], state["steered"]
        self.group_steered, self.per_group = dict(state["group_steered"]), state["per_group"]
        if self.plateau is not None and state.get("plateau"):
            self.plateau.__dict__.update(state["plateau"])
        self._applied.clear()
