"""Adapters (Houlsby et al., 2019): small trainable bottlenecks after attention and feed-forward.

The pretrained weights stay frozen; each adapter trains 2·d·m + d + m parameters (d = hidden width,
m = `adapter_size`). With share='tied', every block reuses one adapter per position and width
(the parameter-sharing principle applied to adapters). The head always trains.

The models without transformer blocks get the same bottleneck after their hidden Dense layers:
mnist-cnn's `features` layer, the mlp's `dense_1` and `dense_2`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from workbench.errors import ConfigError, received
from workbench.peft.base import Capabilities, freeze_all, option, register, set_trainable

# Where adapters go: the output projection of each sublayer (BERT), the hidden Dense layers (mnist-cnn, mlp).
ADAPTER_TARGETS = ("attention_output", "feedforward_output_dense", "features", "dense_1", "dense_2")


@dataclass(frozen=True)
class AdapterOptions:
    adapter_size: int = option(16, "bottleneck width m of each adapter", label="Adapter bottleneck", low=1, high=4096,
                               widget=(4, 8, 16, 32, 64), token="{}-wide")


def adapter_layers(task_model) -> list:
    """The Dense/EinsumDense layers named in `ADAPTER_TARGETS`, head excluded.

    Names alone are not enough: the mlp's input layer is also called "features" (the name of
    mnist-cnn's hidden Dense layer), and an input layer has no output projection to put an adapter on.
    """
    import keras

    head = {id(layer) for layer in task_model.groups["head"]}
    return [layer for layer in task_model.all_layers()
            if layer.name in ADAPTER_TARGETS and isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))
            and id(layer) not in head]


def load_layers():
    from workbench.peft import adapter_layers as module

    return module


def apply_adapter(task_model, options: AdapterOptions, share: str) -> None:
    from workbench.peft.adapter_layers import adopt

    freeze_all(task_model)
    layers = adapter_layers(task_model)
    if not layers:
        raise ConfigError(f"This model has no layer to attach adapters to ({', '.join(ADAPTER_TARGETS)}): "
                          f"pick method lora or full. {received(model=task_model.card.name)}")
    shared: dict[tuple[str, int], tuple] = defaultdict(tuple)
    for layer in layers:
        adopt(layer)
        key = (layer.name, int(layer.kernel.shape[-1]))
        if share == "tied" and shared[key]:
            layer.add_adapter(options.adapter_size, shared=shared[key])
        else:
            layer.add_adapter(options.adapter_size)
            shared[key] = layer.adapter_variables()
    set_trainable(task_model.head_variables(), True)


def adapter_param_count(task_model, size: int, share: str = "off") -> int:
    """Closed form: 2·d·m + d + m per adapter (per distinct position when tied)."""
    widths = [(layer.name, int(layer.kernel.shape[-1])) for layer in adapter_layers(task_model)]
    if share == "tied":
        widths = list(set(widths))
    return sum(2 * d * size + d + size for _, d in widths)


def adapter_change(task_model, options: AdapterOptions, share: str) -> list:
    """The change map's measures (`explain.changes`): an adapter is no weight change but an added function,
    so its size is that of its contribution on the probe batch, ‖adapter(y)‖² against ‖y‖² (y: its
    layer's output), captured in the probe pass's one forward for all adapters."""
    from keras import ops

    from workbench.peft.base import ChangeMeasure

    layers = [layer for layer in adapter_layers(task_model) if getattr(layer, "adapter_size", 0)]

    def contributions(probe) -> dict[int, tuple]:
        for layer in layers:
            layer.adapter_probe = []
        try:
            probe.forward()
            seen = {id(layer): layer.adapter_probe for layer in layers}
        finally:
            for layer in layers:
                layer.adapter_probe = None
        square = lambda t: ops.sum(ops.square(ops.cast(t, "float32")))  # noqa: E731
        return {key: (sum(square(out) for _, out in calls), sum(square(y) for y, _ in calls))
                for key, calls in seen.items()}

    def squares(probe, layer):
        return probe.once("adapter", lambda: contributions(probe))[id(layer)]

    return [ChangeMeasure(layer, f"{layer.name}/adapter", layer.adapter_variables(), traced=True,
                          squares=lambda probe, layer=layer: squares(probe, layer)) for layer in layers]


register("adapter", AdapterOptions, "Adapters: small bottleneck layers after attention and feed-forward.",
         # adapters are non-linear: they cannot be merged into W, so their runs reload through their weights
         capabilities=Capabilities(share_modes=("tied",), mergeable=False, what_trains="adapters"),
         prefix="adapter", count=lambda tm, o, share: adapter_param_count(tm, o.adapter_size, share),
         layers=load_layers, change=adapter_change,
         study=(("adapter", {}), ("adapter tied", {"share": "tied"})))(apply_adapter)
