"""A user's own .keras file: safe-mode loading, data fed in its input shape (or a clear refusal), real fine-tunes."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import prepared, train_here

from workbench.config import TrainConfig
from workbench.errors import ConfigError, ModelError
from workbench.models.user import load_user_model
from workbench.train.trainer import load_data


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
    prep = prepared(TrainConfig.from_dict(dict(model=path, data="digits", method="lora", rank=4, epochs=4, batch_size=32, lr=1e-2)))
    assert prep.task_model.group_names[-1] == "head"
    _, summary = train_here(prep, store)
    assert summary["test_accuracy"] > 0.8  # 10 classes: chance is 0.1
    assert summary["data_notes"] == [] and prep.split.x_train.shape[1:] == (28, 28, 1)  # as is: nothing to say


def dense(inputs_shape=(64,), classes=10):
    inputs = keras.Input(inputs_shape)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes, name="out")(x))


def test_an_8x8_cnn_gets_native_digits_and_trains(tmp_path, store):
    path = save(cnn(inputs_shape=(8, 8, 1)), tmp_path / "native.keras")
    prep = prepared(TrainConfig(model=path, data="digits", method="full", epochs=1, batch_size=32, lr=1e-2))
    assert prep.inputs["train"].shape[1:] == (8, 8, 1)
    np.testing.assert_array_equal(prep.split.x_test, prep.dataset.x[prep.split.indices["test"]])
    assert prep.split.x_test.max() == 1.0 and len(np.unique(prep.split.x_test)) == 17  # the file's 0..16 levels
    _, summary = train_here(prep, store)
    assert summary["test_accuracy"] > 0.6  # 10 classes: chance is 0.1
    [note] = summary["data_notes"]
    assert note == ("your model takes (8, 8, 1): digits is 8×8 natively, so your model gets those images, "
                    "not the 28×28 upsampled ones")


def test_a_dense_model_on_64_values_gets_flat_native_digits(tmp_path, store):
    path = save(dense((64,)), tmp_path / "flat.keras")
    prep = prepared(TrainConfig.from_dict(dict(model=path, data="digits", method="lora", rank=2, epochs=1, batch_size=32, lr=1e-2)))
    assert prep.inputs["train"].shape[1:] == (64,)
    _, summary = train_here(prep, store)
    assert summary["test_accuracy"] > 0.4
    assert "fed flattened row by row (64 values), not upsampled to 28×28" in summary["data_notes"][0]


def test_the_note_is_known_before_training_and_flat_images_refuse_augmentation(tmp_path):
    path = save(dense((784,)), tmp_path / "mnist_flat.keras")
    dataset, split = load_data(TrainConfig(model=path, data="digits", method="full"))  # what preflight calls
    assert split.x_train.shape[1:] == (784,) and "the 28×28×1 images of digits are fed flattened" in dataset.notes[0]
    with pytest.raises(ConfigError, match=r"augment shifts images.*\(784,\): turn augmentation off"):
        load_data(TrainConfig(model=path, data="digits", method="full", augment=True))
    rgb = save(cnn(inputs_shape=(16, 16, 3)), tmp_path / "rgb.keras")
    dataset, split = load_data(TrainConfig(model=rgb, data="digits", method="full", augment=True))
    assert split.x_train.shape[1:] == (16, 16, 3)
    assert "resized from 8×8 to 16×16" in dataset.notes[0] and "repeated 3 times" in dataset.notes[0]


@pytest.mark.parametrize("model, message", [
    (cnn(inputs_shape=(8, 8, 2)), r"input shape \(8, 8, 2\) does not fit the images of digits, shaped \(28, 28, 1\)"),
    (dense((100,)), r"no obvious transform exists: build its Input with shape=\(28, 28, 1\) \(or \(8, 8, 1\), \(64,\)"),
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
