"""Full fine-tuning: every weight trains. The baseline every PEFT method is measured against."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.peft.base import Capabilities, register, set_trainable


@dataclass(frozen=True)
class FullOptions:
    """Full fine-tuning has no options."""


def full_count(task_model, options: FullOptions, share: str) -> int:
    """Every weight that may train (frozen-by-design ones such as BatchNorm statistics excluded), head excluded."""
    import numpy as np

    head = {id(v) for v in [*task_model.head_variables(), *task_model.never_trainable]}
    weights = task_model.trainable_weights_of(task_model.model.weights)
    return int(sum(int(np.prod(v.shape)) for v in {id(v): v for v in weights if id(v) not in head}.values()))


@register("full", FullOptions, "Full fine-tuning: all weights train (the baseline).",
          capabilities=Capabilities(role="baseline", what_trains="weights",
                                    # a pretrained transformer needs a small step; small models train at 1e-3
                                    default_lr={"text": 5e-5, "*": 1e-3}),
          count=full_count, study=(("full", {}),))
def apply_full(task_model, options: FullOptions, share: str) -> None:
    set_trainable(task_model.trainable_weights_of(task_model.model.variables), True)
