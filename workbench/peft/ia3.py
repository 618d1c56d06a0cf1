"""IA³ (Liu et al., 2022): learned vectors rescale the attention keys, the values and the feed-forward activation.

"Infused Adapter by Inhibiting and Amplifying Inner Activations": every pretrained weight stays frozen;
per transformer block three vectors train, l_k (d_k), l_v (d_v) and l_ff (d_ff), each initialised to
ones, so the output is unchanged at step 0. Trainable per block: d_k + d_v + d_ff (tiny-bert:
128 + 128 + 512 = 768), with the head always training.

Where the vectors sit, per model:
- keras-hub BERT (tiny-bert, minilm-l6): K ← l_k ⊙ K and V ← l_v ⊙ V on the outputs of the attention's
  EinsumDense layers "key" and "value" (output (batch, seq, heads, head_dim): the vector holds
  heads × head_dim entries, reshaped to (heads, head_dim)). The feed-forward vector scales the
  intermediate activation after its GELU, h ← l_ff ⊙ gelu(x·W1 + b1); it is held by the layer that
  reads h, "feedforward_output_dense", as a scale of that layer's input: (l_ff ⊙ h)·W2 + b2. That is
  the same function (the dropout between the two layers is elementwise, so it commutes with l_ff),
  and it lets every BERT vector fold exactly into a frozen kernel on export (below).
- models without attention (mnist-cnn: Dense "features"; mlp: "dense_1", "dense_2"; a user's model:
  its card's Dense layers): IA³'s feed-forward rescaling, y ← l ⊙ act(x·W + b), on the outputs (after
  the activation) of the model card's LoRA target layers, head excluded. With `ia3_feedforward` off
  such a model has nothing left to scale, and is refused.

The classes are swapped onto existing layers (as `lora_layers.adopt` does) and keep their weights and
names. Export (`model.keras`, reloadable with `safe_mode=True`):
- a vector on a layer's input, or on the output of a layer without activation whose bias has the
  output's shape (BERT's key, value and feed-forward output), folds into the saved kernel (and bias):
  W·diag(l), b ⊙ l. The file holds plain weights, so it also loads where keras-hub rebuilds its
  blocks' sublayers as plain EinsumDense/Dense (their classes are not in the block's config);
- a vector after a non-linear activation (mnist-cnn's relu "features") cannot fold (l may turn
  negative): the registered class saves it as one more weight, and its config says so (`ia3_units`).

ALBERT-tied blocks (`tie_layers`) work: block 0 runs at every depth, so its vectors do too (one set of
d_k + d_v + d_ff for the whole encoder, the tied-IA³ count the closed form gives on the tied model).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from workbench.errors import ConfigError, received
from workbench.peft.base import Capabilities, freeze_all, option, register, set_trainable

NAME = "ia3"
PREFIX = "ia3_"
ATTENTION = ("key", "value")  # keras-hub/Keras MultiHeadAttention's key and value projections
FEEDFORWARD = "feedforward_output_dense"  # reads the feed-forward activation: its input is what l_ff scales


@dataclass(frozen=True)
class IA3Options:
    """Which activations IA³ rescales: always the attention keys and values, the feed-forward one optionally."""

    ia3_feedforward: bool = option(True, "also rescale the feed-forward activation (off: attention keys and "
                                         "values only; models without attention need it on)",
                                   label="Also scale the feed-forward activation", token="no-FF")


@functools.cache
def _layer_classes():
    """The IA³ layer classes (Keras), registered for saving on first use (`register(layers=...)`)."""
    import keras
    from keras import ops

    from workbench.peft.lora_layers import input_axes

    class IA3Mixin:
        """y ← l ⊙ layer(x) (side "output", after the activation) or y ← layer(l ⊙ x) (side "input")."""

        ia3_scale = None  # the trainable vector, ones at the start
        ia3_side = None
        _ia3_units = None  # set by `from_config` when a saved vector is to be re-created

        def __init__(self, *args, ia3_units: int | None = None, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._ia3_units = ia3_units

        def build(self, input_shape):
            super().build(input_shape)
            if self._ia3_units:  # a reloaded export whose vector could not fold into the kernel
                self.add_ia3("output")

        def add_ia3(self, side: str):
            """Add (once) the vector for `side`; returns it."""
            if self.ia3_scale is not None:
                if side != self.ia3_side:
                    raise ValueError(f"Layer {self.name!r} already scales its {self.ia3_side}. Received: side={side!r}")
                return self.ia3_scale
            self._tracker.unlock()
            self.ia3_scale = self.add_weight(name="ia3_scale", shape=(ia3_width(self, side),), initializer="ones")
            self._tracker.lock()
            self.ia3_side = side
            return self.ia3_scale

        def _axes(self, side: str) -> tuple[int, ...]:
            shape = tuple(int(d) for d in self._kernel.shape)
            n_in = input_axes(self)
            return shape[:n_in] if side == "input" else shape[n_in:]

        def call(self, inputs, training=None):
            if self.ia3_scale is None:
                return super().call(inputs, training=training)
            scale = ops.reshape(self.ia3_scale, self._axes(self.ia3_side))
            if self.ia3_side == "input":
                return super().call(inputs * ops.cast(scale, inputs.dtype), training=training)
            y = super().call(inputs, training=training)
            return y * ops.cast(scale, y.dtype)

        # -- export ---------------------------------------------------------------------------------
        def ia3_foldable(self) -> bool:
            """Whether the vector folds exactly into the kernel (and bias) of a plain layer."""
            if self.ia3_side == "input":
                return True
            linear = self.activation is None or getattr(self.activation, "__name__", "") == "linear"
            bias_fits = self.bias is None or tuple(int(d) for d in self.bias.shape) == self._axes("output")
            return linear and bias_fits

        def _ia3_values(self) -> list:
            """What the file stores, in the base layer's order: kernel, bias, then a vector that did not fold."""
            kernel = ops.convert_to_numpy(self._kernel)
            bias = None if self.bias is None else ops.convert_to_numpy(self.bias)
            scale = ops.convert_to_numpy(self.ia3_scale)
            if not self.ia3_foldable():
                return [kernel] + ([bias] if bias is not None else []) + [scale]
            if self.ia3_side == "input":  # (l ⊙ x)·W = x·(diag(l)·W): scale the kernel's input rows
                in_axes = self._axes("input")
                kernel = (kernel * scale.reshape(in_axes + (1,) * (kernel.ndim - len(in_axes)))).astype(kernel.dtype)
            else:  # l ⊙ (x·W + b) = x·(W·diag(l)) + l ⊙ b
                out = scale.reshape(self._axes("output"))
                kernel = (kernel * out).astype(kernel.dtype)
                bias = None if bias is None else (bias * out).astype(bias.dtype)
            return [kernel] + ([bias] if bias is not None else [])

        def save_own_variables(self, store):
            if self.ia3_scale is None or self.quantization_mode is not None:
                return super().save_own_variables(store)
            for index, value in enumerate(self._ia3_values()):
                store[str(index)] = value

        def load_own_variables(self, store):
            if self.ia3_scale is None or self.quantization_mode is not None or self.ia3_foldable():
                return super().load_own_variables(store)
            targets = [self._kernel] + ([self.bias] if self.bias is not None else []) + [self.ia3_scale]
            if len(store.keys()) != len(targets):
                raise ValueError(f"Layer {self.name!r} expected {len(targets)} saved weights (kernel, bias, "
                                 f"ia3_scale). Received: {len(store.keys())}")
            for index, variable in enumerate(targets):
                variable.assign(store[str(index)])

        def get_config(self):
            config = super().get_config()
            if self.ia3_scale is not None and not self.ia3_foldable():
                config["ia3_units"] = int(self.ia3_scale.shape[0])
            return config

        @classmethod
        def adopt(cls, layer):
            layer.__class__ = cls
            return layer

    @keras.saving.register_keras_serializable(package="workbench")
    class IA3Dense(IA3Mixin, keras.layers.Dense):
        """A Dense layer whose input or output (after its activation) an IA³ vector rescales."""

    @keras.saving.register_keras_serializable(package="workbench")
    class IA3EinsumDense(IA3Mixin, keras.layers.EinsumDense):
        """An EinsumDense layer (attention key/value) whose output an IA³ vector rescales."""

    return IA3Dense, IA3EinsumDense


def ia3_width(layer, side: str) -> int:
    """Entries of the vector: the layer's flattened input (side "input") or output (side "output") width."""
    from workbench.peft.lora_layers import matrix_shape

    d_in, d_out = matrix_shape(layer)
    return d_in if side == "input" else d_out


def ia3_layers(task_model, options: IA3Options) -> list[tuple]:
    """(layer, side) pairs IA³ rescales, head excluded, checked: Dense/EinsumDense layers it can adopt."""
    import keras

    head = {id(layer) for layer in task_model.groups["head"]}
    layers = [layer for layer in task_model.all_layers() if id(layer) not in head]
    linear = (keras.layers.Dense, keras.layers.EinsumDense)
    attention = [(layer, "output") for layer in layers if layer.name in ATTENTION and isinstance(layer, linear)]
    if attention:
        feedforward = [(layer, "input") for layer in layers
                       if layer.name == FEEDFORWARD and isinstance(layer, keras.layers.Dense)]
        chosen = attention + (feedforward if options.ia3_feedforward else [])
    else:
        if not options.ia3_feedforward:
            raise ConfigError(f"Model {task_model.card.name!r} has no attention: IA³ rescales its hidden layers' "
                              f"activations, so set ia3_feedforward true (or pick another method). "
                              f"{received(ia3_feedforward=False)}")
        chosen = [(layer, "output") for layer in task_model.lora_target_layers(None)]
        if not chosen:
            raise ConfigError(f"This model has no hidden layer for IA³ to rescale (its card names none): pick "
                              f"method lora or full. {received(model=task_model.card.name)}")
    for layer, _ in chosen:
        _check_adoptable(layer)
    return chosen


def _check_adoptable(layer) -> None:
    import keras

    from workbench.peft.lora_layers import factorable

    own = _layer_classes()
    plain = type(layer) in (keras.layers.Dense, keras.layers.EinsumDense) or isinstance(layer, own)
    if not plain or not factorable(layer) or getattr(layer, "quantization_mode", None) is not None:
        raise ConfigError(f"IA³ rescales plain Dense or EinsumDense layers (output = batch axes + kernel output "
                          f"axes, not quantized); layer {layer.name!r} is a {type(layer).__name__}: pick method lora "
                          f"or full. {received(layer=layer.name)}")


def adopt(layer):
    import keras

    ia3_dense, ia3_einsum = _layer_classes()
    if isinstance(layer, keras.layers.EinsumDense):
        return ia3_einsum.adopt(layer)
    return ia3_dense.adopt(layer)


def ia3_count(task_model, options: IA3Options, share: str) -> int:
    """Closed form: Σ the vectors' widths, d_k + d_v (+ d_ff) per block, or each hidden layer's width."""
    return sum(ia3_width(layer, side) for layer, side in ia3_layers(task_model, options))


def ia3_variables(task_model) -> list:
    """The IA³ vectors (what an adapter file stores besides the head)."""
    return [v for v in task_model.model.variables if v.path.split("/")[-1].startswith(PREFIX)]


def check_card(card, config) -> None:
    """Before a build: a model without attention (not a text transformer) needs the feed-forward scaling."""
    if not config.options.ia3_feedforward and card.modality != "text":
        raise ConfigError(f"Model {card.name!r} has no attention: IA³ rescales its hidden layers' activations, so "
                          f"set ia3_feedforward true (or pick another method). {received(ia3_feedforward=False)}")


def ia3_change(task_model, options: IA3Options, share: str) -> list:
    """The change map's measures (`explain.changes`): a vector l scales W's rows (input side) or columns
    (output side), so ‖ΔW‖² = Σ (l − 1)² · (squared norms of those rows or columns), from norms taken once.
    (After a non-linear activation this is the weight that would give the same output where l > 0.)"""
    import numpy as np
    from keras import ops

    from workbench.peft.base import ChangeMeasure
    from workbench.peft.lora_layers import matrix_shape

    measures = []
    for layer, side in ia3_layers(task_model, options):
        if layer.ia3_scale is None:
            continue
        flat = np.square(ops.convert_to_numpy(layer._kernel).reshape(matrix_shape(layer)), dtype=np.float64)
        norms = flat.sum(axis=1 if side == "input" else 0)

        def squares(probe, layer=layer, norms=norms):
            scale = ops.convert_to_numpy(layer.ia3_scale).astype(np.float64)
            return float(np.sum(np.square(scale - 1.0) * norms)), float(norms.sum())

        measures.append(ChangeMeasure(layer, layer.name, (layer.ia3_scale,), squares=squares))
    return measures


@register(NAME, IA3Options, "IA³: learned vectors rescale attention keys, values and feed-forward activations.",
          # The paper trains the vectors at 3e-3 (Adafactor); the same here for the vectors and the head.
          capabilities=Capabilities(what_trains="IA³ scales", default_lr={"*": 3e-3}),
          prefix=PREFIX, count=ia3_count, layers=_layer_classes, check=check_card, change=ia3_change,
          study=(("ia3", {}),))
def apply_ia3(task_model, options: IA3Options, share: str) -> None:
    targets = ia3_layers(task_model, options)  # refusals before anything changes
    freeze_all(task_model)
    vectors = [adopt(layer).add_ia3(side) for layer, side in targets]
    set_trainable(vectors, True)
    set_trainable(task_model.head_variables(), True)
