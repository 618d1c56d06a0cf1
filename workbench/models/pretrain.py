"""`workbench pretrain NAME`: reproduce the project's own pretrained models and their cards.

- tiny-bert: a WordPiece vocabulary (4,000 tokens) and a 2-layer BERT trained as a masked language
  model on sample_data/corpus (VADER Amazon + NYT snippets: text no shipped task uses).
- mnist-cnn: the CNN of `vision.py` trained to classify the 10 digits of MNIST-5k (`mnist-5k`); the
  transfer target is scikit-learn's differently drawn and scanned 8×8 `digits`.
Each writes `<name>.keras` (+ vocabulary) and `<name>.card.json` with params and held-out accuracy,
then the *source head* the retention probe reads (`<name>.source-head.npz`, see `source_probes`):
fitted on the frozen backbone just written, with the pretraining's own training rows. Why refit it:
the first shipped backbones were saved without their heads; refitting the same way on every
pretrain keeps the shipped head and a reproduced one alike (`fit_*_source_head` alone refits the
head of the backbone already there).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np

from workbench.models.source_probes import head_path
from workbench.paths import models_dir

TINY_BERT = dict(num_layers=2, num_heads=2, hidden_dim=128, intermediate_dim=512, max_sequence_length=128)
VOCAB_SIZE = 4000
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MNIST_SOURCE = "mnist-5k"


def pretrain_tiny_bert(epochs: int = 40, seed: int = 0, out_dir: Path | None = None) -> dict:
    import keras_hub
    import tensorflow as tf

    out_dir = out_dir or models_dir()
    keras.utils.set_random_seed(seed)
    corpus = models_dir().parent / "corpus" / "vader_amazon_nyt.txt"
    texts = np.array([t for t in corpus.read_text(encoding="utf-8").splitlines() if t.strip()])
    order = np.random.default_rng(seed).permutation(len(texts))
    n_val = len(texts) // 10
    val_texts, train_texts = texts[order[:n_val]], texts[order[n_val:]]

    vocab = keras_hub.tokenizers.compute_word_piece_vocabulary(
        tf.data.Dataset.from_tensor_slices(train_texts).batch(512), vocabulary_size=VOCAB_SIZE,
        lowercase=True, reserved_tokens=SPECIAL)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocab), dropout=0.1, **TINY_BERT)
    preprocessor = keras_hub.models.BertMaskedLMPreprocessor(tokenizer, sequence_length=64,
                                                             mask_selection_rate=0.15, mask_selection_length=10)
    mlm = keras_hub.models.BertMaskedLM(backbone, preprocessor)
    mlm.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.01),
                weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    train_ds = tf.data.Dataset.from_tensor_slices(train_texts).shuffle(len(train_texts), seed=seed).batch(64)
    val_ds = tf.data.Dataset.from_tensor_slices(val_texts).batch(256)
    t0 = time.time()
    mlm.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=2)
    result = mlm.evaluate(val_ds, return_dict=True, verbose=0)

    out_dir.mkdir(parents=True, exist_ok=True)
    backbone.save(out_dir / "tiny-bert.keras")
    (out_dir / "tiny-bert.vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    stats = {
        "params": int(backbone.count_params()),
        "architecture": f"BERT encoder, {TINY_BERT['num_layers']} layers, hidden {TINY_BERT['hidden_dim']}, "
                        f"{TINY_BERT['num_heads']} heads, vocab {len(vocab)}",
        "source_task": f"masked language modelling on {len(train_texts):,} VADER Amazon + NYT snippets, {epochs} epochs",
        "source_metric": f"masked-token accuracy {result['accuracy']:.3f} on {n_val:,} held-out snippets",
        "masked_token_accuracy": round(float(result["accuracy"]), 4), "seconds": round(time.time() - t0, 1),
    }
    (out_dir / "tiny-bert.card.json").write_text(json.dumps(stats, indent=2) + "\n")
    stats.update(fit_tiny_bert_source_head(seed=seed, out_dir=out_dir))
    return stats


def pretrain_mnist_cnn(epochs: int = 12, seed: int = 0, out_dir: Path | None = None, source: str = MNIST_SOURCE) -> dict:
    from workbench.data import load_dataset, split_dataset
    from workbench.models.vision import cnn_backbone

    out_dir = out_dir or models_dir()
    keras.utils.set_random_seed(seed)
    dataset = load_dataset(source)
    split = split_dataset(dataset, seed=seed, val_fraction=0.1, test_fraction=0.2)
    backbone = cnn_backbone()
    model = keras.Sequential([backbone, keras.layers.Dropout(0.2), keras.layers.Dense(dataset.num_classes)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    t0 = time.time()
    model.fit(split.x_train, split.y_train, validation_data=(split.x_val, split.y_val), epochs=epochs,
              batch_size=64, verbose=2)
    _, accuracy = model.evaluate(split.x_test, split.y_test, verbose=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    backbone.save(out_dir / "mnist-cnn.keras")
    stats = {
        "params": int(backbone.count_params()),
        "source_task": f"classify MNIST digits ({len(split.y_train):,} training images of {source}), {epochs} epochs",
        "source_metric": f"accuracy {accuracy:.3f} on {len(split.y_test):,} held-out {source} images",
        "accuracy": round(float(accuracy), 4), "seconds": round(time.time() - t0, 1),
    }
    (out_dir / "mnist-cnn.card.json").write_text(json.dumps(stats, indent=2) + "\n")
    if source == MNIST_SOURCE:
        stats.update(fit_mnist_source_head(seed=seed, out_dir=out_dir))
    else:  # the probe is MNIST-5k's: a backbone pretrained on another source has none (not a stale one)
        head_path("mnist-cnn", out_dir).unlink(missing_ok=True)
    return stats


def _update_card(out_dir: Path, name: str, values: dict) -> None:
    path = out_dir / f"{name}.card.json"
    card = json.loads(path.read_text()) if path.is_file() else {}
    card.update(values)
    path.write_text(json.dumps(card, indent=2) + "\n")


def _probe_score(name: str, out_dir: Path) -> float:
    """The source probe's score of the backbone just written (what runs will call `source_before`)."""
    from workbench.models import source_probes as sp

    return round(sp.measured_probe(name, out_dir).base_score, 4)


def softmax_regression(x: np.ndarray, y: np.ndarray, classes: int, steps: int = 500, lr: float = 0.01) -> tuple:
    """(kernel, bias) of a multinomial logistic regression: full-batch Adam on the cross-entropy.

    In numpy (float64) rather than `fit`: the features are fixed, a step costs microseconds, and the
    result is the same on every backend and machine.
    """
    x = np.asarray(x, "float64")
    params = [np.zeros((x.shape[1], classes)), np.zeros(classes)]
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    onehot = np.eye(classes)[y]
    for t in range(1, steps + 1):
        logits = x @ params[0] + params[1]
        prob = np.exp(logits - logits.max(axis=1, keepdims=True))
        error = (prob / prob.sum(axis=1, keepdims=True) - onehot) / len(x)
        for p, (m, v), g in zip(params, moments, (x.T @ error, error.sum(axis=0)), strict=True):
            m[:] = 0.9 * m + 0.1 * g
            v[:] = 0.999 * v + 0.001 * g * g
            p -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-7)
    return params[0].astype("float32"), params[1].astype("float32")


def fit_mnist_source_head(steps: int = 500, seed: int = 0, out_dir: Path | None = None) -> dict:
    """A Dense(10) source head on the frozen `mnist-cnn.keras` in `out_dir`: the pretraining's training
    rows in, `mnist-cnn.source-head.npz` (kernel 64×10, bias 10) out; its probe score goes on the card."""
    from workbench.data import load_dataset, split_dataset
    from workbench.models import source_probes as sp

    out_dir = out_dir or models_dir()
    backbone = keras.saving.load_model(out_dir / "mnist-cnn.keras", safe_mode=True, compile=False)
    dataset = load_dataset(MNIST_SOURCE)
    split = split_dataset(dataset, **{**sp.MNIST_SPLIT, "seed": seed})
    features = keras.ops.convert_to_numpy(backbone.predict(split.x_train.astype("float32"), batch_size=512, verbose=0))
    kernel, bias = softmax_regression(features, split.y_train.astype("int64"), dataset.num_classes, steps=steps)
    np.savez(sp.head_path("mnist-cnn", out_dir), kernel=kernel, bias=bias)
    sp.clear_cache()
    values = {"source_head": f"Dense(10) fitted on the frozen backbone's features of the {len(split.y_train):,} "
                             f"training images", "source_probe_score": _probe_score("mnist-cnn", out_dir)}
    _update_card(out_dir, "mnist-cnn", values)
    return values


def fit_tiny_bert_source_head(epochs: int = 8, maskings: int = 3, seed: int = 0, out_dir: Path | None = None) -> dict:
    """BERT's masked-LM head (keras-hub `MaskedLMHead`, tied to the frozen encoder's token embedding)
    fitted on `tiny-bert.keras` in `out_dir` with the training snippets, `maskings` seeded 80/10/10
    maskings each; writes `tiny-bert.source-head.npz` (dense, LayerNorm, output bias: not the tied
    embedding) and puts its probe accuracy on the card.

    The encoder is frozen, so its states at the masked positions are computed once per masking and
    the head trains on those alone (the encoder never runs twice on the same input).
    """
    import keras_hub

    from workbench.models import source_probes as sp
    from workbench.models import token_batches as tb
    from workbench.models.bert import encode_texts, tiny_bert_tokenizer

    out_dir = out_dir or models_dir()
    keras.utils.set_random_seed(seed)
    backbone = keras.saving.load_model(out_dir / "tiny-bert.keras", safe_mode=True, compile=False)
    tokenizer = tiny_bert_tokenizer(out_dir / "tiny-bert.vocab.txt")
    special = [tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id]
    _, train_texts = sp.heldout_snippets(seed)
    encoded = encode_texts(tokenizer, train_texts, sp.PROBE_TOKENS, f"tiny-bert-head-{out_dir}")
    rng = np.random.default_rng(seed)
    states, labels = [], []
    for _ in range(maskings):
        ids, rows, cols, target = tb.mask_tokens(encoded["token_ids"], encoded["padding_mask"], rng, special=special,
                                                 mask_id=tokenizer.mask_token_id, keep_rate=0.1, random_rate=0.1,
                                                 vocab_size=tokenizer.vocabulary_size())
        chunks = tb.chunk_by_length({**encoded, "token_ids": ids}, rows=256)
        for (_, chunk), (take, local) in zip(chunks, tb.gather_plan(chunks, rows), strict=True):
            out = np.asarray(keras.ops.convert_to_numpy(sp.base_output(backbone, chunk)), "float32")
            states.append(out[local, cols[take]])
            labels.append(target[take])
    x, y = np.concatenate(states)[:, None, :], np.concatenate(labels)[:, None]
    embedding = backbone.get_layer("token_embedding")
    embedding.trainable = False
    mlm = keras_hub.layers.MaskedLMHead(token_embedding=embedding, intermediate_activation="gelu",
                                        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))
    inputs = keras.Input((1, x.shape[-1])), keras.Input((1,), dtype="int32")
    model = keras.Model(inputs, mlm(inputs[0], mask_positions=inputs[1]))
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit((x, np.zeros((len(x), 1), "int32")), y, epochs=epochs, batch_size=256, shuffle=True, verbose=2)
    dense, norm = mlm._intermediate_dense, mlm._intermediate_layer_norm
    head = {"dense_kernel": dense.kernel, "dense_bias": dense.bias, "ln_gamma": norm.gamma, "ln_beta": norm.beta,
            "output_bias": mlm._bias}
    head = {k: np.asarray(keras.ops.convert_to_numpy(v), "float32") for k, v in head.items()}
    head["epsilon"] = np.float32(mlm.layer_norm_epsilon)
    np.savez(sp.head_path("tiny-bert", out_dir), **head)
    sp.clear_cache()
    values = {"source_head": f"masked-LM head fitted on the frozen encoder ({len(y):,} masked tokens, {epochs} epochs)",
              "source_probe_score": _probe_score("tiny-bert", out_dir)}
    _update_card(out_dir, "tiny-bert", values)
    return values


def pretrain_spoken_digit_cnn(**options) -> dict:
    from workbench.models.pretrain_audio import pretrain_spoken_digit_cnn as pretrain

    return pretrain(**options)


PRETRAINERS = {"tiny-bert": pretrain_tiny_bert, "mnist-cnn": pretrain_mnist_cnn,
               "spoken-digit-cnn": pretrain_spoken_digit_cnn}
