"""BitFit (Ben Zaken et al., 2022): train only the bias terms (and LayerNorm parameters) + head.

Biases are ~0.1% of a transformer's weights, yet moving them adapts the model surprisingly well;
nothing new is added, so the output is unchanged at step 0 and the export is a plain model.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.errors import ConfigError, received
from workbench.peft.base import Capabilities, freeze_all, option, register, set_trainable

NORM_NAMES = ("gamma", "beta")


@dataclass(frozen=True)
class BitFitOptions:
    bitfit_layernorm: bool = option(True, "also train the LayerNorm scales and shifts", label="Also train LayerNorm",
                                    token="no-LN")


def bitfit_variables(task_model, layernorm: bool) -> list:
    candidates = task_model.trainable_weights_of(task_model.model.variables)
    chosen = []
    for variable in candidates:
        name = variable.path.split("/")[-1]
        if name == "bias" or (layernorm and name in NORM_NAMES):
            chosen.append(variable)
    return chosen


def bitfit_count(task_model, options: BitFitOptions, share: str) -> int:
    """Σ sizes of the biases (and LayerNorm vectors) outside the head."""
    import numpy as np

    head = {id(v) for v in task_model.head_variables()}
    chosen = {id(v): v for v in bitfit_variables(task_model, options.bitfit_layernorm) if id(v) not in head}
    return int(sum(int(np.prod(v.shape)) for v in chosen.values()))


@register("bitfit", BitFitOptions, "BitFit: only biases (and LayerNorm scales/shifts) and the head train.",
          capabilities=Capabilities(what_trains="trainable biases"), count=bitfit_count,
          study=(("bitfit", {}),))
def apply_bitfit(task_model, options: BitFitOptions, share: str) -> None:
    chosen = bitfit_variables(task_model, options.bitfit_layernorm)
    freeze_all(task_model)
    head = {id(v) for v in task_model.head_variables()}
    if not [v for v in chosen if id(v) not in head]:
        raise ConfigError(f"This model has no biases outside its head: pick another method. "
                          f"{received(model=task_model.card.name)}")
    set_trainable(chosen, True)
    set_trainable(task_model.head_variables(), True)
