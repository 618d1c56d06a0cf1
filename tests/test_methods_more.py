"""Adapter, BitFit and prompt tuning: step-0 behaviour and which variables train."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import predict, prepared, train_here, weights

from workbench.config import TrainConfig


def text_config(**overrides):
    return TrainConfig(**{"model": "tiny-bert", "data": "sms-spam", "max_rows": 240, "epochs": 1,
                          "batch_size": 16, "export_model": False, **overrides})


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
