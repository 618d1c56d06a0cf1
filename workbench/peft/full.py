"""Full fine-tuning: every weight trains. The baseline every PEFT method is measured against."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.peft.base import register, set_trainable


@dataclass(frozen=True)
class FullConfig:
    """Full fine-tuning has no options."""


@register("full", FullConfig, "Full fine-tuning: all weights train (the baseline).")
def apply_full(task_model, config: FullConfig) -> None:
    set_trainable(task_model.trainable_weights_of(task_model.model.variables), True)
