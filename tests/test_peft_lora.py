"""LoRA: unchanged at step 0, exact trainable counts, frozen weights untouched, adapter-only save, reload."""

from __future__ import annotations

import numpy as np
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
    prep = prepared(TrainConfig(model="tiny-bert", data="sms-spam", method="lora", rank=8, max_rows=200))
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
