"""Hierarchical fine-tuning: which groups move in which stage, optimizer state kept, one trace per stage."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import small_image_config
from helpers import prepared

from workbench.train.lr_control import sync_state
from workbench.train.stages import stage_plan
from workbench.train.trainer import train

GROUPS = ["block_1", "block_2", "block_3", "head"]


def test_stage_plans():
    assert stage_plan(GROUPS, "bottom-up") == [["block_1", "head"], ["block_1", "block_2", "head"], GROUPS]
    assert stage_plan(GROUPS, "top-down") == [["head"], ["block_3", "head"], ["block_2", "block_3", "head"], GROUPS]
    assert stage_plan(GROUPS, "off") == [GROUPS]


class Probe(keras.callbacks.Callback):
    """Snapshots group weights, block_1's Adam moments and the trace count at every stage boundary."""

    def __init__(self, task_model, length):
        super().__init__()
        self.tm, self.length, self.step = task_model, length, 0
        self.snapshots, self.moments_before, self.moments_after = [], [], []
        self.traces: list[int] = []

    def weights(self):
        sync_state(self)  # on JAX the running values live outside the variables until synced
        return {g: [keras.ops.convert_to_numpy(v).copy() for v in self.tm.trainable_weights_of(vs)]
                for g, vs in self.tm.group_variables().items()}

    def moments(self):
        opt = self.model.optimizer.optimizers[0]  # block_1's AdamW (first group)
        return [keras.ops.convert_to_numpy(m).copy() for m in opt._momentums] + [int(opt.iterations)]

    def on_train_begin(self, logs=None):
        self.snapshots.append(self.weights())
        step_fn = self.model.train_step

        def counted(*args):  # runs once per trace, never per step ((data) on TensorFlow, (state, data) on JAX)
            self.traces.append(self.step)
            return step_fn(*args)

        self.model.train_step = counted
        self.model.make_train_function(force=True)

    def on_train_batch_begin(self, batch, logs=None):
        if self.step and self.step % self.length == 0:
            self.moments_after.append(self.moments())

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.length == 0:
            self.snapshots.append(self.weights())
            self.moments_before.append(self.moments())


def moved(a, b):
    return {g for g in a if any(not np.array_equal(x, y) for x, y in zip(a[g], b[g], strict=True))}


@pytest.mark.parametrize("mode, expected", [
    ("bottom-up", [{"block_1", "head"}, {"block_1", "block_2", "head"}, set(GROUPS)]),
    ("top-down", [{"head"}, {"block_3", "head"}, {"block_2", "block_3", "head"}, set(GROUPS)]),
])
def test_each_stage_moves_only_its_groups_and_keeps_optimizer_state(store, mode, expected):
    length = 8
    config = small_image_config(method="full", hierarchical=mode, stage_steps=length, batch_size=10,
                                limit_per_class=10, epochs=len(expected) * length // 10 + 1, export_model=False)
    assert len(prepared(config).split.y_train) % 10 == 0
    prep = prepared(config)
    probe = Probe(prep.task_model, length)
    run_id = store.create_run(config.to_dict(), "h", status="running")
    train(prep, store=store, run_id=run_id, extra_callbacks=[probe])
    for stage, groups in enumerate(expected):
        assert moved(probe.snapshots[stage], probe.snapshots[stage + 1]) == groups, (mode, stage)
    if mode == "bottom-up":  # block_1 trains from stage 1: its moments survive each switch
        for before, after in zip(probe.moments_before, probe.moments_after, strict=False):
            assert all(np.array_equal(b, a) for b, a in zip(before, after, strict=True))
            assert before[-1] > 0
    # One trace per stage change (100 examples / batch 10: no partial batch). The first step traces
    # twice at most: TensorFlow re-traces once when the first call creates the metrics' variables.
    later = [step for step in probe.traces if step > 0]
    assert later == [i * length for i in range(1, len(expected))] and probe.traces.count(0) <= 2
    timeline = store.metrics(run_id, keys=[f"trainable/{g}" for g in GROUPS])
    assert sorted(timeline.step.unique()) == [i * length for i in range(len(expected))]


def test_stages_longer_than_the_run_are_refused():
    from workbench.errors import ConfigError
    from workbench.train.preflight import preflight

    with pytest.raises(ConfigError, match="do not fit"):
        preflight(small_image_config(method="full", hierarchical="bottom-up", stage_epochs=5, epochs=3))


def test_each_group_optimizer_runs_the_lr_that_was_recorded(store):
    """The schedule reaches the optimizers (on JAX an LR assigned between steps must be synced into the state)."""
    config = small_image_config(method="full", hierarchical="bottom-up", stage_steps=4, lr_schedule="stlr",
                                discriminative=2.0, lr=1e-3, epochs=2, export_model=False)
    prep = prepared(config)
    run_id = store.create_run(config.to_dict(), "h", status="running")
    train(prep, store=store, run_id=run_id)
    frame = store.metrics(run_id)
    optimizers = prep.task_model.model.optimizer.optimizers
    assert len(optimizers) == len(GROUPS)
    for group, optimizer in zip(GROUPS, optimizers, strict=True):
        recorded = frame[frame.key == f"lr/{group}"].value.to_numpy()
        assert float(optimizer.learning_rate) == pytest.approx(recorded[-1], rel=1e-6), group
        assert recorded.max() > 2 * recorded[-1]  # the schedule moved (STLR: up, then down to lr / 32)
