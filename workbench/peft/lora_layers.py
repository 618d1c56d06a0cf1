"""LoRA for multi-axis projections, the way the paper (and Hugging Face peft) defines it.

Keras's `EinsumDense.enable_lora` gives a query projection of kernel shape (384, 12, 32) the factors
A: (384, 12, r) and B: (r, 32) — a LoRA per attention head, 6× the parameters of LoRA on the
384→384 map. Here A: (d_in, r) and B: (r, d_out) on the flattened kernel, so r = 8 on MiniLM's
query/value trains 73,728 parameters, as peft does. The class is swapped in place on an existing
layer (`adopt`), keeps the layer's weights and name, and serialises (merged kernel) like Keras's.
"""

from __future__ import annotations

import math

import keras
from keras import ops


def input_axes(equation: str) -> int:
    """How many leading kernel axes the einsum contracts with the input ('abc,cde->abde' → 1)."""
    inputs, rest = equation.split(",")
    kernel = rest.split("->")[0]
    count = 0
    for axis in kernel:
        if axis not in inputs:
            break
        count += 1
    if count == 0 or any(axis in inputs for axis in kernel[count:]):
        raise ValueError(f"Cannot flatten LoRA for einsum equation {equation!r}. Received: equation={equation!r}")
    return count


@keras.saving.register_keras_serializable(package="workbench")
class FlatLoraEinsumDense(keras.layers.EinsumDense):
    """An EinsumDense whose LoRA factors act on the flattened (d_in × d_out) kernel."""

    @classmethod
    def adopt(cls, layer: keras.layers.EinsumDense) -> FlatLoraEinsumDense:
        layer.__class__ = cls
        return layer

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros"):
        if not self.built:
            raise ValueError("Cannot enable lora on a layer that isn't yet built.")
        if self.lora_enabled:
            raise ValueError("lora is already enabled. This can only be done once per layer.")
        shape = tuple(int(d) for d in self._kernel.shape)
        n_in = input_axes(self.equation)
        d_in, d_out = math.prod(shape[:n_in]), math.prod(shape[n_in:])
        self._tracker.unlock()
        self.lora_kernel_a = self.add_weight(name="lora_kernel_a", shape=(d_in, rank),
                                             initializer=keras.initializers.get(a_initializer))
        self.lora_kernel_b = self.add_weight(name="lora_kernel_b", shape=(rank, d_out),
                                             initializer=keras.initializers.get(b_initializer))
        self._kernel.trainable = False
        self._tracker.lock()
        self.lora_enabled = True
        self.lora_rank = rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else rank

    @property
    def kernel(self):
        if not (self.lora_enabled and self.quantization_mode is None):
            return super().kernel
        delta = ops.reshape(ops.matmul(self.lora_kernel_a, self.lora_kernel_b), self._kernel.shape)
        return ops.cast(self._kernel + (self.lora_alpha / self.lora_rank) * delta, self.compute_dtype)
