"""LoRA (Hu et al., 2021): W stays frozen; a low-rank update ΔW = (α/r)·B·A trains instead.

Built on Keras's own `layer.enable_lora`, so the merged export (`model.save`) writes W + ΔW and
a reloaded model predicts the same. B starts at zero, so the model's output is unchanged at step 0.
Trainable parameters per target layer: r·(d_in + d_out) instead of d_in·d_out.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.errors import ConfigError, received
from workbench.peft.base import freeze_all, register, set_trainable


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
        # The smallest dimension bounds the useful rank.
        smallest = min(int(d) for d in layer.kernel.shape)
        if config.rank > smallest:
            raise ConfigError(f"LoRA rank {config.rank} exceeds layer {layer.name!r}'s smallest dimension "
                              f"{smallest}: lower the rank. {received(rank=config.rank)}")
        layer.enable_lora(config.rank, lora_alpha=config.alpha)
    set_trainable(task_model.head_variables(), True)


def lora_variables(task_model) -> list:
    """The A and B matrices of every adapted layer (what an adapter file stores besides the head)."""
    return [v for v in task_model.model.variables if "lora_kernel" in v.path]
