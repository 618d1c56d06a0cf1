"""Augmentation runs end to end for text and images; the study writes an honest table."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import small_image_config
from helpers import prepared, train_here

from workbench.config import TrainConfig
from workbench.study import run_study, verdict


@pytest.mark.parametrize("config", [
    small_image_config(method="lora", augment=True, epochs=2),
    TrainConfig(model="tiny-bert", data="sms-spam", method="lora", augment=True, max_rows=200, epochs=1,
                batch_size=16, export_model=False),
], ids=["image", "text"])
def test_augmented_training_completes(store, config):
    _, summary = train_here(prepared(config), store)
    assert summary["steps"] > 0 and summary["train_loss"] == summary["train_loss"]  # finite


def test_verdict_needs_a_gap_beyond_seed_noise():
    a, b, c = (pd.Series({"variant": name}) for name in "abc")
    seeds = {"a": [0.88, 0.90, 0.92], "b": [0.86, 0.89, 0.92], "c": [0.79, 0.80, 0.81]}
    assert verdict(a, b, seeds["a"], seeds["b"]).startswith("no clear difference between a and b")
    assert verdict(a, c, seeds["a"], seeds["c"]).startswith("**a** beats c by +0.100 accuracy")
    assert verdict(c, a, seeds["c"], seeds["a"]).startswith("**a** beats c by +0.100 accuracy")
    assert verdict(a, c, seeds["a"], seeds["c"], "test_loss").startswith("**c** beats a")  # lower loss wins


def test_quick_study_writes_results(tmp_path):
    frame = run_study(tmp_path / "runs", tmp_path / "docs", seeds=1, quick=True, log=lambda line: None)
    assert (frame.status == "completed").all() and len(frame) == 4
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "| full |" in text and "Does LoRA match full fine-tuning?" in text
    assert (tmp_path / "docs" / "results.csv").is_file()
