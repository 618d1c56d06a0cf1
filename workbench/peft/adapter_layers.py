"""Houlsby bottleneck adapters inside existing projection layers.

An adapter adds y ← y + up(gelu(down(y))) right after a sublayer's output projection (attention
output and feed-forward output in each transformer block), before the residual connection — where
Houlsby et al. (2019) place it. `up` starts at zero, so the model is unchanged at step 0.
The layer class is swapped in place. Adapters are not mergeable into W (they are non-linear), so a
run saves them in adapter.npz and reloads through `trainer.load_run_model`, not as a plain `.keras`.
Shared (tied) adapters reuse one set of variables.
"""

from __future__ import annotations

import keras
from keras import ops

from workbench.errors import received

ADAPTER_VARIABLES = ("adapter_down", "adapter_down_bias", "adapter_up", "adapter_up_bias")


class AdapterMixin:
    adapter_size = 0
    adapter_probe = None  # a list while the change map's probe pass traces: (y, adapter(y)) per call

    def add_adapter(self, size: int, shared: tuple | None = None) -> None:
        self._tracker.unlock()
        if shared is None:
            shared = self._new_adapter_variables(size)
        self.adapter_down, self.adapter_down_bias, self.adapter_up, self.adapter_up_bias = shared
        self._tracker.lock()
        self.adapter_size = size

    def _new_adapter_variables(self, size: int) -> tuple:
        width = int(self.kernel.shape[-1])
        return (self.add_weight(name="adapter_down", shape=(width, size), initializer="glorot_uniform"),
                self.add_weight(name="adapter_down_bias", shape=(size,), initializer="zeros"),
                self.add_weight(name="adapter_up", shape=(size, width), initializer="zeros"),
                self.add_weight(name="adapter_up_bias", shape=(width,), initializer="zeros"))

    def adapter_variables(self) -> tuple:
        return tuple(getattr(self, name) for name in ADAPTER_VARIABLES)

    def call(self, inputs, *args, **kwargs):
        y = super().call(inputs, *args, **kwargs)
        if not self.adapter_size:
            return y
        dtype = y.dtype
        h = ops.gelu(ops.matmul(y, ops.cast(self.adapter_down, dtype)) + ops.cast(self.adapter_down_bias, dtype))
        out = ops.matmul(h, ops.cast(self.adapter_up, dtype)) + ops.cast(self.adapter_up_bias, dtype)
        if self.adapter_probe is not None:
            self.adapter_probe.append((y, out))
        return y + out

    @classmethod
    def adopt(cls, layer):
        layer.__class__ = cls
        return layer


class AdapterDense(AdapterMixin, keras.layers.Dense):
    """A Dense layer followed by its adapter."""


class AdapterEinsumDense(AdapterMixin, keras.layers.EinsumDense):
    """An EinsumDense layer followed by its adapter."""


def adopt(layer: keras.layers.Layer) -> keras.layers.Layer:
    if isinstance(layer, keras.layers.EinsumDense):
        return AdapterEinsumDense.adopt(layer)
    if isinstance(layer, keras.layers.Dense):
        return AdapterDense.adopt(layer)
    raise TypeError(f"Adapters attach to Dense or EinsumDense layers: pick one of those (`adapter_layers` does). "
                    f"{received(layer=layer.name, type=type(layer).__name__)}")
