"""DoRA (Liu et al., 2024, "Weight-Decomposed Low-Rank Adaptation"): magnitude and direction train apart.

Each target layer's kernel W, flattened to d_in × d_out as LoRA flattens it here (`lora_layers`), is
split into a magnitude vector m (one entry per output column, m_j = ||W[:, j]||₂ over the input
dimension) and a direction. Training learns m and a LoRA update on the direction:

    W' = m · (W + ΔW) / ||W + ΔW||_c,    ΔW = (α/r)·A·B

with A: d_in × r (He-uniform) and B: r × d_out (zeros), ||·||_c the column-wise norm computed on
the fly. At step 0 ΔW = 0 and m = ||W||_c, so W' = W and the model's output is unchanged.
Trainable parameters per layer: r·(d_in + d_out) + d_out.

The column norm is a constant in the backward pass (`keras.ops.stop_gradient`), as the paper
(section 4.3, "to reduce training overhead") and Hugging Face peft do: the forward pass is exact
DoRA; the gradient skips the norm's derivative, which saves memory and hardly changes training.

Training computes the factored form, as `lora_layers` does for LoRA: since W' scales W + ΔW per output
column, x·W' = (x·W + (α/r)·(x·A)·B) · (m / ||W + ΔW||_c), so A and B get gradients of r/d the cost of
the merged kernel's. The `kernel` property returns the merged W' (export, inspection): a saved `.keras`
holds W' as the plain kernel of a registered Dense/EinsumDense subclass that, reloaded without DoRA
variables, acts as the plain layer: the export predicts what the trained model predicts.
Equations that cannot be flattened that way use the merged kernel in the layer's own call.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from workbench.errors import ConfigError, received
from workbench.peft.base import Capabilities, freeze_all, option, register, set_trainable
from workbench.peft.lora import RANKS

NAME = "dora"
PREFIX = "dora_"
EPSILON = 1e-12  # a column whose norm is 0 (m = 0 there) stays 0 instead of 0/0


@dataclass(frozen=True)
class DoraOptions:
    """rank r and scale alpha of the direction update ΔW = (α/r)·A·B, the layers to adapt."""

    rank: int = option(8, "rank r of the update B·A (try 4, 8 or 16)", label="Rank r", low=1, high=1024, widget=RANKS,
                       token="r{}", always=True)
    alpha: float = option(16.0, "scale α: the update is multiplied by α/r (commonly 2× the rank)", label="Alpha α",
                          low=1e-9, high=1e6, widget=(1, 2, 4, 8, 16, 32, 64, 128), token="α{}")
    lora_targets: list[str] | None = option(None, "layers to adapt, comma-separated (default: the model card's)",
                                            label="Target layers", low=1, widget="layers", token="on {}",
                                            example="query,value")


@functools.cache
def _layer_classes() -> dict[str, type]:
    """The DoRA Keras classes (registered for saving): {"Dense": ..., "EinsumDense": ...}."""
    import keras
    from keras import ops

    from workbench.peft.lora_layers import factorable

    class DoraMixin:
        """`kernel` returns the merged W'; `call` trains (x·W + s·(x·A)·B) · m / sg(||W + s·A·B||_c)."""

        dora_enabled = False

        def enable_dora(self, rank: int, alpha: float) -> None:
            if not self.built:
                raise ValueError("Cannot enable DoRA on a layer that isn't yet built.")
            if self.dora_enabled or getattr(self, "lora_enabled", False) or self.quantization_mode is not None:
                raise ValueError(f"DoRA needs a plain float layer without LoRA. Received: layer={self.name!r}")
            d_in, d_out = flat_shape(self)
            kernel = self._kernel
            self._tracker.unlock()
            self.dora_kernel_a = self.add_weight(name="dora_kernel_a", shape=(d_in, rank),
                                                 initializer=keras.initializers.HeUniform())
            self.dora_kernel_b = self.add_weight(name="dora_kernel_b", shape=(rank, d_out), initializer="zeros")
            # m = ||W||_c; a callable initializer, so a shapes-only preview never reads the kernel
            self.dora_magnitude = self.add_weight(
                name="dora_magnitude", shape=(d_out,),
                initializer=lambda shape, dtype=None: ops.cast(column_norms(ops.reshape(kernel, (d_in, d_out))),
                                                               dtype or "float32"))
            self._kernel.trainable = False
            self._tracker.lock()
            self.dora_enabled = True
            self.dora_rank = int(rank)
            self.dora_alpha = float(alpha)
            self.dora_shape = (d_in, d_out)

        def dora_delta(self):
            """ΔW = (α/r)·A·B, flat (d_in, d_out)."""
            return (self.dora_alpha / self.dora_rank) * ops.matmul(self.dora_kernel_a, self.dora_kernel_b)

        def dora_column_scale(self, flat_kernel, delta):
            """m / ||W + ΔW||_c in float32, the norm held constant for the gradient (see the module doc)."""
            norm = ops.stop_gradient(column_norms(ops.cast(flat_kernel, "float32") + ops.cast(delta, "float32")))
            return ops.cast(self.dora_magnitude, "float32") / norm

        @property
        def kernel(self):
            if not self.dora_enabled:
                return super().kernel
            flat = ops.reshape(self._kernel, self.dora_shape)
            delta = self.dora_delta()
            merged = (ops.cast(flat, "float32") + ops.cast(delta, "float32")) * self.dora_column_scale(flat, delta)
            return ops.cast(ops.reshape(merged, self._kernel.shape), self.compute_dtype)

        def call(self, inputs, training=None):
            if not (self.dora_enabled and factorable(self)):
                return super().call(inputs, training=training)  # the merged kernel through the layer's own call
            d_in, d_out = self.dora_shape
            kernel = self._kernel
            if isinstance(self, keras.layers.EinsumDense):
                y = ops.einsum(self.equation, inputs, kernel)
            else:
                y = ops.matmul(inputs, kernel)
            a, b = self.dora_kernel_a, self.dora_kernel_b
            x = ops.reshape(inputs, (-1, d_in))
            low = ops.matmul(ops.matmul(x, ops.cast(a, x.dtype)), ops.cast(b, x.dtype))
            scale = self.dora_column_scale(ops.reshape(kernel, (d_in, d_out)), self.dora_delta())
            flat_y = ops.reshape(y, (-1, d_out)) + low * (self.dora_alpha / self.dora_rank)
            y = ops.reshape(flat_y * ops.cast(scale, flat_y.dtype), ops.shape(y))
            if self.bias is not None:
                y = ops.add(y, self.bias)
            if self.activation is not None:
                y = self.activation(y)
            return y

    @keras.saving.register_keras_serializable(package="workbench")
    class DoraDense(DoraMixin, keras.layers.Dense):
        """A Dense layer with DoRA on its kernel (saved: the merged kernel, a plain Dense on reload)."""

    @keras.saving.register_keras_serializable(package="workbench")
    class DoraEinsumDense(DoraMixin, keras.layers.EinsumDense):
        """An EinsumDense layer with DoRA on its flattened (d_in × d_out) kernel."""

    return {"Dense": DoraDense, "EinsumDense": DoraEinsumDense}


def column_norms(flat):
    """||flat[:, j]||₂ for each output column j (the norm over the input dimension), at least EPSILON."""
    from keras import ops

    return ops.maximum(ops.sqrt(ops.sum(ops.square(flat), axis=0)), EPSILON)


def flat_shape(layer) -> tuple[int, int]:
    """(d_in, d_out) of the map a layer applies, read from the stored kernel (never the merged one)."""
    import math

    import keras

    from workbench.peft.lora_layers import input_axes

    shape = [int(d) for d in layer._kernel.shape]
    n_in = input_axes(layer) if isinstance(layer, keras.layers.EinsumDense) else len(shape) - 1
    return math.prod(shape[:n_in]), math.prod(shape[n_in:])


def dora_layers_of(task_model, options: DoraOptions) -> list:
    """The target layers, checked: they exist, are Dense/EinsumDense, and the rank fits each one."""
    import keras

    layers = task_model.lora_target_layers(options.lora_targets)
    if not layers:
        raise ConfigError(f"No layer matches the DoRA targets: use layer names from the model card "
                          f"({', '.join(task_model.card.lora_targets)}). {received(lora_targets=options.lora_targets)}")
    for layer in layers:
        if not isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
            raise ConfigError(f"DoRA adapts Dense or EinsumDense layers, and {layer.name!r} is a "
                              f"{type(layer).__name__}: name Dense layers in lora_targets or use method lora. "
                              f"{received(lora_targets=options.lora_targets or list(task_model.card.lora_targets))}")
        try:
            d_in, d_out = flat_shape(layer)
        except ValueError:
            raise ConfigError(f"DoRA cannot flatten layer {layer.name!r}'s einsum {layer.equation!r} into a "
                              f"d_in × d_out matrix: leave it out of lora_targets. "
                              f"{received(lora_targets=options.lora_targets)}") from None
        if options.rank > min(d_in, d_out):
            raise ConfigError(f"DoRA rank {options.rank} exceeds layer {layer.name!r}'s smaller dimension "
                              f"{min(d_in, d_out)}: lower the rank. {received(rank=options.rank)}")
    return layers


def dora_count(task_model, options: DoraOptions, share: str = "off") -> int:
    """Closed form, head excluded: Σ over target layers of r·(d_in + d_out) + d_out."""
    shapes = [flat_shape(layer) for layer in task_model.lora_target_layers(options.lora_targets)]
    return sum(options.rank * (d_in + d_out) + d_out for d_in, d_out in shapes)


def dora_variables(task_model) -> list:
    """The DoRA factors and magnitudes (what a run's adapter file stores besides the head)."""
    return [v for v in task_model.model.variables if v.path.split("/")[-1].startswith(PREFIX)]


def dora_change(task_model, options: DoraOptions, share: str) -> list:
    """The change map's measures (`explain.changes`): each layer's merged W' against its frozen W, and the
    direction update (α/r)·A·B's factors for its spectrum."""
    from keras import ops

    from workbench.peft.base import ChangeMeasure

    def squares(layer):
        frozen = ops.cast(layer._kernel, "float32")
        delta = ops.cast(layer.kernel, "float32") - frozen
        return float(ops.sum(ops.square(delta))), float(ops.sum(ops.square(frozen)))

    def factors(layer):
        return (ops.convert_to_numpy(layer.dora_kernel_a), ops.convert_to_numpy(layer.dora_kernel_b),
                layer.dora_alpha / layer.dora_rank)

    layers = [x for x in task_model.lora_target_layers(options.lora_targets) if getattr(x, "dora_enabled", False)]
    return [ChangeMeasure(layer, layer.name, (layer.dora_kernel_a, layer.dora_kernel_b, layer.dora_magnitude),
                          squares=lambda probe, layer=layer: squares(layer), factors=lambda layer=layer: factors(layer))
            for layer in layers]


@register(NAME, DoraOptions, "DoRA: LoRA on the direction of each weight column plus a trainable magnitude.",
          capabilities=Capabilities(what_trains="DoRA weights"), prefix=PREFIX, count=dora_count,
          layers=_layer_classes, change=dora_change, study=(("dora r=8", {}),))
def apply_dora(task_model, options: DoraOptions, share: str) -> None:
    import keras

    classes = _layer_classes()
    freeze_all(task_model)
    layers = dora_layers_of(task_model, options)
    for layer in layers:  # swap the class in place: the layer keeps its weights, name and place in the graph
        layer.__class__ = classes["EinsumDense" if isinstance(layer, keras.layers.EinsumDense) else "Dense"]
        layer.enable_dora(options.rank, options.alpha)
    set_trainable(dora_variables(task_model), True)
    set_trainable(task_model.head_variables(), True)
