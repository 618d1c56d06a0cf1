"""A proposed change to `workbench/peft/lora_layers.py` (owned elsewhere), measured by row 2.

Today `FlatLoraMixin.kernel` returns W + (α/r)·A·B, so every step forms the merged kernel and, in
the backward pass, the full d_in × d_out gradient of it (x^T·dy: ~0.6 GFLOP per adapted matrix at
batch 32 × 64 on MiniLM, ~7 % of a LoRA step) before reducing it to A and B. Hugging Face peft
instead computes y = x·W + (α/r)·(x·A)·B, whose gradients for A and B cost r/d of that.

`install()` patches the mixin in the calling process only (the benchmark worker started with
`--lora-proposal`): same parameters, same outputs (checked by `check()`), same saved model (the
kernel property, and so serialisation, is unchanged outside `call`).
"""

from __future__ import annotations

import keras
from keras import ops

from workbench.peft import lora_layers

_ORIGINAL_KERNEL = lora_layers.FlatLoraMixin.kernel


def _kernel(self):
    if getattr(self, "_lora_factored", False):
        return self._kernel  # the frozen W alone; the update is added in `call`
    return _ORIGINAL_KERNEL.fget(self)


def _factors(self):
    a, b = self.lora_kernel_a, self.lora_kernel_b
    if self.lora_scale is not None:
        a = a * self.lora_scale
    if self.lora_vera_d is not None:
        a = a * self.lora_vera_d
    if self.lora_vera_b is not None:
        b = b * self.lora_vera_b
    return a, b


def _call(self, inputs, *args, **kwargs):
    base_call = super(lora_layers.FlatLoraMixin, self).call  # Dense.call / EinsumDense.call
    linear = getattr(self, "activation", None) in (None, keras.activations.linear)
    if not (getattr(self, "lora_enabled", False) and self.quantization_mode is None and linear):
        return base_call(inputs, *args, **kwargs)
    self._lora_factored = True
    try:
        y = base_call(inputs, *args, **kwargs)
    finally:
        self._lora_factored = False
    d_in, _ = lora_layers.matrix_shape(self)
    a, b = _factors(self)
    x = ops.reshape(inputs, (-1, d_in))  # the contracted axes are the input's trailing ones
    delta = ops.matmul(ops.matmul(x, ops.cast(a, x.dtype)), ops.cast(b, x.dtype)) * (self.lora_alpha / self.lora_rank)
    return y + ops.reshape(delta, ops.shape(y))


def install() -> None:
    lora_layers.FlatLoraMixin.kernel = property(_kernel)
    lora_layers.FlatLoraMixin.call = _call


def uninstall() -> None:
    lora_layers.FlatLoraMixin.kernel = _ORIGINAL_KERNEL
    del lora_layers.FlatLoraMixin.call


def check(model, inputs) -> float:
    """Largest |difference| between the merged and the factored forward pass on `inputs`."""
    import numpy as np

    merged = keras.ops.convert_to_numpy(model(inputs, training=False))
    install()
    try:
        factored = keras.ops.convert_to_numpy(model(inputs, training=False))
    finally:
        uninstall()
    return float(np.abs(merged - factored).max())
