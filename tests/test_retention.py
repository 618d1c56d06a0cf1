"""Retention of the source task: frozen bases keep it exactly, full fine-tuning at a high LR forgets it.

Tiny runs (mnist-cnn on digits, a few labels per class; tiny-bert on a few sms-spam rows) on the
shipped backbones and source heads (`sample_data/models/*.source-head.npz`).
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import small_image_config
from helpers import prepared, train_here

from workbench.explain import retention
from workbench.models import source_probes


def _run(store, **overrides):
    prep = prepared(small_image_config(**overrides))
    run_id, summary = train_here(prep, store)
    return prep, summary, store.metrics(run_id, keys=[retention.KEY])


def test_linear_probe_keeps_the_source_score_exactly(store):
    prep, summary, curve = _run(store, method="linear", epochs=2, limit_per_class=5)
    base = source_probes.get_probe("mnist-cnn").base_score
    assert summary["source_metric"] == "MNIST accuracy"
    assert summary["source_before"] == summary["source_after"] == summary["source_removed"] == base
    assert base > 0.9  # the shipped head reads the shipped backbone well
    assert curve.step.tolist()[0] == 0 and curve.value.tolist() == [base, base]
    assert retention.retention_line(summary) == f"source kept: {base:.3f} → {base:.3f} (MNIST accuracy)"


def test_removing_lora_restores_the_base_exactly(store):
    prep, summary, _ = _run(store, method="lora", epochs=3, limit_per_class=10, lr=0.02)
    probe = source_probes.get_probe("mnist-cnn")
    assert summary["source_after"] != summary["source_before"]  # LoRA did change what the encoder computes
    assert summary["source_removed"] == summary["source_before"]
    # The forward pass on a fresh base holding the run's pretrained weights gives the same score, exactly.
    assert retention.removed_score(prep, probe, recompute=True) == summary["source_before"]
    assert retention.removal_line(summary, "lora") == f"LoRA removed → {summary['source_before']:.3f} (= base)"
    # Had training touched a pretrained weight, the removal would probe that changed base instead.
    kernel = next(v for v in prep.task_model.model.weights if v.path == "features/kernel")
    kernel.assign(keras.ops.zeros_like(kernel))
    assert retention.removed_score(prep, probe) < summary["source_before"] - 0.3


def test_full_fine_tuning_at_a_high_lr_forgets_and_has_nothing_to_remove(store):
    _, summary, curve = _run(store, method="full", epochs=3, limit_per_class=10, lr=0.08)
    assert summary["source_after"] < summary["source_before"] - 0.3
    assert "source_removed" not in summary and retention.removal_line(summary, "full") is None
    assert curve.value.iloc[0] == summary["source_before"] and curve.value.iloc[-1] == summary["source_after"]


def test_epoch_end_points_only_within_the_budget(store, monkeypatch):
    monkeypatch.setattr(retention, "BUDGET", 10.0)
    _, summary, curve = _run(store, method="lora", epochs=3, limit_per_class=5)
    assert len(curve) == 4 and curve.step.is_monotonic_increasing  # step 0, two epoch ends, the final probe
    assert summary["source_probe_s"] > 0
    monkeypatch.setattr(retention, "BUDGET", 0.0)
    _, _, curve = _run(store, method="lora", epochs=3, limit_per_class=5)
    assert len(curve) == 2  # before and after only


def test_models_without_a_source_task_have_no_retention(store):
    from workbench.config import TrainConfig

    _, summary = train_here(prepared(TrainConfig(model="mlp", data="diabetes", epochs=1, max_rows=120)), store)
    assert not any(key.startswith("source_") for key in summary) and retention.retention_line(summary) is None
    _, summary, curve = _run(store, method="full", epochs=1, limit_per_class=5, from_scratch=True)
    assert "source_before" not in summary and curve.empty


def test_tiny_bert_masked_tokens_prompt_step0_and_removal(store):
    """Prompt tuning changes the output at step 0 (measured there), and removing the prompt restores the base."""
    from workbench.config import TrainConfig

    config = TrainConfig(model="tiny-bert", data="sms-spam", method="prompt", epochs=1, batch_size=8,
                         limit_per_class=8, max_seq_len=32)
    prep = prepared(config)
    run_id, summary = train_here(prep, store)
    probe = source_probes.get_probe("tiny-bert")
    card = json.loads((source_probes.models_dir() / "tiny-bert.card.json").read_text())
    assert summary["source_before"] == pytest.approx(card["source_probe_score"], abs=1e-4)
    assert 0.2 < summary["source_before"] < 0.5 and probe.extra["masked_tokens"] > 300  # far above chance (1/2570)
    curve = store.metrics(run_id, keys=[retention.KEY])
    assert curve.step.iloc[0] == 0 and curve.value.iloc[0] != summary["source_before"]  # the prompt is in the way
    assert summary["source_removed"] == summary["source_before"]
    assert retention.removed_score(prep, probe, recompute=True) == summary["source_before"]


def test_the_mlm_probe_head_is_keras_hubs_masked_lm_head():
    """The probe's own head arithmetic gives the logits keras-hub's `MaskedLMHead` gives with the same weights."""
    import keras_hub

    base = source_probes.load_base("tiny-bert")
    with np.load(source_probes.head_path("tiny-bert")) as saved:
        head = {k: saved[k] for k in saved.files}
    layer = keras_hub.layers.MaskedLMHead(token_embedding=base.get_layer("token_embedding"),
                                          intermediate_activation="gelu", layer_norm_epsilon=float(head["epsilon"]))
    states = np.random.default_rng(0).normal(size=(4, 3, 128)).astype("float32")
    positions = np.array([[0, 1, 2]] * 4)
    layer(states, mask_positions=positions)  # builds it
    dense, norm = layer._intermediate_dense, layer._intermediate_layer_norm
    for variable, name in ((dense.kernel, "dense_kernel"), (dense.bias, "dense_bias"), (norm.gamma, "ln_gamma"),
                           (norm.beta, "ln_beta"), (layer._bias, "output_bias")):
        variable.assign(head[name])
    expected = keras.ops.convert_to_numpy(layer(states, mask_positions=positions))
    got = source_probes.mlm_head_logits(states.reshape(12, 128), head, source_probes.token_embedding(base))
    np.testing.assert_allclose(got, expected.reshape(12, -1), rtol=1e-4, atol=1e-4)


def test_spearman_of_the_sentence_geometry():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(20, 8))
    sims = source_probes.cosine_pairs(emb)
    assert len(sims) == 190 and source_probes.spearman(sims, sims) == 1.0
    assert source_probes.spearman(sims, -sims) == pytest.approx(-1.0)
    assert 0.3 < source_probes.spearman(sims, source_probes.cosine_pairs(emb + rng.normal(size=emb.shape))) < 0.95
    assert source_probes.spearman(np.array([1.0, 2, 2, 3]), np.array([1.0, 2, 3, 4])) == pytest.approx(0.9486833)


def test_pretrain_reproduces_the_mnist_source_head(tmp_path):
    from workbench.models.pretrain import pretrain_mnist_cnn

    stats = pretrain_mnist_cnn(epochs=2, out_dir=tmp_path)
    with np.load(tmp_path / "mnist-cnn.source-head.npz") as saved:
        assert saved["kernel"].shape == (64, 10) and saved["bias"].shape == (10,)
    card = json.loads((tmp_path / "mnist-cnn.card.json").read_text())
    assert card["source_probe_score"] == stats["source_probe_score"] > 0.9
    assert "frozen backbone" in card["source_head"]


def test_cards_say_how_forgetting_is_measured():
    from workbench.models import get_model_card

    score = json.loads((source_probes.models_dir() / "mnist-cnn.card.json").read_text())["source_probe_score"]
    assert "Dense(10)" in get_model_card("mnist-cnn").source_probe
    assert f"scores {score:.3f}" in get_model_card("mnist-cnn").source_probe
    assert "masked-token accuracy" in get_model_card("tiny-bert").source_probe
    assert "Spearman" in get_model_card("minilm-l6").source_probe
    assert get_model_card("mlp").source_probe.startswith("none")


def test_the_page_shows_the_line_the_removal_and_the_curve(store, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(retention, "BUDGET", 10.0)
    prep = prepared(small_image_config(method="lora", epochs=3, limit_per_class=5))
    run_id, summary = train_here(prep, store)
    store.update_run(run_id, status="completed", final_metrics=summary)

    def page(run_id: str) -> None:
        from pages._retention import render_run
        from workbench.runs import RunStore

        runs = RunStore()
        render_run(runs.get_run(run_id), runs)

    at = AppTest.from_function(page, args=(run_id,), default_timeout=30).run()  # (3 s is tight on a loaded CPU)
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert retention.retention_line(summary) in text and "LoRA removed →" in text and "(= base)" in text
    charts = at.get("plotly_chart")
    assert len(charts) == 1 and "Source task kept" in charts[0].proto.spec


def test_on_the_forgetting_scenario_full_fine_tuning_forgets_and_lora_keeps(store):
    """The class preset's own runs (seed 0): few labels, 10× full's LR, the same for both methods."""
    from workbench.config import TrainConfig
    from workbench.presets import FORGETTING, presets

    runs = {c.method: c for c in presets()[FORGETTING](TrainConfig(model="mnist-cnn", data="digits", method="full"))
            if c.seed == 0 and c.hierarchical == "off" and c.lr_schedule == "constant"}
    kept = {}
    for method, config in runs.items():
        _, summary = train_here(prepared(config), store)
        kept[method] = summary
    assert kept["full"]["source_after"] < kept["full"]["source_before"] - 0.2  # measured here: 0.96 → ~0.5
    assert kept["lora"]["source_after"] > kept["full"]["source_after"] + 0.2  # 0.96 → ~0.9
    assert kept["lora"]["source_removed"] == kept["lora"]["source_before"]
