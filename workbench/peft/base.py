"""The contract every PEFT method follows: a config dataclass, `apply`, a parameter report.

A method decides which variables train. It does so per variable (`variable.trainable`), never by
freezing whole layers: freezing a parent layer would also hide the LoRA or adapter weights that
live inside it, and per-variable flags are what hierarchical fine-tuning toggles later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.config import TrainConfig
    from workbench.models.base import TaskModel


@dataclass(frozen=True)
class ParamReport:
    """Trainable vs total parameters: what the method saves, shown before a run starts."""

    trainable: int
    total: int
    by_group: dict[str, int]

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(self.total, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"trainable": self.trainable, "total": self.total, "percent": round(self.percent, 4),
                "by_group": self.by_group}

    def summary(self) -> str:
        return f"{self.trainable:,} trainable of {self.total:,} parameters ({self.percent:.2f}%)"


@dataclass(frozen=True)
class Method:
    """A registry entry: the method's name, its options dataclass and the function applying it."""

    name: str
    config_cls: type
    apply: Callable[[TaskModel, Any], None]
    description: str

    def config_from(self, train_config: TrainConfig) -> Any:
        """Pick this method's options out of the flat TrainConfig (CLI flags are flat)."""
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        return self.config_cls(**{n: getattr(train_config, n) for n in names if hasattr(train_config, n)})


METHODS: dict[str, Method] = {}


def register(name: str, config_cls: type, description: str) -> Callable:
    """Decorator for a method's `apply(task_model, config)` function."""

    def wrap(fn: Callable) -> Callable:
        METHODS[name] = Method(name, config_cls, fn, description)
        return fn

    return wrap


def freeze_all(task_model: TaskModel) -> None:
    for variable in task_model.model.variables:
        variable.trainable = False


def set_trainable(variables: list, trainable: bool = True) -> None:
    for variable in variables:
        variable.trainable = trainable


def param_report(task_model: TaskModel) -> ParamReport:
    """Count trainable and total parameters, and trainable parameters per layer group."""
    import numpy as np

    def count(variables: list) -> int:
        return int(sum(int(np.prod(v.shape)) for v in variables))

    seen: set[int] = set()
    unique = [v for v in task_model.model.weights if not (id(v) in seen or seen.add(id(v)))]  # no RNG states
    trainable = [v for v in unique if v.trainable]
    by_group = {g: count([v for v in vs if v.trainable]) for g, vs in task_model.group_variables().items()}
    return ParamReport(trainable=count(trainable), total=count(unique), by_group=by_group)


def apply_method(task_model: TaskModel, train_config: TrainConfig) -> ParamReport:
    """Apply the configured method to a freshly built task model and report its parameters.

    Holds the build lock: new weights (LoRA factors, adapters) draw from the process-wide RNG.
    """
    from workbench.models.base import BUILD_LOCK

    with BUILD_LOCK:
        return _apply(task_model, train_config)


def _apply(task_model: TaskModel, train_config: TrainConfig) -> ParamReport:
    method = METHODS[train_config.method]
    if train_config.tie_layers:
        from workbench.peft.tying import tie_blocks

        tie_blocks(task_model)  # the first principle at block scale; the method then applies to the one block
    method.apply(task_model, method.config_from(train_config))
    for variable in task_model.never_trainable:
        variable.trainable = False
    task_model.method = train_config.method
    return param_report(task_model)
