"""LoRA+ (Hayou et al., 2024): LoRA whose B factor trains at λ times A's learning rate.

The adapter is LoRA's own (ΔW = (α/r)·A·B on the target layers, B zero-initialised, so the output is
unchanged at step 0, the count is r·(d_in + d_out) per layer and the export merges into W). Only the
optimisation differs: the paper shows that with one learning rate for both factors, feature learning
is inefficient in wide layers, and recommends η_B = λ·η_A with λ ≈ 16 for Adam-type optimisers.

A per-variable learning rate needs per-variable optimizer state (scaling B's *gradient* would do
nothing under Adam, which divides by its magnitude), so this method only declares the factor
(`lr_multipliers`: every trainable B → λ) and the trainer gives those variables an optimizer slot of
their own inside their layer group (`workbench/train/lr_control.py`: "block_1 ×16"); the run records
each slot's LR as `lr/<slot>`.

Keras is imported only inside functions (the registry is read by `TrainConfig` and the CLI); this module
reuses LoRA's options (inherited), apply, target checks, layers and count.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.errors import ConfigError, received
from workbench.peft.base import Capabilities, option, register
from workbench.peft.lora import LoraOptions, apply_lora, load_layers, lora_change, lora_param_count

NAME = "loraplus"
RATIOS = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class LoraPlusOptions(LoraOptions):
    """LoRA's rank, alpha, targets and top blocks (inherited: the same fields, hence the same CLI flags), plus λ."""

    lr_ratio: float = option(16.0, "LoRA+ λ: B trains at λ × A's learning rate (the paper: 16 for Adam)",
                             label="B's LR ÷ A's LR λ", low=1, widget=RATIOS, token="λ{}")


def apply_loraplus(task_model, options: LoraPlusOptions, share: str) -> None:
    """LoRA on the targets (frozen W, trainable A and zero B, trainable head); λ acts in the optimizer."""
    if share != "off":  # TrainConfig refuses this first (no share modes): here for direct callers
        raise ConfigError(f"LoRA+ has no sharing modes: set share='off', or use method lora for tied or "
                          f"VeRA factors. {received(share=share)}")
    apply_lora(task_model, options, "off")


def b_factors(task_model, options: LoraPlusOptions) -> list:
    """The trainable LoRA B factors of the target layers (each variable once)."""
    found: dict[int, object] = {}
    for layer in task_model.lora_target_layers(options.lora_targets, options.top_blocks):
        b = getattr(layer, "lora_kernel_b", None) if getattr(layer, "lora_enabled", False) else None
        if b is not None and b.trainable:
            found.setdefault(id(b), b)
    return list(found.values())


def lr_multipliers(task_model, options: LoraPlusOptions) -> dict[int, float]:
    """id(B) -> λ for every trainable B: the trainer puts them in an optimizer slot at λ × the LR."""
    return {id(b): float(options.lr_ratio) for b in b_factors(task_model, options)}


def loraplus_count(task_model, options: LoraPlusOptions, share: str) -> int:
    """LoRA's closed form: Σ r·(d_in + d_out) over the target layers (λ changes no parameter count)."""
    return lora_param_count(task_model, options.rank, options.lora_targets, "off", options.top_blocks)


register(NAME, LoraPlusOptions,
         "LoRA+: LoRA whose B factors train at λ× A's learning rate (Hayou et al., 2024; λ=16 for Adam).",
         capabilities=Capabilities(stageable=True, mergeable=True, what_trains="LoRA weights"),
         prefix="lora_", count=loraplus_count, lr_multipliers=lr_multipliers, layers=load_layers,
         change=lora_change,
         study=(("loraplus λ=16", {}),))(apply_loraplus)
