"""Linear probe: the pretrained backbone is frozen and only the new head trains.

It measures how much the pretrained features already know; it is also the cheapest method, and the
one whose frozen features can be computed once and cached (`train/features.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.peft.base import Capabilities, freeze_all, register, set_trainable


@dataclass(frozen=True)
class LinearOptions:
    """A linear probe has no options: the head is the only trainable part."""


@register("linear", LinearOptions, "Linear probe: frozen backbone, only the new head trains.",
          capabilities=Capabilities(tie_layers=False, stageable=False, feature_cache=True, what_trains="head"),
          count=lambda task_model, options, share: 0, study=(("linear probe", {}),))
def apply_linear(task_model, options: LinearOptions, share: str) -> None:
    freeze_all(task_model)
    set_trainable(task_model.head_variables(), True)
