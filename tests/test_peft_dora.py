"""DoRA: exact trainable counts, unchanged at step 0, the paper's formula (norm constant for the gradient),
frozen weights untouched, export and reload, and the method found wherever users look."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_image_config
from helpers import predict, prepared, train_here, weights

from workbench.config import TrainConfig
from workbench.errors import ConfigError
from workbench.peft import get_method

BERT = dict(model="tiny-bert", data="sms-spam", max_rows=200)


def head_params(prep) -> int:
    return int(sum(int(np.prod(v.shape)) for v in prep.task_model.head_variables()))


def dora_layers(prep) -> list:
    return [layer for layer in prep.task_model.all_layers() if getattr(layer, "dora_enabled", False)]


def test_counts_closed_form_and_by_hand():
    method = get_method("dora")
    cnn = prepared(small_image_config(method="dora", rank=4))
    # features: Dense 1568 -> 64: r·(d_in + d_out) + d_out; head: Dense 64 -> 10 digits
    assert method.count(cnn.task_model, cnn.config.options, "off") == 4 * (1568 + 64) + 64 == 6592
    assert cnn.report.trainable == 6592 + (64 * 10 + 10) == method.count(cnn.task_model, cnn.config.options, "off") + head_params(cnn)

    bert = prepared(TrainConfig.from_dict(dict(BERT, method="dora", rank=8)))
    hidden = 128  # query and value in 2 blocks, each a hidden x hidden map (EinsumDense kernel (128, heads, 128/heads))
    assert [tuple(layer._kernel.shape) for layer in dora_layers(bert)] and all(
        len(layer._kernel.shape) == 3 for layer in dora_layers(bert))
    assert method.count(bert.task_model, bert.config.options, "off") == 2 * 2 * (8 * (hidden + hidden) + hidden)
    assert bert.report.trainable == method.count(bert.task_model, bert.config.options, "off") + head_params(bert)
    assert head_params(bert) == hidden * 2 + 2
    for layer in dora_layers(bert):  # one magnitude per flattened output column
        assert tuple(layer.dora_magnitude.shape) == (hidden,)
        assert tuple(layer.dora_kernel_a.shape) == (hidden, 8) and tuple(layer.dora_kernel_b.shape) == (8, hidden)


@pytest.mark.parametrize("values", [dict(model="mnist-cnn", data="digits", limit_per_class=10), BERT])
def test_output_unchanged_at_step_zero_and_only_dora_and_head_train(values):
    full = prepared(TrainConfig.from_dict(dict(values, method="full")))
    dora = prepared(TrainConfig.from_dict(dict(values, method="dora", rank=4)))
    np.testing.assert_allclose(predict(full), predict(dora), atol=1e-5)  # same seed: same head; B = 0, m = ||W||
    for layer in dora_layers(dora):  # m starts at the column norms of the pretrained kernel
        d_out = int(layer.dora_magnitude.shape[0])
        flat = np.asarray(layer._kernel).reshape(-1, d_out)
        np.testing.assert_allclose(np.asarray(layer.dora_magnitude), np.linalg.norm(flat, axis=0), rtol=1e-6)
        assert not np.any(np.asarray(layer.dora_kernel_b)) and np.any(np.asarray(layer.dora_kernel_a))
    head = {id(v) for v in dora.task_model.head_variables()}
    paths = [v.path for v in dora.task_model.model.trainable_variables]
    assert paths and all(v.path.split("/")[-1].startswith("dora_") or id(v) in head
                         for v in dora.task_model.model.trainable_variables), paths
    assert {p.split("/")[-1] for p in paths if "dora_" in p} == {"dora_kernel_a", "dora_kernel_b", "dora_magnitude"}


def reference(layer, x):
    """The paper's formula in NumPy: y = x · (m · V / ||V||_c) + bias, V = W + (α/r)·A·B (flattened kernel)."""
    d_in, d_out = layer.dora_shape
    v = np.asarray(layer._kernel).reshape(d_in, d_out) + (layer.dora_alpha / layer.dora_rank) * (
        np.asarray(layer.dora_kernel_a) @ np.asarray(layer.dora_kernel_b))
    merged = np.asarray(layer.dora_magnitude) * v / np.linalg.norm(v, axis=0)
    y = x.reshape(-1, d_in) @ merged + np.asarray(layer.bias).reshape(-1)
    return merged.reshape(layer._kernel.shape), y


def randomised(prep, rng) -> list:
    """The DoRA layers with every variable given a value: B = 0 and m = ||W|| would let a wrong formula pass."""
    layers = dora_layers(prep)
    for layer in layers:
        layer.dora_kernel_b.assign(rng.normal(size=layer.dora_kernel_b.shape).astype("float32"))
        layer.dora_magnitude.assign(rng.uniform(0.5, 2.0, size=layer.dora_magnitude.shape).astype("float32"))
    return layers


def test_trained_values_follow_the_formula():
    """Training runs (x·W + s·(x·A)·B) · m / ||V||_c; exports carry W' = m · V / ||V||_c: the paper's function."""
    import keras

    rng = np.random.default_rng(0)
    layers = randomised(prepared(TrainConfig.from_dict(dict(BERT, method="dora", rank=4))), rng)
    assert len(layers) == 4
    for layer in layers:
        x = rng.normal(size=(3, 5, layer.dora_shape[0])).astype("float32")
        merged, expected = reference(layer, x)
        got = keras.ops.convert_to_numpy(layer(x))
        np.testing.assert_allclose(got.reshape(-1, layer.dora_shape[1]), expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.kernel), merged, rtol=1e-5, atol=1e-5)


def test_the_norm_is_a_constant_for_the_gradient():
    """Gradients are those of the formula with ||V||_c held constant (the paper's and peft's choice)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the reference gradients use tf.GradientTape")
    import tensorflow as tf

    rng = np.random.default_rng(1)
    layer = randomised(prepared(TrainConfig.from_dict(dict(BERT, method="dora", rank=4))), rng)[0]
    x = tf.constant(rng.normal(size=(4, 6, layer.dora_shape[0])).astype("float32"))
    a, b, m = layer.dora_kernel_a, layer.dora_kernel_b, layer.dora_magnitude
    s = layer.dora_alpha / layer.dora_rank
    flat_w = tf.reshape(tf.constant(np.asarray(layer._kernel)), layer.dora_shape)

    def formula(const_norm: bool) -> list:
        with tf.GradientTape() as tape:
            v = flat_w + s * tf.matmul(a.value, b.value)
            norm = tf.norm(v, axis=0)
            norm = tf.stop_gradient(norm) if const_norm else norm
            w = tf.reshape(m.value * v / norm, layer._kernel.shape)
            loss = tf.reduce_sum(tf.sin(tf.einsum(layer.equation, x, w)))
        return [g.numpy() for g in tape.gradient(loss, [a.value, b.value, m.value])]

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(layer(x) - layer.bias))
    got = [g.numpy() for g in tape.gradient(loss, [a.value, b.value, m.value])]
    for g, want in zip(got, formula(True), strict=True):
        assert np.any(g)
        np.testing.assert_allclose(g, want, rtol=1e-3, atol=1e-4)
    assert not np.allclose(got[0], formula(False)[0], rtol=1e-3, atol=1e-4)  # the test tells the two apart


def test_frozen_bit_identical_export_and_reload_reproduce(store):
    import keras

    from workbench.train.trainer import load_run_model

    config = small_image_config(method="dora", rank=4, epochs=2, lr=5e-3)
    prep = prepared(config)
    trainable = {v.path for v in prep.task_model.model.trainable_variables}
    before = weights(prep.task_model.model)
    run_id, _ = train_here(prep, store)
    after = weights(prep.task_model.model)
    frozen = [p for p in before if p not in trainable]
    assert frozen and all(np.array_equal(before[p], after[p]) for p in frozen)
    for name in ("dora_kernel_a", "dora_kernel_b", "dora_magnitude", "head/kernel"):
        changed = [p for p in trainable if name in p]
        assert changed and all(not np.array_equal(before[p], after[p]) for p in changed), name
    expected = predict(prep)

    run_dir = store.run_dir(run_id)
    with np.load(run_dir / "adapter.npz", allow_pickle=False) as saved:
        assert set(saved.files) == trainable
    np.testing.assert_allclose(predict(load_run_model(run_dir)), expected, atol=1e-5)

    assert get_method("dora").capabilities.mergeable
    merged = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert not [v.path for v in merged.weights if "dora_" in v.path]  # a plain kernel W' in the export
    got = keras.ops.convert_to_numpy(merged.predict(prep.inputs["test"], verbose=0))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_found_where_users_look(capsys):
    from workbench import peft
    from workbench.cli import build_parser
    from workbench.preview import preview
    from workbench.study import grid_variants

    assert "dora" in peft.method_names()
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(flag in text for flag in ("--rank", "--alpha", "--lora-targets")) and "dora" in text
    args = parser.parse_args(["train", "--method", "dora", "--rank", "4", "--lora-targets", "features"])
    assert (args.method, args.rank, args.lora_targets) == ("dora", 4, ["features"])
    assert ("dora r=8", {"method": "dora"}) in grid_variants(text=True)
    assert ("dora r=8", {"method": "dora"}) in grid_variants(text=False)

    config = TrainConfig.from_dict(dict(BERT, method="dora", rank=4))
    assert config.options.rank == 4 and config.options.alpha == 16.0
    assert preview(config).report.trainable == prepared(config).report.trainable == 2 * 2 * (4 * 256 + 128) + 258


@pytest.mark.parametrize(("options", "named"), [({"rank": 0}, "rank"), ({"alpha": 0.0}, "alpha"),
                                                 ({"lora_targets": []}, "lora_targets")])
def test_bad_options_refused_at_config(options, named):
    with pytest.raises(ConfigError, match=f"dora option {named} .*Received: {named}="):
        TrainConfig(model="mnist-cnn", data="digits", method="dora", method_options=options)


@pytest.mark.parametrize(("options", "message"), [
    ({"rank": 65}, "DoRA rank 65 exceeds layer 'features'"),  # features: 1568 -> 64
    ({"lora_targets": ["conv_1"]}, "DoRA adapts Dense or EinsumDense layers, and 'conv_1' is a Conv2D"),
    ({"lora_targets": ["nowhere"]}, "No layer matches the DoRA targets"),
])
def test_bad_targets_refused_with_one_line(options, message):
    with pytest.raises(ConfigError, match=message) as caught:
        prepared(small_image_config(method="dora", **options))
    assert "\n" not in str(caught.value) and "Received: " in str(caught.value)


def test_einsum_that_cannot_be_factored_uses_the_merged_kernel():
    """'abc,cd->adb' (output axes reordered): the layer's own call with W', unchanged at step 0, W' after."""
    import keras

    from workbench.peft.dora import _layer_classes

    layer = keras.layers.EinsumDense("abc,cd->adb", output_shape=(6, 5), bias_axes="d")
    x = np.random.default_rng(2).normal(size=(3, 5, 8)).astype("float32")
    before = keras.ops.convert_to_numpy(layer(x))
    layer.__class__ = _layer_classes()["EinsumDense"]
    layer.enable_dora(2, 4.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), before, atol=1e-5)
    layer.dora_kernel_b.assign(np.ones((2, 6), "float32"))
    layer.dora_magnitude.assign(np.arange(1, 7, dtype="float32"))
    merged, _ = reference(layer, x)
    want = np.einsum("abc,cd->adb", x, merged) + np.asarray(layer.bias).reshape(1, 6, 1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), want, rtol=1e-4, atol=1e-4)
