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


def assert_frozen_unchanged(before: dict, after: dict, trainable: set[str]) -> None:
    """Every weight outside `trainable` is bit-identical after training (and there are some)."""
    frozen = [p for p in before if p not in trainable]
    assert frozen and all(np.array_equal(before[p], after[p]) for p in frozen)


def assert_run_reloads(prep, run_dir, trainable: set[str]) -> None:
    """The saved trainable weights are exactly `trainable`; `load_run_model` and the merged `.keras`
    export predict what the trained model predicts."""
    from workbench.train.trainer import load_run_model

    with np.load(run_dir / "adapter.npz", allow_pickle=False) as saved:
        assert set(saved.files) == trainable
    expected = predict(prep)
    np.testing.assert_allclose(predict(load_run_model(run_dir)), expected, atol=1e-5)
    merged = keras.saving.load_model(run_dir / "model.keras", safe_mode=True, compile=False)
    got = keras.ops.convert_to_numpy(merged.predict(prep.inputs["test"], verbose=0))
    np.testing.assert_allclose(got, expected, atol=1e-4)
