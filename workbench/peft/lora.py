"""LoRA (Hu et al., 2021): W stays frozen; a low-rank update ΔW = (α/r)·B·A trains instead.

Built on Keras's own `layer.enable_lora`, so the merged export (`model.save`) writes W + ΔW and
a reloaded model predicts the same. B starts at zero, so the model's output is unchanged at step 0.
Trainable parameters per target layer: r·(d_in + d_out) instead of d_in·d_out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

from workbench.errors import ConfigError, received
from workbench.peft.base import freeze_all, register, set_trainable
from workbench.peft.lora_layers import FlatLoraEinsumDense, input_axes


@dataclass(frozen=True)
class LoraConfig:
    """rank r, scale alpha (ΔW is multiplied by alpha/r) and the layer names to adapt."""

    rank: int = 8
    alpha: float = 16.0
    lora_targets: list[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"LoRA rank must be an integer >= 1. {received(rank=self.rank)}")
        if not self.alpha > 0:
            raise ConfigError(f"LoRA alpha must be positive. {received(alpha=self.alpha)}")


@register("lora", LoraConfig, "LoRA: frozen weights plus a trainable low-rank update on chosen layers.")
def apply_lora(task_model, config: LoraConfig) -> None:
    freeze_all(task_model)
    layers = task_model.lora_target_layers(config.lora_targets)
    if not layers:
        raise ConfigError(f"No layer matches the LoRA targets: use layer names from the model card "
                          f"({', '.join(task_model.card.lora_targets)}). {received(lora_targets=config.lora_targets)}")
    for layer in layers:
        if isinstance(layer, keras.layers.EinsumDense):
            FlatLoraEinsumDense.adopt(layer)
        d_in, d_out = matrix_shape(layer)
        if config.rank > min(d_in, d_out):
            raise ConfigError(f"LoRA rank {config.rank} exceeds layer {layer.name!r}'s smaller dimension "
                              f"{min(d_in, d_out)}: lower the rank. {received(rank=config.rank)}")
        layer.enable_lora(config.rank, lora_alpha=config.alpha)
    set_trainable(task_model.head_variables(), True)


def lora_variables(task_model) -> list:
    """The A and B matrices of every adapted layer (what an adapter file stores besides the head)."""
    return [v for v in task_model.model.variables if "lora_kernel" in v.path]


def matrix_shape(layer) -> tuple[int, int]:
    """(d_in, d_out) of the linear map a layer applies: what LoRA's rank is bounded by."""
    shape = [int(d) for d in layer.kernel.shape]
    n_in = input_axes(layer.equation) if isinstance(layer, keras.layers.EinsumDense) else len(shape) - 1
    return math.prod(shape[:n_in]), math.prod(shape[n_in:])


def lora_param_count(task_model, rank: int, targets=None) -> int:
    """Closed form: r·(d_in + d_out) per adapted layer (the head is counted separately)."""
    return sum(rank * sum(matrix_shape(layer)) for layer in task_model.lora_target_layers(targets))
