"""LoRA layers: the update ΔW = (α/r)·B·A on the flattened kernel, plain, tied or VeRA-style.

Why our own and not Keras's `enable_lora` alone: for a multi-axis projection (EinsumDense, kernel
(384, 12, 32)) Keras creates A: (384, 12, r), B: (r, 32) — a LoRA per attention head with 6× the
parameters of LoRA on the 384→384 map. Here A: (d_in, r) and B: (r, d_out) on the flattened kernel,
as in the paper and Hugging Face peft (r = 8 on MiniLM's query/value: 73,728 parameters).

Sharing (the first principle) only changes where A and B come from:
- plain: each layer owns A and B;
- tied: one A and B shared by every target layer of the same shape, plus a per-layer scale vector s
  (ΔW = (α/r)·(A·diag(s))·B);
- vera (Kopiczko et al. 2024): A and B are frozen random matrices shared by all layers; each layer
  trains only d (r values) and b (d_out values): ΔW = (α/r)·(A·diag(d))·B·diag(b).
The classes are swapped onto existing layers (`adopt`), keep their weights and names, and serialise
the merged kernel, so an exported model needs no workbench code beyond these registered classes.

Training computes y = x·W + (α/r)·((x·A')·B') rather than x·(W + ΔW), as Hugging Face peft does: the
merged form needs, in every backward pass, the full d_in × d_out gradient of the merged kernel before
reducing it to A and B (~7 % of a MiniLM LoRA step); the factored form's gradients for A and B cost
r/d of that. The `kernel` property still returns the merged W + ΔW (export, merge, inspection).
"""

from __future__ import annotations

import functools
import math

import keras
from keras import ops


def input_axes(layer: keras.layers.Layer) -> int:
    """How many leading kernel axes the layer contracts with its input (Dense: 1; 'abcd,cde->abe': 2)."""
    if not isinstance(layer, keras.layers.EinsumDense):
        return len(layer.kernel.shape) - 1
    inputs, rest = layer.equation.split(",")
    kernel = rest.split("->")[0]
    count = 0
    while count < len(kernel) and kernel[count] in inputs:
        count += 1
    if count == 0 or any(axis in inputs for axis in kernel[count:]):
        raise ValueError(f"Cannot flatten LoRA for einsum equation {layer.equation!r}. Received: equation={layer.equation!r}")
    return count


def matrix_shape(layer: keras.layers.Layer) -> tuple[int, int]:
    """(d_in, d_out) of the linear map a layer applies: what LoRA factorises."""
    shape = [int(d) for d in layer.kernel.shape]
    n_in = input_axes(layer)
    return math.prod(shape[:n_in]), math.prod(shape[n_in:])


def factorable(layer: keras.layers.Layer) -> bool:
    """Whether x·W can be written as flat(x)·flat(W): true for Dense, and for an EinsumDense whose
    contracted axes are the input's trailing axes and whose output is the input's other axes followed
    by the kernel's output axes, in order ('abc,cde->abde', 'abcd,cde->abe')."""
    if not isinstance(layer, keras.layers.EinsumDense):
        return True
    return _einsum_factorable(layer.equation)


@functools.lru_cache(maxsize=64)
def _einsum_factorable(equation: str) -> bool:
    inputs, rest = equation.replace(" ", "").split(",")
    kernel, output = rest.split("->")
    if "." in equation:
        return False
    n_in = 0
    while n_in < len(kernel) and kernel[n_in] in inputs:
        n_in += 1
    batch = inputs[: len(inputs) - n_in]
    return inputs.endswith(kernel[:n_in]) and output == batch + kernel[n_in:]


class FlatLoraMixin:
    """`kernel` returns the merged W + ΔW (export, inspection); `call` trains the factored x·W + s·(x·A')·B'."""

    lora_scale = None
    lora_vera_d = None
    lora_vera_b = None

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros"):
        if not self.built:
            raise ValueError("Cannot enable lora on a layer that isn't yet built.")
        if self.lora_enabled:
            raise ValueError("lora is already enabled. This can only be done once per layer.")
        d_in, d_out = matrix_shape(self)
        self._tracker.unlock()
        self.lora_kernel_a = self.add_weight(name="lora_kernel_a", shape=(d_in, rank),
                                             initializer=keras.initializers.get(a_initializer))
        self.lora_kernel_b = self.add_weight(name="lora_kernel_b", shape=(rank, d_out),
                                             initializer=keras.initializers.get(b_initializer))
        self._finish(rank, lora_alpha)

    def share_lora(self, a, b, rank: int, lora_alpha: float, *, mode: str) -> None:
        """Use shared factors `a` (d_in, r) and `b` (r, d_out) and add this layer's own vectors."""
        d_out = matrix_shape(self)[1]
        self._tracker.unlock()
        self.lora_kernel_a, self.lora_kernel_b = a, b
        if mode == "tied":
            self.lora_scale = self.add_weight(name="lora_scale", shape=(rank,), initializer="ones")
        elif mode == "vera":
            self.lora_vera_d = self.add_weight(name="lora_vera_d", shape=(rank,),
                                               initializer=keras.initializers.Constant(0.1))
            self.lora_vera_b = self.add_weight(name="lora_vera_b", shape=(d_out,), initializer="zeros")
        else:
            raise ValueError(f"Unknown sharing mode. Received: mode={mode!r}")
        self._finish(rank, lora_alpha)

    def _finish(self, rank, lora_alpha) -> None:
        self._kernel.trainable = False
        self._tracker.lock()
        self.lora_enabled = True
        self.lora_rank = rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else rank

    def lora_factors(self):
        """(A', B') with ΔW = (α/r)·A'·B': the layer's own scale/VeRA vectors folded into shared A and B."""
        a, b = self.lora_kernel_a, self.lora_kernel_b
        if self.lora_scale is not None:
            a = a * self.lora_scale
        if self.lora_vera_d is not None:
            a = a * self.lora_vera_d
        if self.lora_vera_b is not None:
            b = b * self.lora_vera_b
        return a, b

    def lora_delta(self):
        a, b = self.lora_factors()
        return (self.lora_alpha / self.lora_rank) * ops.reshape(ops.matmul(a, b), self._kernel.shape)

    @property
    def kernel(self):
        if not (getattr(self, "lora_enabled", False) and self.quantization_mode is None):
            return super().kernel
        return ops.cast(self._kernel + self.lora_delta(), self.compute_dtype)

    def call(self, inputs, training=None):
        if not (getattr(self, "lora_enabled", False) and self.quantization_mode is None and factorable(self)):
            return super().call(inputs, training=training)
        # 1. the frozen projection with W alone (Dense: matmul; EinsumDense: its own equation)
        if isinstance(self, keras.layers.EinsumDense):
            y = ops.einsum(self.equation, inputs, self._kernel)
        else:
            y = ops.matmul(inputs, self._kernel)
        # 2. the low-rank path on the flattened input: (N, d_in) → (N, r) → (N, d_out)
        d_in, _ = matrix_shape(self)
        a, b = self.lora_factors()
        x = ops.reshape(inputs, (-1, d_in))
        delta = ops.matmul(ops.matmul(x, ops.cast(a, x.dtype)), ops.cast(b, x.dtype))
        y = y + ops.reshape(delta * (self.lora_alpha / self.lora_rank), ops.shape(y))
        # 3. bias and activation as the base layer applies them
        if self.bias is not None:
            y = ops.add(y, self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return y

    @classmethod
    def adopt(cls, layer):
        layer.__class__ = cls
        return layer


@keras.saving.register_keras_serializable(package="workbench")
class FlatLoraDense(FlatLoraMixin, keras.layers.Dense):
    """A Dense layer with flat, optionally shared LoRA factors."""


@keras.saving.register_keras_serializable(package="workbench")
class FlatLoraEinsumDense(FlatLoraMixin, keras.layers.EinsumDense):
    """An EinsumDense layer with LoRA on its flattened (d_in × d_out) kernel."""


def adopt(layer: keras.layers.Layer) -> keras.layers.Layer:
    """Swap a Dense/EinsumDense onto its flat-LoRA class (Conv layers keep Keras's native LoRA)."""
    if isinstance(layer, keras.layers.EinsumDense):
        return FlatLoraEinsumDense.adopt(layer)
    if isinstance(layer, keras.layers.Dense):
        return FlatLoraDense.adopt(layer)
    return layer
