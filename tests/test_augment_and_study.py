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


def test_verdict_needs_a_gap_larger_than_the_spread():
    a = pd.Series({"variant": "a", "test_mean": 0.90, "test_std": 0.02})
    b = pd.Series({"variant": "b", "test_mean": 0.89, "test_std": 0.03})
    c = pd.Series({"variant": "c", "test_mean": 0.80, "test_std": 0.01})
    assert verdict(a, b).startswith("no clear difference")
    assert verdict(a, c).startswith("**a** wins") and verdict(c, a).startswith("**a** wins")


def test_quick_study_writes_results(tmp_path):
    frame = run_study(tmp_path / "runs", tmp_path / "docs", seeds=1, quick=True, log=lambda line: None)
    assert (frame.status == "completed").all() and len(frame) == 4
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "| full |" in text and "Does LoRA match full fine-tuning?" in text
    assert (tmp_path / "docs" / "results.csv").is_file()
