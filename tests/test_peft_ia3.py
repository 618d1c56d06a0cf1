"""IA³: exact counts, unchanged at step 0, only the vectors (and head) train, export reloads, registry wiring."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_image_config
from helpers import predict, prepared, train_here, weights

from workbench.config import TrainConfig
from workbench.errors import ConfigError
from workbench.peft import get_method

TEXT = dict(model="tiny-bert", data="sms-spam", max_rows=200, batch_size=32)


def text_config(**overrides):
    return TrainConfig.from_dict({**TEXT, "method": "ia3", **overrides})


def head_params(prep) -> int:
    return int(sum(np.prod(v.shape) for v in prep.task_model.head_variables()))


def ia3_vars(model) -> list:
    return [v for v in model.variables if v.path.split("/")[-1].startswith("ia3_")]


def test_counts_match_the_closed_form_and_the_hand_count():
    method = get_method("ia3")
    image = prepared(small_image_config(method="ia3"))
    # mnist-cnn: the Dense "features" (1568 -> 64) is its one hidden layer: one 64-vector; head Dense 64 -> 10
    assert head_params(image) == 64 * 10 + 10
    assert method.count(image.task_model, image.config.options, "off") == 64
    assert image.report.trainable == 64 + 650
    assert image.report.by_group == {"block_1": 0, "block_2": 0, "block_3": 64, "head": 650}  # stageable

    # tiny-bert, hidden 128 (2 heads × 64), feed-forward 512: l_k + l_v + l_ff = 128 + 128 + 512 per block
    for overrides, per_block, blocks in (({}, 768, 2), ({"ia3_feedforward": False}, 256, 2),
                                         ({"tie_layers": True}, 768, 1)):  # tied: block 0's vectors at every depth
        prep = prepared(text_config(**overrides))
        count = method.count(prep.task_model, prep.config.options, "off")
        assert head_params(prep) == 128 * 2 + 2
        assert count == per_block * blocks, overrides
        assert prep.report.trainable == count + 258, overrides
        assert [prep.report.by_group[f"block_{i + 1}"] for i in range(blocks)] == [per_block] * blocks
        assert prep.report.by_group["embeddings"] == 0


def test_output_unchanged_at_step_zero():
    for config in (small_image_config(method="ia3"), text_config()):
        full = prepared(config.switch_method("full"))
        ia3 = prepared(config)
        assert ia3_vars(ia3.task_model.model)
        assert all(np.array_equal(np.asarray(v), np.ones(v.shape)) for v in ia3_vars(ia3.task_model.model))
        np.testing.assert_allclose(predict(full), predict(ia3), atol=1e-5)  # same seed: same head, l = 1


def test_layers_rescale_keys_values_and_the_feedforward_activation():
    """Each vector multiplies what the paper says: K, V (per head × head_dim) and the activation W2 reads."""
    import keras

    rng = np.random.default_rng(0)
    prep = prepared(text_config())
    layers = {}
    for layer in prep.task_model.all_layers():
        if getattr(layer, "ia3_scale", None) is not None:
            layers.setdefault(layer.name, layer)
            layer.ia3_scale.assign(rng.uniform(-1.5, 1.5, size=layer.ia3_scale.shape).astype("float32"))
    assert set(layers) == {"key", "value", "feedforward_output_dense"}
    for name in ("key", "value"):
        layer = layers[name]
        x = rng.normal(size=(3, 5, 128)).astype("float32")
        plain = keras.ops.einsum(layer.equation, x, layer._kernel) + layer.bias  # (3, 5, heads, head_dim)
        expected = keras.ops.convert_to_numpy(plain) * np.asarray(layer.ia3_scale).reshape(2, 64)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)
    ff = layers["feedforward_output_dense"]
    h = rng.normal(size=(3, 5, 512)).astype("float32")  # the GELU activation W2 reads
    expected = (h * np.asarray(ff.ia3_scale)) @ np.asarray(ff._kernel) + np.asarray(ff.bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ff(h)), expected, rtol=1e-4, atol=1e-4)

    image = prepared(small_image_config(method="ia3"))
    features = next(layer for layer in image.task_model.all_layers() if layer.name == "features")
    features.ia3_scale.assign(rng.uniform(-1.5, 1.5, size=(64,)).astype("float32"))
    x = rng.normal(size=(4, 1568)).astype("float32")
    after_relu = np.maximum(x @ np.asarray(features._kernel) + np.asarray(features.bias), 0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(features(x)), after_relu * np.asarray(features.ia3_scale),
                               rtol=1e-4, atol=1e-4)


def test_only_vectors_and_head_train_frozen_bit_identical_and_runs_reload(store):
    import keras

    from workbench.train.trainer import load_run_model

    for config in (small_image_config(method="ia3", epochs=2, lr=2e-2), text_config(epochs=1, export_model=True)):
        prep = prepared(config)
        head = {v.path for v in prep.task_model.head_variables()}
        trainable = {v.path for v in prep.task_model.model.trainable_variables}
        assert trainable == {v.path for v in ia3_vars(prep.task_model.model)} | head
        assert all("ia3_" in p or p in head for p in trainable)
        before = weights(prep.task_model.model)
        run_id, _ = train_here(prep, store)
        after = weights(prep.task_model.model)
        frozen = [p for p in before if p not in trainable]
        assert frozen and all(np.array_equal(before[p], after[p]) for p in frozen)
        assert all(not np.array_equal(before[p], after[p]) for p in trainable if "ia3_" in p)

        run_dir = store.run_dir(run_id)
        with np.load(run_dir / "adapter.npz", allow_pickle=False) as saved:
            assert set(saved.files) == trainable
        expected = predict(prep)
        np.testing.assert_allclose(predict(load_run_model(run_dir)), expected, atol=1e-5)
        merged = keras.saving.load_model(run_dir / "model.keras", safe_mode=True, compile=False)
        got = keras.ops.convert_to_numpy(merged.predict(prep.inputs["test"], verbose=0))
        np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("model", ["mnist-cnn", "tiny-bert"])
def test_export_keeps_far_from_one_vectors(tmp_path, model):
    """Vectors that matter (negative ones too: relu cannot absorb them) survive `model.save` + safe-mode load.

    BERT's vectors fold into the saved key/value/feed-forward kernels (keras-hub rebuilds those sublayers as
    plain layers on load); mnist-cnn's, after a relu, are saved as the registered layer's own weight.
    """
    import keras

    prep = prepared(small_image_config(method="ia3") if model == "mnist-cnn" else text_config())
    step0 = predict(prep)
    rng = np.random.default_rng(1)
    for v in ia3_vars(prep.task_model.model):
        v.assign(rng.uniform(-1.5, 1.5, size=v.shape).astype("float32"))
    expected = predict(prep)
    assert np.abs(expected - step0).max() > 1e-2  # the vectors change the function: the check below means something
    prep.task_model.model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    got = keras.ops.convert_to_numpy(loaded.predict(prep.inputs["test"], verbose=0))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    carried = ia3_vars(loaded)
    assert [tuple(v.shape) for v in carried] == ([(64,)] if model == "mnist-cnn" else [])


def test_appears_everywhere_users_look_without_other_edits():
    from workbench import cli
    from workbench.models.registry import get_model_card
    from workbench.peft import method_names
    from workbench.peft.ia3 import IA3Options
    from workbench.preview import preview
    from workbench.study import grid_variants
    from workbench.train.preflight import preflight

    method = get_method("ia3")
    assert "ia3" in method_names()
    caps = method.capabilities
    assert (caps.mergeable, caps.stageable, caps.tie_layers, caps.share_modes) == (True, True, True, ())
    assert caps.what_trains == "IA³ scales" and method.prefix == "ia3_"

    parser = cli.build_parser()
    train = next(a for a in parser._subparsers._group_actions if a.dest == "command").choices["train"]
    text = " ".join(train.format_help().split())
    assert "--ia3-feedforward, --no-ia3-feedforward" in text and "(method ia3)" in text
    args = parser.parse_args(["train", "--model", "tiny-bert", "--data", "sms-spam", "--method", "ia3",
                              "--no-ia3-feedforward"])
    config = cli._train_config(args)
    assert config.options == IA3Options(ia3_feedforward=False)
    assert config.display_name().startswith("ia3 no-FF ·")

    for text_rows in (True, False):
        assert ("ia3", {"method": "ia3"}) in grid_variants(text=text_rows)

    image = small_image_config(method="ia3", hierarchical="bottom-up")
    shown = preview(image)
    assert shown.report.trainable == prepared(image).report.trainable == 64 + 650
    assert shown.stages == [["block_3", "head"]]

    for bad, name in (({"ia3_feedforward": "yes"}, "ia3_feedforward"), ({"ia3_feedforward": 0}, "ia3_feedforward"),
                      ({"rank": 4}, "rank")):
        with pytest.raises(ConfigError, match=rf"{name}.*Received: {name}="):
            TrainConfig(model="mnist-cnn", data="digits", method="ia3", method_options=bad)
    with pytest.raises(ConfigError, match="share"):
        TrainConfig(model="tiny-bert", data="sms-spam", method="ia3", share="tied")

    # Without attention, IA³ rescales hidden activations: turning that off leaves nothing to train.
    no_ff = small_image_config(method="ia3", ia3_feedforward=False)
    with pytest.raises(ConfigError, match="ia3_feedforward.*Received: ia3_feedforward=False"):
        method.check(get_model_card("mnist-cnn"), no_ff)
    with pytest.raises(ConfigError, match="ia3_feedforward.*Received: ia3_feedforward=False"):
        preflight(no_ff)
    with pytest.raises(ConfigError, match="ia3_feedforward"):
        prepared(no_ff)
