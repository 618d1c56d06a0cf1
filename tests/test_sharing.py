"""Parameter sharing: closed-form counts, and shared factors are one variable across layers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import predict, prepared, train_here

from workbench.config import TrainConfig
from workbench.peft.adapter import adapter_param_count
from workbench.peft.lora import lora_param_count


def text_config(**overrides):
    return TrainConfig.from_dict({"model": "tiny-bert", "data": "sms-spam", "max_rows": 200, **overrides})


HEAD = 128 * 2 + 2


@pytest.mark.parametrize("share", ["off", "tied", "vera"])
def test_lora_trainable_count_equals_closed_form(share):
    prep = prepared(text_config(method="lora", rank=8, share=share))
    expected = {"off": 4 * 8 * (128 + 128), "tied": 8 * (128 + 128) + 4 * 8, "vera": 4 * (8 + 128)}[share]
    assert lora_param_count(prep.task_model, 8, share=share) == expected
    assert prep.report.trainable == expected + HEAD


def test_adapter_counts_plain_and_tied():
    plain = prepared(text_config(method="adapter", adapter_size=16))
    tied = prepared(text_config(method="adapter", adapter_size=16, share="tied"))
    per_adapter = 2 * 128 * 16 + 128 + 16
    assert plain.report.trainable == 4 * per_adapter + HEAD == adapter_param_count(plain.task_model, 16) + HEAD
    assert tied.report.trainable == 2 * per_adapter + HEAD


def _query_layers(prep):
    return [layer for layer in prep.task_model.all_layers() if layer.name == "query"]


@pytest.mark.parametrize("share", ["tied", "vera"])
def test_shared_factors_are_one_variable_and_an_update_moves_every_layer(share):
    prep = prepared(text_config(method="lora", share=share))
    q1, q2 = _query_layers(prep)
    assert q1.lora_kernel_a is q2.lora_kernel_a and q1.lora_kernel_b is q2.lora_kernel_b
    if share == "vera":
        assert not q1.lora_kernel_a.trainable and q1.lora_vera_b is not q2.lora_vera_b
        q1.lora_vera_b.assign(np.ones(q1.lora_vera_b.shape, "float32"))
        q2.lora_vera_b.assign(np.ones(q2.lora_vera_b.shape, "float32"))
    before = [keras.ops.convert_to_numpy(q.kernel) for q in (q1, q2)]
    shared_b = q1.lora_kernel_b
    shared_b.assign(shared_b + 0.01)  # "an update through one layer"
    after = [keras.ops.convert_to_numpy(q.kernel) for q in (q1, q2)]
    assert all(not np.allclose(b, a) for b, a in zip(before, after, strict=True))


def test_parameter_report_shows_reduction_before_the_run():
    from workbench.preview import preview

    plain = preview(text_config(method="lora")).report.trainable
    tied = preview(text_config(method="lora", share="tied"))
    vera = preview(text_config(method="lora", share="vera"))
    assert vera.report.trainable < tied.report.trainable < plain
    assert tied.plain_lora_trainable == vera.plain_lora_trainable == plain


def test_tied_blocks_put_one_block_at_every_depth():
    """ALBERT-style tying: the encoder keeps one block's parameters, called at each of its depths."""
    plain = prepared(text_config(method="full"))
    tied = prepared(text_config(method="full", tie_layers=True))
    block = tied.task_model.backbone.get_layer("transformer_layer_0")
    dropped = plain.task_model.backbone.get_layer("transformer_layer_1").count_params()
    assert [layer.name for layer in tied.task_model.model.layers].count("transformer_layer_0") == 1
    assert len(block._inbound_nodes) >= tied.task_model.backbone.num_layers == 2
    pooler = plain.report.total - plain.report.trainable  # the unused pooler leaves with the backbone's graph
    assert tied.report.trainable == plain.report.trainable - dropped
    assert tied.report.total == plain.report.total - dropped - pooler
    assert list(tied.task_model.groups) == ["embeddings", "block_1", "head"]
    lora = prepared(text_config(method="lora", rank=8, tie_layers=True))
    assert lora.report.trainable == 2 * 8 * (128 + 128) + HEAD  # one LoRA pair per target, in the one block


def test_tied_blocks_train_export_and_reload(store):
    config = text_config(method="full", tie_layers=True, epochs=1, batch_size=16)
    prep = prepared(config)
    run_id, summary = train_here(prep, store)
    assert summary["steps"] > 0 and np.isfinite(summary["train_loss"])
    merged = keras.saving.load_model(store.run_dir(run_id) / "model.keras", safe_mode=True, compile=False)
    got = keras.ops.convert_to_numpy(merged.predict(prep.inputs["test"], verbose=0))
    np.testing.assert_allclose(got, predict(prep), atol=1e-5)


@pytest.mark.parametrize("overrides, message", [
    ({"model": "mlp", "data": "diabetes", "method": "full"}, "transformer text model"),
    ({"method": "prompt"}, "tie_layers shares the blocks that train")])
def test_tied_blocks_refused_where_there_is_no_block_to_share(overrides, message):
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match=message):
        prepared(text_config(**{**overrides, "tie_layers": True}))
