"""LoRA (Hu et al., 2021): W stays frozen; a low-rank update ΔW = (α/r)·B·A trains instead.

B starts at zero, so the model's output is unchanged at step 0. Trainable parameters per target
layer: r·(d_in + d_out) instead of d_in·d_out. With `share` (the first principle) the factors are
shared across layers: `tied` (one trainable A, B per layer shape + per-layer scale vectors) or
`vera` (frozen shared random A, B; per-layer vectors d and b) — see `lora_layers.py`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import keras

from workbench.errors import ConfigError, received
from workbench.peft.base import freeze_all, register, set_trainable
from workbench.peft.lora_layers import adopt, matrix_shape


@dataclass(frozen=True)
class LoraConfig:
    """rank r, scale alpha (ΔW is multiplied by alpha/r), the layers to adapt, and sharing."""

    rank: int = 8
    alpha: float = 16.0
    lora_targets: list[str] | None = None
    share: str = "off"

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"LoRA rank must be an integer >= 1. {received(rank=self.rank)}")
        if not self.alpha > 0:
            raise ConfigError(f"LoRA alpha must be positive. {received(alpha=self.alpha)}")
        if self.share not in ("off", "tied", "vera"):
            raise ConfigError(f"share must be off, tied or vera. {received(share=self.share)}")


@register("lora", LoraConfig, "LoRA: frozen weights plus a trainable low-rank update on chosen layers.")
def apply_lora(task_model, config: LoraConfig) -> None:
    freeze_all(task_model)
    layers = task_model.lora_target_layers(config.lora_targets)
    if not layers:
        raise ConfigError(f"No layer matches the LoRA targets: use layer names from the model card "
                          f"({', '.join(task_model.card.lora_targets)}). {received(lora_targets=config.lora_targets)}")
    for layer in layers:
        d_in, d_out = matrix_shape(layer)
        if config.rank > min(d_in, d_out):
            raise ConfigError(f"LoRA rank {config.rank} exceeds layer {layer.name!r}'s smaller dimension "
                              f"{min(d_in, d_out)}: lower the rank. {received(rank=config.rank)}")
        adopt(layer)
    if config.share == "off":
        for layer in layers:
            layer.enable_lora(config.rank, lora_alpha=config.alpha)
    else:
        share_factors(layers, config)
    set_trainable(task_model.head_variables(), True)


def share_factors(layers: list, config: LoraConfig) -> None:
    """One (A, B) per distinct layer shape, owned by the first layer and reused by the rest."""
    if any(not hasattr(layer, "share_lora") for layer in layers):
        raise ConfigError(f"Shared LoRA needs Dense or EinsumDense targets. {received(share=config.share)}")
    by_shape: dict[tuple[int, int], list] = defaultdict(list)
    for layer in layers:
        by_shape[matrix_shape(layer)].append(layer)
    vera = config.share == "vera"
    for (d_in, d_out), group in by_shape.items():
        owner = group[0]
        owner._tracker.unlock()
        init_a = keras.initializers.HeUniform() if not vera else keras.initializers.HeUniform(seed=1)
        init_b = "zeros" if not vera else keras.initializers.HeUniform(seed=2)
        a = owner.add_weight(name="lora_shared_a", shape=(d_in, config.rank), initializer=init_a, trainable=not vera)
        b = owner.add_weight(name="lora_shared_b", shape=(config.rank, d_out), initializer=init_b, trainable=not vera)
        owner._tracker.lock()
        for layer in group:
            layer.share_lora(a, b, config.rank, config.alpha, mode=config.share)


def lora_param_count(task_model, rank: int, targets=None, share: str = "off") -> int:
    """Closed-form trainable LoRA parameters (head excluded) for a model's target layers."""
    return lora_count([matrix_shape(layer) for layer in task_model.lora_target_layers(targets)], rank, share)


def lora_count(shapes: list[tuple[int, int]], rank: int, share: str = "off") -> int:
    """Trainable LoRA parameters of layers with these (d_in, d_out) shapes, one entry per layer.

    plain: Σ r·(d_in + d_out); tied: Σ_shapes r·(d_in + d_out) + L·r (each layer's scale vector);
    vera: Σ (r + d_out). The Learn page counts with this too, so its numbers are the Train page's.
    """
    if share == "tied":
        return sum(rank * (d_in + d_out) for d_in, d_out in set(shapes)) + len(shapes) * rank
    if share == "vera":
        return sum(rank + d_out for _, d_out in shapes)
    return sum(rank * (d_in + d_out) for d_in, d_out in shapes)


def lora_variables(task_model) -> list:
    """The LoRA factors and vectors (what an adapter file stores besides the head)."""
    return [v for v in task_model.model.variables if "lora_" in v.path.split("/")[-1]]
