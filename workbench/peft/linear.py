"""Linear probe: the pretrained backbone is frozen and only the new head trains.

It measures how much the pretrained features already know; it is also the cheapest method.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.peft.base import freeze_all, register, set_trainable


@dataclass(frozen=True)
class LinearConfig:
    """A linear probe has no options: the head is the only trainable part."""


@register("linear", LinearConfig, "Linear probe: frozen backbone, only the new head trains.")
def apply_linear(task_model, config: LinearConfig) -> None:
    freeze_all(task_model)
    set_trainable(task_model.head_variables(), True)
