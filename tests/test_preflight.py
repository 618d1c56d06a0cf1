"""`workbench.train.preflight`: what it builds on trial, and why skipping the build is safe."""

from __future__ import annotations

import pytest

from workbench.config import TrainConfig
from workbench.errors import ConfigError
from workbench.models.registry import get_model_card
from workbench.peft import get_method, method_names
from workbench.train import preflight as pf
from workbench.train.trainer import load_data


@pytest.mark.parametrize("model, data", [("tiny-bert", "sms-spam"), ("mnist-cnn", "digits"), ("mlp", "diabetes")])
def test_default_method_options_fit_every_built_in_model(model, data):
    """Preflight skips the trial build while a method's options keep their defaults: they must fit."""
    card = get_model_card(model)
    dataset, split = load_data(TrainConfig(model=model, data=data, max_rows=300))
    for method in method_names():
        config = TrainConfig(model=model, data=data, method=method, max_rows=300)
        assert not pf._needs_trial(config)
        check = get_method(method).check  # what a method refuses from the model card alone
        try:
            if check is not None:
                check(card, config)
        except ConfigError:
            assert get_method(method).capabilities.text_only and card.modality != "text"
            continue
        pf.trial_build(config, dataset, split)  # raises if a default does not fit this model


@pytest.mark.parametrize("changes, builds", [
    ({}, False), ({"method": "full"}, False), ({"rank": 16}, True), ({"lora_targets": ["dense_1"]}, True),
    ({"method": "adapter", "adapter_size": 4}, True), ({"method": "bitfit", "bitfit_layernorm": False}, True),
    ({"method": "full", "rank": 8}, False),  # a stored run's LoRA option at its default: dropped for full
    ({"hierarchical": "bottom-up"}, True), ({"data": "digits"}, True),  # staged plan; a misfit to explain
])
def test_trial_build_only_when_the_card_cannot_answer(monkeypatch, changes, builds):
    calls = []
    monkeypatch.setattr(pf, "trial_build", lambda config, dataset, split: calls.append(config.method))
    config = TrainConfig.from_dict({"model": "mlp", "data": "diabetes", "method": "lora", **changes})
    pf.preflight(config)
    assert bool(calls) is builds


def test_environment_is_checked_before_the_data_loads(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    config = TrainConfig(model="mlp", data="no-such-dataset", strategy="multiworker")
    with pytest.raises(ConfigError, match="needs TF_CONFIG"):
        pf.preflight(config)


def test_adaptable_layers_leave_out_the_head_and_the_unused_pooler():
    from workbench.models import build_task_model
    from workbench.train.trainer import context

    config = TrainConfig(model="tiny-bert", data="sms-spam", max_rows=300)
    dataset, split = load_data(config)
    task_model = build_task_model(config.model, context(dataset, split, config), "text")
    assert pf.adaptable_layers(task_model) == ["attention_output", "feedforward_intermediate_dense",
                                               "feedforward_output_dense", "key", "query", "value"]


@pytest.mark.parametrize("data, metric, fits", [("digits", "val/accuracy", True), ("digits", "val/mae", False),
                                                ("diabetes", "val/mae", True), ("diabetes", "val/accuracy", False)])
def test_early_stopping_must_watch_a_metric_the_task_records(data, metric, fits):
    model = "mnist-cnn" if data == "digits" else "mlp"
    config = TrainConfig(model=model, data=data, early_stopping=2, early_stopping_metric=metric)
    if fits:
        pf.preflight(config)
        return
    with pytest.raises(ConfigError, match=f"records val/loss and .*, not {metric}: stop early on one of those"):
        pf.preflight(config)
