"""Learning-rate adaptation in training: the schedule, the plateau rule and per-group LRs.

One callback sets every group's LR before each batch:
    lr(group, step) = schedule(step) × plateau_scale × multiplier(group)
so what the run records is exactly what the optimizer used. Per-group LRs need per-group
optimizers (scaling *gradients* does nothing under Adam, which divides by their magnitude), so
discriminative and hierarchical runs use `GroupedOptimizer`: one AdamW per layer group.
"""

from __future__ import annotations

from collections import defaultdict

import keras

from workbench import schedules
from workbench.config import TrainConfig


class GroupedOptimizer(keras.optimizers.MultiOptimizer):
    """Keras's MultiOptimizer, but a step may update any subset of the variables it was built on.

    Hierarchical stages train a subset; each group's AdamW keeps its moments (and its own step
    count for bias correction) while frozen, so nothing is lost when the next stage starts.
    """

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None or not self.built:
            return super().apply(grads, trainable_variables)
        buckets: dict[int, list] = defaultdict(list)
        for grad, variable in zip(grads, trainable_variables, strict=True):
            buckets[self._var_to_optimizer_idx[self._var_key(variable)]].append((grad, variable))
        for index, pairs in buckets.items():
            sub_grads, sub_vars = zip(*pairs, strict=True)
            self._inner_optimizers[index].apply(list(sub_grads), list(sub_vars))
        self._iterations.assign_add(1)


def new_optimizer(config: TrainConfig, lr: float, name: str | None = None) -> keras.optimizers.Optimizer:
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, name=name or "sgd")
    return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay, name=name or "adamw")


def make_optimizer(config: TrainConfig, lr: float, group_vars: dict[str, list]):
    """(optimizer for compile, {group: the optimizer whose LR that group uses})."""
    if config.discriminative is None and config.hierarchical == "off":
        optimizer = new_optimizer(config, lr)
        return optimizer, {group: optimizer for group in group_vars}
    per_group = {g: new_optimizer(config, lr, f"{config.optimizer}_{g}") for g in group_vars}
    owner = {id(v): per_group[g] for g, variables in group_vars.items() for v in variables}
    optimizer = GroupedOptimizer(lambda variable: owner[id(variable)])
    optimizer.build([v for variables in group_vars.values() for v in variables])
    return optimizer, per_group


class LearningRateControl(keras.callbacks.Callback):
    """Sets each group's LR before every batch; applies the plateau rule after every epoch."""

    def __init__(self, config: TrainConfig, base_lr: float, total_steps: int, optimizers: dict) -> None:
        super().__init__()
        self.name, self.base_lr, self.total_steps = config.lr_schedule, base_lr, total_steps
        self.options = {"warmup-cosine": {"warmup_frac": config.warmup_frac}}.get(self.name, {})
        self.optimizers = optimizers
        groups = list(optimizers)
        self.multipliers = (schedules.discriminative_multipliers(groups, config.discriminative)
                            if config.discriminative is not None else dict.fromkeys(groups, 1.0))
        self.per_group = config.discriminative is not None
        self.plateau = (schedules.PlateauState(factor=config.plateau_factor, patience=config.plateau_patience,
                                               min_lr=config.min_lr) if self.name == "plateau" else None)
        self.scale = 1.0
        self.step = 0
        self.lr = base_lr
        self._distinct = list({id(o): o for o in optimizers.values()}.values())

    def on_train_batch_begin(self, batch, logs=None):
        step = min(self.step, self.total_steps - 1)
        self.lr = schedules.lr_at(self.name, step, base_lr=self.base_lr, total_steps=self.total_steps,
                                  **self.options) * self.scale
        if len(self._distinct) == 1:
            self._distinct[0].learning_rate = self.lr
        else:
            for group, optimizer in self.optimizers.items():
                optimizer.learning_rate = self.lr * self.multipliers[group]

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1

    def on_epoch_end(self, epoch, logs=None):
        if self.plateau is not None and logs and "val_loss" in logs:
            current = self.base_lr * self.scale
            self.scale = self.plateau.update(float(logs["val_loss"]), current) / self.base_lr

    def current(self) -> dict[str, float]:
        """What the recorder writes each step: the run's LR and, when per-group, each group's."""
        values = {"train/lr": self.lr}
        if self.per_group:
            values.update({f"lr/{g}": self.lr * m for g, m in self.multipliers.items()})
        return values
