"""Prompt tuning (Lester et al., 2021): trainable soft-prompt vectors prepended to the token embeddings.

Every pretrained weight stays frozen; only `prompt_length × hidden` numbers (+ the head) train.
keras-hub's BERT is a functional model, so the soft prompt cannot be slotted into it; instead the
task model is re-wired from the backbone's own layers (same objects, same weights):
token embedding → [prompt; tokens] → + position + segment embeddings → LayerNorm → blocks, with
the padding mask extended to cover the prompt. The sentence vector pools the real tokens only.
Unlike LoRA and adapters this changes the output at step 0 (attention now sees the prompt).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

from workbench.errors import ConfigError, received
from workbench.peft.base import freeze_all, register, set_trainable


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

    def __init__(self, length: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.length = length

    def call(self, x):
        return x[:, self.length:, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None if input_shape[1] is None else input_shape[1] - self.length, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "length": self.length}


@dataclass(frozen=True)
class PromptConfig:
    prompt_length: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.prompt_length, int) or self.prompt_length < 1:
            raise ConfigError(f"prompt_length must be an integer >= 1. {received(prompt_length=self.prompt_length)}")


@register("prompt", PromptConfig, "Prompt tuning: trainable soft-prompt embeddings prepended (BERT models).")
def apply_prompt(task_model, config: PromptConfig) -> None:
    from workbench.models.bert import MaskedMeanPooling, encoder_graph

    backbone = task_model.backbone
    if backbone is None or task_model.card.modality != "text":
        raise ConfigError(f"Prompt tuning needs a transformer text model (tiny-bert or minilm-l6). "
                          f"{received(model=task_model.card.name)}")
    old = task_model.model
    seq_len = int(old.inputs[0].shape[1])
    length = config.prompt_length
    if seq_len + length > backbone.max_sequence_length:
        raise ConfigError(f"max_seq_len + prompt_length exceeds the model's {backbone.max_sequence_length} "
                          f"positions: shorten one of them. {received(prompt_length=length)}")
    freeze_all(task_model)
    inputs = {t.name: keras.Input(t.shape[1:], dtype=t.dtype, name=t.name) for t in old.inputs}
    soft = SoftPrompt(length, name="soft_prompt")
    tokens = soft(backbone.get_layer("token_embedding")(inputs["token_ids"]))
    segments = PrependConstant(length, 0, name="prompt_segments")(inputs["segment_ids"])
    mask = PrependConstant(length, 1, name="prompt_mask")(inputs["padding_mask"])
    x = encoder_graph(backbone, tokens, segments, mask)
    pooled = MaskedMeanPooling(name="mean_pooling")(DropPrefix(length, name="drop_prompt")(x), inputs["padding_mask"])
    out = old.get_layer("head_dropout")(pooled)
    for layer in task_model.groups["head"]:
        out = layer(out)
    task_model.model = keras.Model(inputs, out, name=f"{old.name}_prompt")
    task_model.groups["embeddings"] = [*task_model.groups["embeddings"], soft]
    set_trainable(soft.trainable_variables, True)
    set_trainable(task_model.head_variables(), True)
