"""`workbench pretrain NAME`: reproduce the project's own pretrained models and their cards.

- tiny-bert: a WordPiece vocabulary (4,000 tokens) and a 2-layer BERT trained as a masked language
  model on sample_data/corpus (VADER Amazon + NYT snippets: text no shipped task uses).
- mnist-cnn: the CNN of `vision.py` trained to classify the 10 digits of MNIST-5k (`mnist-5k`); the
  transfer target is scikit-learn's differently drawn and scanned 8×8 `digits`.
Each writes `<name>.keras` (+ vocabulary) and `<name>.card.json` with params and held-out accuracy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np

from workbench.paths import models_dir

TINY_BERT = dict(num_layers=2, num_heads=2, hidden_dim=128, intermediate_dim=512, max_sequence_length=128)
VOCAB_SIZE = 4000
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


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
    return stats


def pretrain_mnist_cnn(epochs: int = 12, seed: int = 0, out_dir: Path | None = None, source: str = "mnist-5k") -> dict:
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
    return stats


PRETRAINERS = {"tiny-bert": pretrain_tiny_bert, "mnist-cnn": pretrain_mnist_cnn}
