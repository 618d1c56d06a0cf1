"""LoRA: unchanged at step 0, exact trainable counts, frozen weights untouched, adapter-only save, reload."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_image_config
from helpers import predict, prepared, train_here, weights

from workbench.config import TrainConfig
from workbench.peft.lora import lora_param_count


def test_output_unchanged_at_step_zero_and_counts_exact():
    full = prepared(small_image_config(method="full"))
    lora = prepared(small_image_config(method="lora", rank=4))
    np.testing.assert_allclose(predict(full), predict(lora), atol=1e-6)  # same seed: same head, B = 0
    # features: Dense 1568 -> 64; head: Dense 64 -> 10 digits
    assert lora.report.trainable == 4 * (1568 + 64) + (64 * 10 + 10)
    assert lora_param_count(lora.task_model, 4) == 4 * (1568 + 64)


def test_transformer_lora_matches_peft_arithmetic():
    prep = prepared(TrainConfig.from_dict(dict(model="tiny-bert", data="sms-spam", method="lora", rank=8, max_rows=200)))
    hidden = 128
    # query and value in 2 blocks, each a hidden x hidden map: r * (d_in + d_out) per layer
    assert prep.report.trainable == 2 * 2 * 8 * (hidden + hidden) + (hidden * 2 + 2)
    paths = [v.path for v in prep.task_model.model.trainable_variables]
    assert all("lora_kernel" in p or p.startswith("head") for p in paths)


def test_frozen_bit_identical_adapter_only_saved_and_reload_reproduces(store):
    import keras

    from workbench.train.trainer import load_adapter

    config = small_image_config(method="lora", rank=4, epochs=2, lr=5e-3)
    prep = prepared(config)
    trainable = {v.path for v in prep.task_model.model.trainable_variables}
    before = weights(prep.task_model.model)
    run_id, _ = train_here(prep, store)
    after = weights(prep.task_model.model)
    frozen = [p for p in before if p not in trainable]
    assert frozen and all(np.array_equal(before[p], after[p]) for p in frozen)
    assert all(not np.array_equal(before[p], after[p]) for p in trainable if "lora_kernel_b" in p)

    run_dir = store.run_dir(run_id)
    with np.load(run_dir / "adapter.npz", allow_pickle=False) as saved:
        assert set(saved.files) == trainable
    expected = predict(prep)

    fresh = prepared(config)
    load_adapter(fresh.task_model, run_dir / "adapter.npz")
    np.testing.assert_allclose(predict(fresh), expected, atol=1e-5)

    merged = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    got = keras.ops.convert_to_numpy(merged.predict(prep.inputs["test"], verbose=0))
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("share", ["off", "tied", "vera"])
def test_factored_call_equals_the_merged_kernel(share):
    """Training runs x·W + s·(x·A')·B'; exports carry W + s·A'·B'. Both must be the same function."""
    import keras

    prep = prepared(TrainConfig.from_dict(dict(model="tiny-bert", data="sms-spam", method="lora", rank=4, share=share, max_rows=200)))
    rng = np.random.default_rng(0)
    layers = [layer for layer in prep.task_model.all_layers() if getattr(layer, "lora_enabled", False)]
    assert layers
    for layer in layers:  # B = 0 at the start would make any formula pass: give every factor a value
        for var in (layer.lora_kernel_b, layer.lora_scale, layer.lora_vera_d, layer.lora_vera_b):
            if var is not None:
                var.assign(rng.normal(size=var.shape).astype("float32"))
    for layer in layers:
        x = rng.normal(size=(3, 5, int(layer._kernel.shape[0]))).astype("float32")
        factored = keras.ops.convert_to_numpy(layer(x))
        merged = keras.ops.einsum(layer.equation, x, layer.kernel) + layer.bias
        np.testing.assert_allclose(factored, keras.ops.convert_to_numpy(merged), rtol=1e-4, atol=1e-4)


def test_einsum_equations_that_cannot_be_flattened_keep_the_merged_kernel():
    from workbench.peft.lora_layers import _einsum_factorable

    assert _einsum_factorable("abc,cde->abde") and _einsum_factorable("abcd,cde->abe")
    assert not _einsum_factorable("abc,acd->abd") and not _einsum_factorable("...b,bc->...c")
