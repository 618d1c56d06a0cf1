"""Test helpers: prepare and train a config in the current thread, weights as numpy."""

from __future__ import annotations

import keras
import numpy as np


def prepared(config):
    """Prepare as a run does (`prepare` seeds and builds under the engine's build lock itself)."""
    from workbench.train.trainer import prepare

    return prepare(config)


def weights(model) -> dict[str, np.ndarray]:
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.weights}


def predict(prep, split: str = "test") -> np.ndarray:
    return keras.ops.convert_to_numpy(prep.task_model.model.predict(prep.inputs[split], verbose=0, batch_size=256))


def train_here(prep, store):
    """Run steps 4-5 of the recipe synchronously; returns (run_id, summary)."""
    from workbench.train.trainer import train

    run_id = store.create_run(prep.config.to_dict(), prep.config.display_name(), status="running")
    return run_id, train(prep, store=store, run_id=run_id)
