"""Learning-rate adaptation in the engine: plateau cuts, discriminative update ratios, recorded schedules."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import small_image_config
from helpers import prepared, train_here

from workbench import schedules
from workbench.config import TrainConfig
from workbench.train.lr_control import LearningRateControl, make_optimizer


def test_plateau_cuts_the_lr_after_patience_epochs():
    config = TrainConfig(lr_schedule="plateau", plateau_factor=0.5, plateau_patience=2, min_lr=1e-4)
    opt = keras.optimizers.AdamW(1e-2)
    control = LearningRateControl(config, 1e-2, 100, {"head": opt})
    lrs = []
    for val_loss in [1.0, 0.8, 0.81, 0.82, 0.9, 0.7, 0.75, 0.76, 0.77, 0.78, 0.79, 0.8, 0.81]:
        control.on_train_batch_begin(0)
        lrs.append(float(opt.learning_rate))
        control.on_epoch_end(0, {"val_loss": val_loss})
    # stalls after epoch 1 (0.8): two non-improving epochs -> halve; later ones keep halving, floored at min_lr
    assert lrs[:5] == pytest.approx([1e-2, 1e-2, 1e-2, 1e-2, 5e-3])
    # improves at epoch 5 (0.7), stalls again at 6 and 7 -> halve; again at 8 and 9 -> halve
    assert lrs[5:9] == pytest.approx([5e-3, 5e-3, 5e-3, 2.5e-3]) and lrs[10] == pytest.approx(1.25e-3)
    assert min(lrs) >= 1e-4


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_discriminative_update_ratio_equals_factor(optimizer):
    factor = 2.6
    config = TrainConfig(method="full", discriminative=factor, optimizer=optimizer, weight_decay=0.0)
    group_vars = {g: [keras.Variable(np.ones((4, 4), "float32"), name=f"w_{g}")] for g in ("block_1", "block_2", "head")}
    opt, per_group = make_optimizer(config, 0.1, group_vars)
    control = LearningRateControl(config, 0.1, 10, per_group)
    control.on_train_batch_begin(0)
    grad = np.random.default_rng(0).normal(size=(4, 4)).astype("float32")
    variables = [vs[0] for vs in group_vars.values()]
    opt.apply([keras.ops.convert_to_tensor(grad)] * 3, variables)
    steps = [np.abs(1.0 - keras.ops.convert_to_numpy(v)).mean() for v in variables]
    assert steps[2] / steps[1] == pytest.approx(factor, rel=1e-3)
    assert steps[1] / steps[0] == pytest.approx(factor, rel=1e-3)


@pytest.mark.parametrize("name", ["stlr", "warmup-cosine"])
def test_the_recorded_lr_is_the_schedule_that_ran(store, name):
    config = small_image_config(method="full", lr_schedule=name, discriminative=2.0, lr=1e-3, epochs=2)
    run_id, _ = train_here(prepared(config), store)
    frame = store.metrics(run_id)
    recorded = frame[frame.key == "train/lr"].value.to_numpy()
    options = {"warmup_frac": config.warmup_frac} if name == "warmup-cosine" else {}
    expected = schedules.schedule_curve(name, base_lr=1e-3, total_steps=len(recorded), **options)
    np.testing.assert_allclose(recorded, expected, rtol=1e-6)
    head = frame[frame.key == "lr/head"].value.to_numpy()
    block = frame[frame.key == "lr/block_3"].value.to_numpy()
    live = block > 0  # warmup-cosine ends at exactly 0
    np.testing.assert_allclose(head[live] / block[live], 2.0, rtol=1e-6)
