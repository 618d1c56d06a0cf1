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

from workbench.errors import ConfigError, received
from workbench.peft.base import Capabilities, freeze_all, option, register, set_trainable


@dataclass(frozen=True)
class PromptOptions:
    prompt_length: int = option(8, "soft-prompt vectors prepended to the tokens", label="Soft-prompt tokens",
                                low=1, high=512, widget=(1, 2, 4, 8, 16, 32, 64),
                                token="{} tokens")


def load_layers():
    from workbench.peft import prompt_layers

    return prompt_layers


def check_fits(card, config) -> None:
    """Before any build: a transformer text model whose positions hold max_seq_len + prompt_length tokens."""
    length = config.options.prompt_length
    positions = (card.input_spec or {}).get("max_sequence_length")
    if card.modality != "text" or not positions:
        raise ConfigError(f"Prompt tuning needs a transformer text model: use tiny-bert or minilm-l6, or another "
                          f"method. {received(model=config.model, method=config.method)}")
    room = positions - config.max_seq_len
    if length > room:
        fix = (f"use --prompt-length {room} or less, or a shorter --max-seq-len" if room >= 1
               else f"use --max-seq-len {positions - length} or less")
        raise ConfigError(f"max_seq_len + prompt_length ({config.max_seq_len} + {length}) exceeds "
                          f"{card.name}'s {positions} positions: {fix}. "
                          f"{received(prompt_length=length, max_seq_len=config.max_seq_len)}")


def prompt_count(task_model, options: PromptOptions, share: str) -> int:
    """prompt_length × hidden width."""
    return options.prompt_length * int(task_model.backbone.hidden_dim)


def prompt_change(task_model, options: PromptOptions, share: str) -> list:
    """The change map's measure (`explain.changes`): a soft prompt changes no weight, so its size is how far
    it moves the encoder's output on the probe batch (the real tokens, padding masked) from the output
    without any prompt, ‖enc_prompt − enc_plain‖² against ‖enc_plain‖². It is not 0 at step 0: the
    prompt starts as random vectors that the encoder already attends to."""
    from keras import ops

    from workbench.peft.base import ChangeMeasure

    model = task_model.model
    soft, drop = model.get_layer("soft_prompt"), model.get_layer("drop_prompt")

    def squares(probe):
        drop.probe = []
        try:
            probe.forward()  # the model's own forward: its prompted encoder output, captured
            prompted = ops.cast(drop.probe[0], "float32")
        finally:
            drop.probe = None
        mask = ops.cast(ops.expand_dims(probe.x["padding_mask"], -1), "float32")
        plain = ops.cast(task_model.backbone(probe.x, training=False)["sequence_output"], "float32") * mask
        return ops.sum(ops.square(prompted * mask - plain)), ops.sum(ops.square(plain))

    return [ChangeMeasure(soft, "soft_prompt", (soft.prompt_embeddings,), squares=squares, traced=True)]


@register("prompt", PromptOptions, "Prompt tuning: trainable soft-prompt embeddings prepended (BERT models).",
          capabilities=Capabilities(tie_layers=False, stageable=False, text_only=True, step0_unchanged=False,
                                    what_trains="soft prompt"),
          prefix="prompt", count=prompt_count, layers=load_layers, check=check_fits, change=prompt_change,
          study=(("prompt", {}),))
def apply_prompt(task_model, options: PromptOptions, share: str) -> None:
    import keras

    from workbench.models.bert import MaskedMeanPooling, encoder_graph
    from workbench.peft.prompt_layers import DropPrefix, PrependConstant, SoftPrompt

    backbone = task_model.backbone
    if backbone is None or task_model.card.modality != "text":
        raise ConfigError(f"Prompt tuning needs a transformer text model (tiny-bert or minilm-l6). "
                          f"{received(model=task_model.card.name)}")
    old = task_model.model
    seq_len = int(old.inputs[0].shape[1])
    length = options.prompt_length
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
