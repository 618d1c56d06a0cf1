"""Prompt tuning's Keras layers: the soft prompt, and the layers that make room for it in the inputs.

Loaded with the method (`prompt.load_layers`) and before a saved prompt-tuned model is read.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="workbench")
class SoftPrompt(keras.layers.Layer):
    """Prepends `length` trainable vectors to a (batch, tokens, hidden) sequence."""

    def __init__(self, length: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.length = length

    def build(self, input_shape):
        self.prompt_embeddings = self.add_weight(name="prompt_embeddings", shape=(self.length, input_shape[-1]),
                                                 initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, tokens):
        batch = ops.shape(tokens)[0]
        prompt = ops.broadcast_to(ops.cast(self.prompt_embeddings, tokens.dtype)[None], (batch, *self.prompt_embeddings.shape))
        return ops.concatenate([prompt, tokens], axis=1)

    def compute_output_shape(self, input_shape):
        length = None if input_shape[1] is None else input_shape[1] + self.length
        return (input_shape[0], length, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "length": self.length}


@keras.saving.register_keras_serializable(package="workbench")
class PrependConstant(keras.layers.Layer):
    """Prepends `length` constant positions to a (batch, tokens) mask or id tensor."""

    def __init__(self, length: int, value: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.length, self.value = length, value

    def call(self, x):
        pad = ops.full((ops.shape(x)[0], self.length), self.value, dtype=x.dtype)
        return ops.concatenate([pad, x], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None if input_shape[1] is None else input_shape[1] + self.length)

    def get_config(self):
        return {**super().get_config(), "length": self.length, "value": self.value}


@keras.saving.register_keras_serializable(package="workbench")
class DropPrefix(keras.layers.Layer):
    """Removes the first `length` positions (the prompt) before pooling."""

    probe = None  # a list while the change map's probe pass traces: the encoder output on the real tokens

    def __init__(self, length: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.length = length

    def call(self, x):
        out = x[:, self.length:, :]
        if self.probe is not None:
            self.probe.append(out)
        return out

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None if input_shape[1] is None else input_shape[1] - self.length, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "length": self.length}
