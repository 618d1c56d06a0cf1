"""A user's own .keras file: safe-mode loading, shape checks with clear errors, and a real fine-tune."""

from __future__ import annotations

import keras
import pytest
from helpers import prepared, train_here

from workbench.config import TrainConfig
from workbench.errors import ModelError
from workbench.models.user import load_user_model


def save(model, path):
    model.save(path)
    return str(path)


def cnn(inputs_shape=(28, 28, 1), classes=10):
    inputs = keras.Input(inputs_shape)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="out")(x))


def test_user_model_fine_tunes_with_lora(tmp_path, store):
    path = save(cnn(), tmp_path / "mine.keras")
    prep = prepared(TrainConfig(model=path, data="digits", method="lora", rank=2, epochs=1, batch_size=32))
    assert prep.task_model.group_names[-1] == "head"
    _, summary = train_here(prep, store)
    assert summary["test_accuracy"] > 0.1


@pytest.mark.parametrize("model, message", [
    (cnn(inputs_shape=(8, 8, 1)), "input shape"),
    (cnn(classes=3), "outputs 3 values"),
])
def test_shape_mismatch_is_explained(tmp_path, model, message):
    path = save(model, tmp_path / "m.keras")
    with pytest.raises(ModelError, match=message):
        prepared(TrainConfig(model=path, data="digits", method="full"))


def test_not_keras_truncated_and_lambda_refused(tmp_path):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ModelError, match="Not a Keras model file"):
        load_user_model(junk)
    good = tmp_path / "good.keras"
    save(cnn(), good)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError):
        load_user_model(truncated)
    inputs = keras.Input((4,))
    lam = keras.Model(inputs, keras.layers.Lambda(lambda t: t + 1)(inputs))
    with pytest.raises(ModelError, match="Lambda"):
        load_user_model(save(lam, tmp_path / "lam.keras"))
