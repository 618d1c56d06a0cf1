"""Adapter, BitFit and prompt tuning: step-0 behaviour and which variables train."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import predict, prepared, train_here, weights

from workbench.config import TrainConfig


def text_config(**overrides):
    return TrainConfig.from_dict({"model": "tiny-bert", "data": "sms-spam", "max_rows": 240, "epochs": 1,
                          "batch_size": 16, "export_model": False, **overrides})


def tabular_config(**overrides):
    return TrainConfig.from_dict({"model": "mlp", "data": "diabetes", "max_rows": 120, "epochs": 1, "batch_size": 16,
                          "export_model": False, **overrides})


def changed(before, after):
    return {p for p in before if not np.array_equal(before[p], after[p])}


@pytest.mark.parametrize("method", ["adapter", "bitfit"])
def test_output_unchanged_at_step_zero(method):
    base = predict(prepared(text_config(method="linear")))
    np.testing.assert_allclose(predict(prepared(text_config(method=method))), base, atol=1e-5)


def test_prompt_tuning_changes_inputs_but_trains_only_prompt_and_head(store):
    prep = prepared(text_config(method="prompt", prompt_length=4))
    trainable = {v.path for v in prep.task_model.model.trainable_variables}
    assert trainable == {"soft_prompt/prompt_embeddings", "head/kernel", "head/bias"}
    assert prep.report.trainable == 4 * 128 + 128 * 2 + 2
    before = weights(prep.task_model.model)
    train_here(prep, store)
    assert changed(before, weights(prep.task_model.model)) == trainable


@pytest.mark.parametrize("method, allowed", [
    ("adapter", ("adapter_", "head/")),
    ("bitfit", ("/bias", "/gamma", "/beta", "head/")),
])
def test_only_the_intended_variables_train(store, method, allowed):
    prep = prepared(text_config(method=method, lr=5e-3))
    before = weights(prep.task_model.model)
    train_here(prep, store)
    moved = changed(before, weights(prep.task_model.model))
    assert moved and all(any(a in p for a in allowed) for p in moved), sorted(moved)
    assert {v.path for v in prep.task_model.model.trainable_variables} >= moved


def test_bitfit_without_layernorm_trains_biases_only():
    prep = prepared(text_config(method="bitfit", bitfit_layernorm=False))
    names = {v.path.split("/")[-1] for v in prep.task_model.model.trainable_variables}
    assert names == {"bias", "kernel"}  # kernel: the head's only
    assert sum(1 for v in prep.task_model.model.trainable_variables if v.path.endswith("kernel")) == 1


def test_adapters_on_the_mlp_follow_its_hidden_layers_not_its_input(store):
    """The mlp's input layer is named "features" like mnist-cnn's hidden layer: it must get no adapter."""
    from workbench.peft.adapter import adapter_layers
    from workbench.train.trainer import load_run_model

    prep = prepared(tabular_config(method="adapter", adapter_size=4, lr=5e-3))
    assert [layer.name for layer in adapter_layers(prep.task_model)] == ["dense_1", "dense_2"]
    per_adapter = 2 * 64 * 4 + 64 + 4
    assert prep.report.by_group == {"block_1": per_adapter, "block_2": per_adapter, "head": 64 + 1}
    base = predict(prepared(tabular_config(method="linear")))
    np.testing.assert_allclose(predict(prep), base, atol=1e-5)  # `up` starts at zero: same function at step 0
    before = weights(prep.task_model.model)
    run_id, _ = train_here(prep, store)
    moved = changed(before, weights(prep.task_model.model))
    assert {p.split("/")[0] for p in moved} == {"dense_1", "dense_2", "head"}, sorted(moved)
    assert all("/adapter_" in p or p.startswith("head/") for p in moved), sorted(moved)
    reloaded = load_run_model(store.run_dir(run_id))  # adapters are unmergeable: they reload from adapter.npz
    np.testing.assert_allclose(predict(reloaded), predict(prep), atol=1e-5)
