"""LoRA (Hu et al., 2021): W stays frozen; a low-rank update ΔW = (α/r)·B·A trains instead.

B starts at zero, so the model's output is unchanged at step 0. Trainable parameters per target
layer: r·(d_in + d_out) instead of d_in·d_out. With `share` (the first principle) the factors are
shared across layers: `tied` (one trainable A, B per layer shape + per-layer scale vectors) or
`vera` (frozen shared random A, B; per-layer vectors d and b) — see `lora_layers.py`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from workbench.errors import ConfigError, received
from workbench.peft.base import Capabilities, freeze_all, option, register, set_trainable

NAME = "lora"
RANKS = (1, 2, 4, 8, 16, 32, 64)
LORA_VARIABLES = ("lora_kernel_a", "lora_kernel_b", "lora_scale", "lora_vera_d", "lora_vera_b")  # if a layer has them


@dataclass(frozen=True)
class LoraOptions:
    """rank r, scale alpha (ΔW is multiplied by alpha/r), the layers to adapt."""

    rank: int = option(8, "rank r of the update B·A (try 4, 8 or 16)", label="Rank r", low=1, high=1024, widget=RANKS,
                       token="r{}", always=True)
    alpha: float = option(16.0, "scale α: the update is multiplied by α/r (commonly 2× the rank)", label="Alpha α",
                          low=1e-9,
                          high=1e6, widget=(1, 2, 4, 8, 16, 32, 64, 128), token="α{}")
    lora_targets: list[str] | None = option(None, "layers to adapt, comma-separated (default: the model card's)",
                                            label="Target layers", low=1, widget="layers", token="on {}", example="query,value")
    top_blocks: int | None = option(None, "adapt only the target layers of the top N blocks (peft's "
                                    "layers_to_transform); the frozen blocks below can then be cached", label="Top blocks only",
                                    low=1, high=1000, widget="blocks", token="top {} blocks", example=2)


def load_layers():
    """The flat-LoRA layer classes (Keras): registered for saving when first loaded."""
    from workbench.peft import lora_layers

    return lora_layers


def lora_layers_of(task_model, options: LoraOptions) -> list:
    """The target layers, checked: they exist and the rank fits each one's smaller dimension."""
    from workbench.peft.lora_layers import matrix_shape

    layers = task_model.lora_target_layers(options.lora_targets, options.top_blocks)
    if not layers:
        raise ConfigError(f"No layer matches the LoRA targets: use layer names from the model card "
                          f"({', '.join(task_model.card.lora_targets)}). {received(lora_targets=options.lora_targets)}")
    for layer in layers:
        d_in, d_out = matrix_shape(layer)
        if options.rank > min(d_in, d_out):
            raise ConfigError(f"LoRA rank {options.rank} exceeds layer {layer.name!r}'s smaller dimension "
                              f"{min(d_in, d_out)}: lower the rank. {received(rank=options.rank)}")
    return layers


def apply_lora(task_model, options: LoraOptions, share: str) -> None:
    from workbench.peft.lora_layers import adopt

    freeze_all(task_model)
    layers = lora_layers_of(task_model, options)
    for layer in layers:
        adopt(layer)
    if share == "off":
        for layer in layers:
            layer.enable_lora(options.rank, lora_alpha=options.alpha)
    else:
        share_factors(layers, options, share)
    set_trainable(task_model.head_variables(), True)


def share_factors(layers: list, options: LoraOptions, share: str) -> None:
    """One (A, B) per distinct layer shape, owned by the first layer and reused by the rest."""
    import keras

    from workbench.peft.lora_layers import matrix_shape

    if any(not hasattr(layer, "share_lora") for layer in layers):
        raise ConfigError(f"Shared LoRA needs Dense or EinsumDense targets. {received(share=share)}")
    by_shape: dict[tuple[int, int], list] = defaultdict(list)
    for layer in layers:
        by_shape[matrix_shape(layer)].append(layer)
    vera = share == "vera"
    for (d_in, d_out), group in by_shape.items():
        owner = group[0]
        owner._tracker.unlock()
        init_a = keras.initializers.HeUniform() if not vera else keras.initializers.HeUniform(seed=1)
        init_b = "zeros" if not vera else keras.initializers.HeUniform(seed=2)
        a = owner.add_weight(name="lora_shared_a", shape=(d_in, options.rank), initializer=init_a, trainable=not vera)
        b = owner.add_weight(name="lora_shared_b", shape=(options.rank, d_out), initializer=init_b, trainable=not vera)
        owner._tracker.lock()
        for layer in group:
            layer.share_lora(a, b, options.rank, options.alpha, mode=share)


def lora_param_count(task_model, rank: int, targets: list[str] | None = None, share: str = "off",
                     top_blocks: int | None = None) -> int:
    """Closed-form trainable LoRA parameters (head excluded) for a model's target layers."""
    from workbench.peft.lora_layers import matrix_shape

    layers = task_model.lora_target_layers(targets, top_blocks)
    return lora_count([matrix_shape(layer) for layer in layers], rank, share)


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


def lora_change(task_model, options: LoraOptions, share: str) -> list:
    """The change map's measures (`explain.changes`): each adapted layer's ΔW = s·A'·B', from its factors."""
    import numpy as np
    from keras import ops

    from workbench.peft.base import ChangeMeasure

    measures = []
    for layer in task_model.lora_target_layers(options.lora_targets, options.top_blocks):
        if getattr(layer, "lora_enabled", False):
            own = [getattr(layer, name, None) for name in LORA_VARIABLES]
            base = float(np.sum(np.square(ops.convert_to_numpy(layer._kernel), dtype=np.float64)))
            measures.append(ChangeMeasure(layer, layer.name, tuple(v for v in own if v is not None),
                                          factors=lambda layer=layer: lora_factors(layer), base=base))
    return measures


def lora_factors(layer) -> tuple:
    """(A', B', s) in numpy with the flat ΔW = s·A'·B': the layer's scale/VeRA vectors folded in (Keras's
    own LoRA on a Conv layer: A reshaped to (d_in, r))."""
    from keras import ops

    a, b = layer.lora_factors() if hasattr(layer, "lora_factors") else (layer.lora_kernel_a, layer.lora_kernel_b)
    rank = int(layer.lora_rank)
    return (ops.convert_to_numpy(a).reshape(-1, rank), ops.convert_to_numpy(b).reshape(rank, -1),
            float(layer.lora_alpha) / rank)


register(NAME, LoraOptions, "LoRA: frozen weights plus a trainable low-rank update on chosen layers.",
         capabilities=Capabilities(share_modes=("tied", "vera"), role="default", what_trains="LoRA weights"),
         prefix="lora_", count=lambda tm, o, share: lora_param_count(tm, o.rank, o.lora_targets, share, o.top_blocks),
         layers=load_layers, change=lora_change,
         study=(("lora r=8", {}), ("lora tied", {"share": "tied"}), ("lora vera", {"share": "vera"})))(apply_lora)
