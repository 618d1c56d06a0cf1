"""Linear probe changes only the head; full fine-tuning changes every weight."""

from __future__ import annotations

import numpy as np
from conftest import small_image_config
from helpers import prepared, train_here, weights


def changed(before, after):
    return {p for p in before if not np.array_equal(before[p], after[p])}


def test_linear_probe_changes_only_the_head(store):
    prep = prepared(small_image_config(method="linear", lr=1e-2))
    before = weights(prep.task_model.model)
    train_here(prep, store)
    moved = changed(before, weights(prep.task_model.model))
    assert moved == {"head/kernel", "head/bias"}
    assert prep.report.trainable == 64 * 10 + 10


def test_full_fine_tuning_changes_all_weights(store):
    prep = prepared(small_image_config(method="full", lr=1e-3))
    before = weights(prep.task_model.model)
    train_here(prep, store)
    moved = changed(before, weights(prep.task_model.model))
    assert moved == set(before)
    assert prep.report.trainable == prep.report.total
