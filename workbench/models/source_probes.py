"""Source probes: how well an encoder still does the task its pretraining taught it (forgetting).

Fine-tuning on a new task can erase what the pretrained weights knew. Each built-in pretrained model
declares one fixed, cheap probe of its *source* task, scored by feeding the probe's inputs through
an encoder (the fine-tuned model's, or a fresh pretrained one) and reading its output with a frozen
*source head*:

    mnist-cnn  accuracy on held-out MNIST-5k digits, read by a Dense(10) source head
    tiny-bert  masked-token accuracy on held-out corpus snippets (fixed, seeded masking), read by
               BERT's masked-LM head tied to the encoder's own token embedding
    minilm-l6  sentence geometry: Spearman correlation of the pairwise cosine similarities of mean-
               pooled sentence embeddings, fine-tuned vs the base encoder (1.0 for the base itself)

Why the source heads are *refitted*: pretraining did not save them (`workbench pretrain` shipped the
backbones only), so `models.pretrain` fits them on the frozen shipped backbone with the pretraining's
own training rows and ships their few weights; the cards say so. Models without a source (the mlp, a
user's `.keras`, a run from scratch) have no probe (`get_probe` returns None).

The probe inputs are fixed (same rows, same masks, every run), so scores compare across runs.
Token inputs are grouped by length and trimmed per group: the encoder never runs on padding.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from workbench.models.base import producer
from workbench.models.token_batches import chunk_by_length, gather_plan, mask_tokens, short_texts
from workbench.paths import models_dir

PROBE_TOKENS = 64  # token probes are packed to this length (the tiny-bert pretraining's sequence length)
MLM_SNIPPETS = 128  # held-out snippets with a fixed masking
GEOMETRY_SENTENCES = 128  # sentences whose pairwise similarities MiniLM should keep
MNIST_PROBE_ROWS = 300  # the first held-out rows of the pretraining split (of its 1,000 test rows)
MNIST_SPLIT = dict(seed=0, val_fraction=0.1, test_fraction=0.2)  # `pretrain_mnist_cnn`'s split


def head_path(name: str, directory: Path | None = None) -> Path:
    return (directory or models_dir()) / f"{name}.source-head.npz"


# -- what the cards say (static text; no weights are read) ------------------------------------------
PROBE_TEXT = {
    "mnist-cnn": ("MNIST accuracy",
                  "Forgetting is measured as accuracy on {rows} held-out MNIST-5k digits (from the pretraining's "
                  "own test rows) read by a source head: a Dense(10) layer fitted on the frozen shipped backbone's "
                  "features of the pretraining's 3,500 training images, because the pretraining's own head was not "
                  "saved."),
    "tiny-bert": ("masked-token accuracy",
                  "Forgetting is measured as masked-token accuracy on {snippets} held-out corpus snippets of up to "
                  "40 tokens (from the pretraining's validation split) with a fixed masking of 15 % of their tokens, "
                  "read by a masked-LM head tied to the encoder's token embedding; the head's own weights were "
                  "fitted on the frozen shipped encoder with the training snippets, because the pretraining's head "
                  "was not saved."),
    "spoken-digit-cnn": ("source-voice accuracy",
                         "Forgetting is measured as accuracy on the 250 FSDD test recordings of the five pretraining "
                         "voices, read by the pretraining's own 10-digit head (shipped beside the backbone)."),
    "minilm-l6": ("sentence-geometry Spearman",
                  "Forgetting is measured as how well the encoder keeps the base model's sentence geometry: the "
                  "Spearman correlation between the pairwise cosine similarities of {sentences} fixed corpus "
                  "sentences of up to 40 tokens (mean-pooled embeddings) under the fine-tuned and the base encoder; "
                  "the base scores 1.0 by definition."),
}


def probe_metric(name: str) -> str | None:
    return PROBE_TEXT[name][0] if name in PROBE_TEXT else None


def probe_text(name: str) -> str:
    """The card's sentence on how forgetting is measured ("none" for models without a source task)."""
    if name not in PROBE_TEXT:
        return "none: this model has no pretrained source task to forget"
    counts = dict(rows=f"{MNIST_PROBE_ROWS:,}", snippets=MLM_SNIPPETS, sentences=GEOMETRY_SENTENCES)
    return PROBE_TEXT[name][1].format(**counts)


# -- the probes ---------------------------------------------------------------------------------------
@dataclass
class SourceProbe:
    """A fixed probe of one model's source task.

    batches: the encoder inputs, one call each; `reduce(i, output)` keeps what the score needs of
    batch i's output (gathered masked positions, pooled sentences); `score(reduced, backbone)` reads
    them with the source head (`backbone`: where a tied head finds the token embedding).
    `base_score`: the shipped pretrained model's score, measured when the probe is loaded.
    """

    model: str
    metric: str
    batches: list[Any]
    reduce: Callable[[int, np.ndarray], np.ndarray]
    score: Callable[[list[np.ndarray], Any], float]
    sequence: bool  # the encoder output is per token (BERT) rather than one vector per input (CNN)
    base_score: float = float("nan")
    base_seconds: float = 0.0  # what one probe of the base cost
    extra: dict[str, Any] = field(default_factory=dict)


def load_base(name: str, directory: Path | None = None) -> keras.Model:
    """A fresh copy of the shipped pretrained backbone (its own variables)."""
    if name == "minilm-l6":
        from workbench.models.bert import load_minilm_backbone

        return load_minilm_backbone()
    return keras.saving.load_model((directory or models_dir()) / f"{name}.keras", safe_mode=True, compile=False)


def base_output(backbone, inputs) -> Any:
    """What a bare backbone gives the probe: CNN features, or BERT's per-token sequence output."""
    out = backbone(inputs, training=False)
    return out["sequence_output"] if isinstance(out, dict) else out


def run_probe(probe: SourceProbe, encode: Callable[[int, Any], Any], backbone) -> float:
    """Score one encoder (`encode(batch index, batch) -> output`) on the probe."""
    reduced = [probe.reduce(i, np.asarray(keras.ops.convert_to_numpy(encode(i, b)), dtype="float32"))
               for i, b in enumerate(probe.batches)]
    return float(probe.score(reduced, backbone))


def chain(model) -> list | None:
    """The model's layers, input to output, if each reads only the previous one's output (the CNN); else None."""
    if len(getattr(model, "inputs", None) or []) != 1 or len(getattr(model, "outputs", None) or []) != 1:
        return None
    layers, tensor = [], model.outputs[0]
    while tensor is not model.inputs[0]:
        layer, node = producer(tensor)
        if layer is None or len(node.input_tensors) != 1:
            return None
        layers.append(layer)
        tensor = node.input_tensors[0]
    branches = len(layers) != len([x for x in model.layers if not isinstance(x, keras.layers.InputLayer)])
    return None if branches else layers[::-1]


def chain_inputs(layers: list, batch) -> dict[int, np.ndarray]:
    """What each layer with weights reads on `batch` (and the output, at `len(layers)`): a frozen
    prefix of the chain need not run again (see `retention.task_encoder`)."""
    out, x = {}, batch
    for i, layer in enumerate(layers):
        if layer.weights:
            out[i] = x
        x = layer(x, training=False)
    out[len(layers)] = x
    return out


def _mnist_probe(directory: Path | None = None) -> SourceProbe | None:
    path = head_path("mnist-cnn", directory)
    if not path.is_file():
        return None
    from workbench.data import load_dataset, split_dataset

    split = split_dataset(load_dataset("mnist-5k"), **MNIST_SPLIT)
    x, y = split.x_test[:MNIST_PROBE_ROWS].astype("float32"), split.y_test[:MNIST_PROBE_ROWS].astype("int64")
    with np.load(path, allow_pickle=False) as saved:
        kernel, bias = saved["kernel"].astype("float32"), saved["bias"].astype("float32")

    def score(features: list[np.ndarray], backbone) -> float:
        return float(np.mean(np.argmax(features[0] @ kernel + bias, axis=1) == y))

    return SourceProbe("mnist-cnn", probe_metric("mnist-cnn"), [x], lambda i, out: out, score, sequence=False)


def _spoken_probe(directory: Path | None = None) -> SourceProbe | None:
    from workbench.models.audio import HELD_OUT, source_head
    from workbench.models.pretrain_audio import fsdd_arrays

    head = source_head(directory)
    if head is None:
        return None
    index, x = fsdd_arrays()
    rows = ((index["speaker"] != HELD_OUT) & (index["split"] == "test")).to_numpy()
    x, y = x[rows], index["digit"].to_numpy("int64")[rows]

    def score(features: list[np.ndarray], backbone) -> float:
        return float(np.mean(np.argmax(features[0] @ head[0] + head[1], axis=1) == y))

    return SourceProbe("spoken-digit-cnn", probe_metric("spoken-digit-cnn"), [x], lambda i, out: out, score,
                       sequence=False)


def corpus_texts() -> np.ndarray:
    path = models_dir().parent / "corpus" / "vader_amazon_nyt.txt"
    return np.array([t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()])


def heldout_snippets(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(validation, training) snippets exactly as `pretrain_tiny_bert` split them."""
    texts = corpus_texts()
    order = np.random.default_rng(seed).permutation(len(texts))
    n_val = len(texts) // 10
    return texts[order[:n_val]], texts[order[n_val:]]


def mlm_head_logits(states: np.ndarray, head: dict[str, np.ndarray], embeddings: np.ndarray) -> np.ndarray:
    """keras-hub's `MaskedLMHead` (BertMaskedLM's): dense + GELU, LayerNorm, tied embedding, bias."""
    ops = keras.ops
    x = ops.gelu(ops.matmul(states, head["dense_kernel"]) + head["dense_bias"], approximate=False)
    mean = ops.mean(x, axis=-1, keepdims=True)
    var = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
    x = (x - mean) * ops.rsqrt(var + float(head["epsilon"])) * head["ln_gamma"] + head["ln_beta"]
    return keras.ops.convert_to_numpy(ops.matmul(x, ops.transpose(embeddings)) + head["output_bias"])


def token_embedding(backbone) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(backbone.get_layer("token_embedding").embeddings), "float32")


def _tiny_bert_probe(directory: Path | None = None) -> SourceProbe | None:
    path = head_path("tiny-bert", directory)
    if not path.is_file():
        return None
    from workbench.models.bert import encode_texts, tiny_bert_tokenizer

    tokenizer = tiny_bert_tokenizer((directory or models_dir()) / "tiny-bert.vocab.txt")
    val, _ = heldout_snippets()
    encoded = encode_texts(tokenizer, val, PROBE_TOKENS, f"tiny-bert-source-probe-{directory}")
    encoded = short_texts(encoded, MLM_SNIPPETS)
    special = [tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id]
    ids, rows, cols, labels = mask_tokens(encoded["token_ids"], encoded["padding_mask"], np.random.default_rng(0),
                                          special=special, mask_id=tokenizer.mask_token_id,
                                          vocab_size=tokenizer.vocabulary_size())
    chunks = chunk_by_length({**encoded, "token_ids": ids})
    gathers = gather_plan(chunks, rows)
    with np.load(path, allow_pickle=False) as saved:
        head = {k: saved[k].astype("float32") for k in saved.files}

    expected = np.concatenate([labels[take] for take, _ in gathers])

    def reduce(i: int, out: np.ndarray) -> np.ndarray:
        take, local = gathers[i]
        return out[local, cols[take]]

    def score(states: list[np.ndarray], backbone) -> float:
        logits = mlm_head_logits(np.concatenate(states), head, token_embedding(backbone))
        return float(np.mean(np.argmax(logits, axis=1) == expected))

    return SourceProbe("tiny-bert", probe_metric("tiny-bert"), [c for _, c in chunks], reduce, score, sequence=True,
                       extra={"masked_tokens": len(labels)})


def cosine_pairs(embeddings: np.ndarray) -> np.ndarray:
    """Upper-triangle cosine similarities, one per sentence pair."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    return sims[np.triu_indices(len(unit), k=1)]


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's rho needs."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), "float64")
    ranks[order] = np.arange(1, len(x) + 1)
    values, inverse = np.unique(x, return_inverse=True)
    if len(values) < len(x):
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / np.bincount(inverse))[inverse]
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the ranks (exactly 1.0 when the ranks agree)."""
    ra, rb = _ranks(np.asarray(a, "float64")), _ranks(np.asarray(b, "float64"))
    if np.array_equal(ra, rb):
        return 1.0
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra @ rb) / np.sqrt((ra @ ra) * (rb @ rb)))


def _minilm_probe(directory: Path | None = None) -> SourceProbe | None:
    from workbench.models.bert import encode_texts, minilm_tokenizer

    texts = corpus_texts()
    chosen = texts[np.random.default_rng(0).permutation(len(texts))[:4 * GEOMETRY_SENTENCES]]
    encoded = encode_texts(minilm_tokenizer(), chosen, PROBE_TOKENS, "minilm-source-probe")
    chunks = chunk_by_length(short_texts(encoded, GEOMETRY_SENTENCES))
    reference: dict[str, np.ndarray] = {}

    def reduce(i: int, out: np.ndarray) -> np.ndarray:
        mask = chunks[i][1]["padding_mask"][..., None].astype("float32")
        return (out * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)  # masked mean: the sentence vector

    def score(pooled: list[np.ndarray], backbone) -> float:
        sims = cosine_pairs(np.concatenate(pooled))
        if "sims" not in reference:  # the first encoder probed is the base (`get_probe` sees to it)
            reference["sims"] = sims
        return spearman(sims, reference["sims"])

    return SourceProbe("minilm-l6", probe_metric("minilm-l6"), [c for _, c in chunks], reduce, score, sequence=True)


BUILDERS: dict[str, Callable[[Path | None], SourceProbe | None]] = {
    "mnist-cnn": _mnist_probe, "tiny-bert": _tiny_bert_probe, "minilm-l6": _minilm_probe,
    "spoken-digit-cnn": _spoken_probe}
_PROBES: dict[tuple, SourceProbe | None] = {}
_LOCK = threading.RLock()  # one probe build (and its base measurement) at a time, per process


def _identity(name: str) -> tuple:
    """What the cached probe depends on: the shipped files (a re-pretrain or another sample_data refreshes it)."""
    files = [models_dir() / f"{name}.keras", head_path(name)]
    stats = ((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.is_file())
    return (name, keras.config.dtype_policy().name, *stats)


def get_probe(name: str) -> SourceProbe | None:
    """The model's source probe with its base score (built once per process), or None without one."""
    if name not in BUILDERS:
        return None
    if name == "minilm-l6":
        from workbench.errors import ModelError
        from workbench.models.bert import minilm_dir

        try:
            minilm_dir()
        except ModelError:
            return None
    key = _identity(name)
    with _LOCK:
        if key not in _PROBES:
            _PROBES[key] = measured_probe(name)
        return _PROBES[key]


def measured_probe(name: str, directory: Path | None = None) -> SourceProbe | None:
    """A new probe with its base score, on the backbone in `directory` (default: the shipped one)."""
    import time

    probe = BUILDERS[name](directory)
    if probe is not None:
        base = load_base(name, directory)
        t0 = time.perf_counter()
        probe.base_score = run_probe(probe, lambda i, b: base_output(base, b), base)
        probe.base_seconds = time.perf_counter() - t0
        probe.extra["base"] = base  # reused by the removal check (weights copied in, under `lock()`)
        layers = None if probe.sequence else chain(base)
        if layers is not None:  # the pretrained activations along the chain, per batch (a few MB for the CNN)
            probe.extra["chain"] = [layer.name for layer in layers]
            probe.extra["prefix"] = [chain_inputs(layers, b) for b in probe.batches]
    return probe


def lock() -> threading.RLock:
    """Held while a cached base backbone is borrowed (its weights overwritten and probed)."""
    return _LOCK


def clear_cache() -> None:
    """Forget built probes (tests that pretrain into another sample_data folder)."""
    with _LOCK:
        _PROBES.clear()


def enabled() -> bool:
    """`WORKBENCH_SOURCE_PROBE=0` turns the probes off (benchmarks of training alone)."""
    return os.environ.get("WORKBENCH_SOURCE_PROBE", "1").strip().lower() not in ("0", "false", "off", "no")
