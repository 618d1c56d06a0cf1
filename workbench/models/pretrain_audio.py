"""`workbench pretrain spoken-digit-cnn`: the speech model, trained on five FSDD voices.

FSDD's official split (takes 0–4 test, 5–49 train) of the five pretraining speakers: 2,250 training
recordings (10 % of them for validation), 250 test recordings give the source accuracy. The sixth
speaker's 500 recordings give the card's "held-out voice, before adaptation" accuracy. Writes
`spoken-digit-cnn.keras` (the backbone), `spoken-digit-cnn.source-head.npz` (the trained 10-digit
head: the before-adaptation classifier and the forgetting probe's head) and `spoken-digit-cnn.card.json`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from workbench.models.audio import HELD_OUT, NAME, audio_cnn_backbone
from workbench.paths import models_dir, sample_data_dir


def fsdd_arrays() -> tuple[pd.DataFrame, np.ndarray]:
    """The FSDD index (speaker, take, split per recording) and every recording's model input, in index order."""
    from workbench.data.audio import model_input, shipped_features
    from workbench.data.manifest import get_dataset_card

    card = get_dataset_card("fsdd")
    index = pd.read_csv(sample_data_dir() / card.file)
    return index, model_input(shipped_features(card)[index["feature_row"].to_numpy()])


def pretrain_spoken_digit_cnn(epochs: int = 30, seed: int = 0, out_dir: Path | None = None) -> dict:
    out_dir = out_dir or models_dir()
    keras.utils.set_random_seed(seed)
    index, x = fsdd_arrays()
    y = index["digit"].to_numpy("int64")
    source = (index["speaker"] != HELD_OUT).to_numpy()
    train = np.flatnonzero(source & (index["split"] == "train").to_numpy())
    test = np.flatnonzero(source & (index["split"] == "test").to_numpy())
    held = np.flatnonzero(~source)
    order = np.random.default_rng(seed).permutation(train)
    val, fit_rows = order[: len(order) // 10], order[len(order) // 10:]
    backbone = audio_cnn_backbone()
    head = keras.layers.Dense(10, name="source_head")
    model = keras.Sequential([backbone, keras.layers.Dropout(0.2), head])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    t0 = time.time()
    model.fit(x[fit_rows], y[fit_rows], validation_data=(x[val], y[val]), epochs=epochs, batch_size=64, verbose=2)
    _, accuracy = model.evaluate(x[test], y[test], verbose=0)
    _, held_accuracy = model.evaluate(x[held], y[held], verbose=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    backbone.save(out_dir / f"{NAME}.keras")
    kernel, bias = (np.asarray(keras.ops.convert_to_numpy(v), "float32") for v in (head.kernel, head.bias))
    np.savez(out_dir / f"{NAME}.source-head.npz", kernel=kernel, bias=bias)
    speakers = ", ".join(sorted(index.loc[source, "speaker"].unique()))
    stats = {
        "params": int(backbone.count_params()),
        "source_task": f"classify spoken digits 0-9 from five voices ({speakers}): {len(fit_rows):,} FSDD "
                       f"training recordings, {epochs} epochs",
        "source_metric": f"accuracy {accuracy:.3f} on the {len(test)} FSDD test recordings of those voices; "
                         f"{held_accuracy:.3f} on the new voice ({HELD_OUT}, all {len(held)}) before adaptation",
        "accuracy": round(float(accuracy), 4), "heldout_speaker": HELD_OUT,
        "heldout_accuracy": round(float(held_accuracy), 4), "seconds": round(time.time() - t0, 1),
        "source_head": "the pretraining's own Dense(10) head",
    }
    (out_dir / f"{NAME}.card.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats
