"""One truth about staging: the plan the preview shows is the plan the trainer runs, step by step.

For every built-in model × every method that accepts staging × bottom-up/top-down, a few real
training steps (one step per stage) are checked twice: which groups' variables are trainable when
each step begins (a probe callback), and the `trainable/<group>` rows the trainer records for the
Runs timeline. Groups the preview calls untrained must never train nor be recorded.
"""

from __future__ import annotations

import keras
import pytest

from workbench.config import TrainConfig
from workbench.preview import preview, staging_effects
from workbench.train.stages import plan_stages, stage_plan
from workbench.train.trainer import train, trainable_groups

DATA = {"mnist-cnn": "digits", "mlp": "diabetes", "tiny-bert": "sms-spam", "minilm-l6": "sms-spam"}
STAGED_METHODS = ("full", "lora", "bitfit", "adapter")


class TrainableProbe(keras.callbacks.Callback):
    """The groups whose variables are trainable as each batch begins (after the stage switch).

    `eager`: run the steps without tracing them. A transformer's train step takes seconds to trace,
    once per stage; the trainable flags and recorded rows under test are the same either way (the
    one-trace-per-stage behaviour of graph mode is `test_hierarchical`'s subject).
    """

    def __init__(self, group_vars: dict[str, list], eager: bool = False) -> None:
        super().__init__()
        self.group_vars, self.eager = group_vars, eager
        self.per_step: list[set[str]] = []

    def on_train_begin(self, logs=None):
        if self.eager:
            self.model.run_eagerly = True
            self.model.make_train_function(force=True)

    def on_train_batch_begin(self, batch, logs=None):
        self.per_step.append({g for g, variables in self.group_vars.items() if any(v.trainable for v in variables)})


def small_config(model: str, method: str, mode: str, **options) -> TrainConfig:
    """One step per stage, a handful of rows: seconds per case (batch 4 → 6+ steps for ≤ 4 stages)."""
    return TrainConfig(model=model, data=DATA[model], method=method, hierarchical=mode, stage_steps=1, epochs=1,
                       batch_size=4, max_rows=40, max_seq_len=16, export_model=False, jit_compile=False, **options)


def check_plan_is_trained(store, config: TrainConfig) -> None:
    from helpers import prepared

    pv = preview(config)
    prep = prepared(config)
    probe = TrainableProbe(trainable_groups(prep.task_model), eager=config.model in ("tiny-bert", "minilm-l6"))
    run_id = store.create_run(config.to_dict(), "stage truth", status="running")
    train(prep, store=store, run_id=run_id, extra_callbacks=[probe])

    stages = pv.stages
    assert len(probe.per_step) >= len(stages), "the run was too short to reach every stage"
    for step, trainable in enumerate(probe.per_step):
        assert trainable == set(stages[min(step, len(stages) - 1)]), (config.display_name(), step)
    rows = store.metrics(run_id)
    rows = rows[rows.key.str.startswith("trainable/")]
    recorded = {k[len("trainable/"):] for k in rows.key}
    assert recorded == set().union(*stages), "the timeline records exactly the groups of the plan"
    assert not recorded & set(pv.untrained_groups)
    for step in sorted(rows.step.unique()):  # each change point switches on exactly the next stage
        latest = rows[rows.step <= step].sort_values("step").groupby("key").tail(1)
        now = {k[len("trainable/"):] for k, v in zip(latest.key, latest.value, strict=True) if v >= 0.5}
        assert now == set(stages[min(int(step), len(stages) - 1)]), (config.display_name(), step)
    assert sorted(rows.step.unique()) == list(range(len(stages)))
    assert set(pv.group_names) == set(pv.untrained_groups) | recorded


CASES = [(model, method, mode) for model in ("mnist-cnn", "mlp", "tiny-bert") for method in STAGED_METHODS
         for mode in ("bottom-up", "top-down")]


@pytest.mark.parametrize("model, method, mode", CASES)
def test_preview_plan_is_the_trained_plan(store, model, method, mode):
    check_plan_is_trained(store, small_config(model, method, mode))


@pytest.mark.parametrize("method, options", [("adapter", {"share": "tied"}), ("lora", {"tie_layers": True}),
                                             ("lora", {"share": "vera"})])
def test_shared_and_tied_variants_follow_the_plan(store, method, options):
    """Shared weights join their lowest group: tied adapters train in block_1 only."""
    check_plan_is_trained(store, small_config("tiny-bert", method, "top-down", **options))


@pytest.mark.slow
@pytest.mark.parametrize("method", STAGED_METHODS)
def test_minilm_preview_plan_is_the_trained_plan(store, method):
    check_plan_is_trained(store, small_config("minilm-l6", method, "bottom-up"))


@pytest.mark.parametrize("method", ["lora", "adapter"])
def test_minilm_preview_plan_is_its_real_builds_plan(method):
    """Without training (that is the slow test above): the preview's plan is the one a real build gives."""
    from helpers import prepared

    config = small_config("minilm-l6", method, "bottom-up")
    real = prepared(config).task_model
    expected = plan_stages(real.group_names, trainable_groups(real), "bottom-up")
    pv = preview(config)
    assert (pv.stages, pv.untrained_groups) == (expected.stages, expected.skipped) and len(pv.stages) == 6


def test_groups_with_nothing_to_train_are_no_stage():
    plan = plan_stages(["embeddings", "block_1", "block_2", "head"], {"block_1", "block_2", "head"}, "bottom-up")
    assert plan.stages == [["block_1", "head"], ["block_1", "block_2", "head"]] and plan.skipped == ["embeddings"]
    assert plan.no_effect("lora") is None
    one = plan_stages(["block_1", "block_2", "block_3", "head"], {"block_3", "head"}, "bottom-up")
    assert one.stages == [["block_3", "head"]] and one.skipped == ["block_1", "block_2"]
    assert "only block_3 has LoRA weights" in one.no_effect("lora")
    top = plan_stages(["block_1", "block_2", "block_3", "head"], {"block_3", "head"}, "top-down")
    assert top.stages == [["head"], ["block_3", "head"]] and top.no_effect("lora") is None
    probe = plan_stages(["block_1", "head"], {"head"}, "top-down")
    assert probe.stages == [["head"]] and "nothing below the head" in probe.no_effect("linear")
    assert stage_plan(["block_1", "block_2"], "bottom-up") == [["block_1"], ["block_1", "block_2"]]  # no head


def test_issue_cases_preview_what_the_trainer_runs():
    """The two cases users hit: tiny-bert LoRA (embeddings untrained) and mnist-cnn LoRA (only block_3)."""
    bert = preview(TrainConfig(model="tiny-bert", data="sms-spam", method="lora", hierarchical="bottom-up"))
    assert bert.stages == [["block_1", "head"], ["block_1", "block_2", "head"]]
    assert bert.untrained_groups == ["embeddings"] and bert.staging_no_effect is None
    cnn = preview(TrainConfig(model="mnist-cnn", data="digits", method="lora", hierarchical="bottom-up"))
    assert cnn.stages == [["block_3", "head"]] and cnn.untrained_groups == ["block_1", "block_2"]
    assert "only block_3" in cnn.staging_no_effect
    effects = staging_effects("mnist-cnn", method="lora")
    assert effects["bottom-up"] == cnn.staging_no_effect and effects["top-down"] is None
    assert staging_effects("mnist-cnn", method="full") == {"bottom-up": None, "top-down": None}


@pytest.mark.parametrize("values", [
    dict(model="tiny-bert", data="sms-spam", method="lora", share="tied"),
    dict(model="tiny-bert", data="sms-spam", method="adapter", tie_layers=True),
    dict(model="mnist-cnn", data="digits", method="bitfit"),
    dict(model="mlp", data="diabetes", method="lora", share="vera"),
])
def test_shape_only_preview_counts_what_a_real_build_trains(values):
    """The preview never initialises a weight: its counts must still be the real model's."""
    from helpers import prepared

    config = TrainConfig(**values, max_rows=200)
    pv = preview(config)
    real = prepared(config)
    assert pv.report == real.report
    assert pv.group_names == real.task_model.group_names


# -- the diagrams draw the plan ------------------------------------------------------------------
def test_stage_diagram_greys_groups_with_nothing_to_train():
    import numpy as np

    from workbench import charts

    groups = ["block_1", "block_2", "block_3", "head"]
    fig = charts.stage_diagram(groups, "bottom-up", stages=[["block_3", "head"]], skipped=["block_1", "block_2"])
    z, text = np.array(fig.data[0].z), np.array(fig.data[0].text)
    np.testing.assert_array_equal(z, [[-1], [-1], [1], [1]])
    assert list(text[:, 0]) == ["nothing trains here", "nothing trains here", "train", "train"]
    bert = charts.stage_diagram(["embeddings", "block_1", "block_2", "head"], "top-down", skipped=["embeddings"])
    np.testing.assert_array_equal(np.array(bert.data[0].z), [[-1, -1, -1], [0, 0, 1], [0, 1, 1], [1, 1, 1]])


def test_timeline_marks_groups_the_trainer_never_staged():
    import pandas as pd

    from workbench import charts

    rows = [("r", 0, 0, "trainable/block_1", 1.0), ("r", 0, 0, "trainable/block_2", 0.0),
            ("r", 0, 0, "trainable/head", 1.0), ("r", 5, 0, "trainable/block_2", 1.0), ("r", 9, 0, "train/loss", 1.0)]
    metrics = pd.DataFrame(rows, columns=["run_id", "step", "epoch", "key", "value"]).assign(wall=0.0)
    fig = charts.timeline_figure(metrics, groups=["embeddings", "block_1", "block_2", "head"], total_steps=10)
    traces = {t.name: t for t in fig.data}
    assert list(traces["nothing trains here"].y) == ["embeddings"]
    assert list(traces["frozen"].y) == ["block_1", "block_2", "head"]
    assert "nothing trains here" not in {t.name for t in charts.timeline_figure(metrics, total_steps=10).data}


# -- the Train page offers only staging that changes something -----------------------------------
@pytest.fixture
def app_runs_dir(tmp_path, monkeypatch):
    import streamlit as st

    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(tmp_path / "runs"))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield tmp_path / "runs"
    st.cache_data.clear()


def test_train_page_disables_a_staging_that_changes_nothing(app_runs_dir):
    from test_app import open_page, titled

    at = open_page("pages/train.py")
    at.selectbox(key="train_data").set_value("digits").run()
    assert at.selectbox(key="train_method").value == "lora"
    hier = at.segmented_control(key="train_hier")
    assert list(hier.options) == ["off", "top-down"]  # mnist-cnn: only block_3 has LoRA weights
    assert any("Not offered: bottom-up changes nothing here: only block_3" in c.value for c in at.caption)
    hier.set_value("top-down").run()
    assert not at.exception and not at.error
    grid = titled(at, "Hierarchical fine-tuning: top-down")["data"][0]
    assert grid["y"] == ["block_1", "block_2", "block_3", "head"] and grid["x"] == ["stage 1", "stage 2"]
    assert any("Nothing trains in `block_1`, `block_2`" in c.value for c in at.caption)
    at.selectbox(key="train_method").set_value("full").run()
    assert list(at.segmented_control(key="train_hier").options) == ["off", "bottom-up", "top-down"]
