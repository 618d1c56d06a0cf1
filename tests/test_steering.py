"""Steering a training run: pause, LR, unfreeze/freeze, stop after this epoch, early stopping.

Requests go through the run store (`runs.interventions`) as they do from the app and the CLI; a test
callback sends them at a chosen step, and `Steering` polls every batch here (POLL_S = 0), so each
request applies at the next step boundary: the step it records is the one it was sent after.
"""

from __future__ import annotations

import threading
import time

import keras
import numpy as np
import pytest
from conftest import small_image_config

from workbench.errors import WorkbenchError
from workbench.runs import interventions
from workbench.runs.store import RunStore
from workbench.train import steering
from workbench.train.callbacks import LiveState
from workbench.train.trainer import prepare, train


@pytest.fixture(autouse=True)
def poll_every_batch(monkeypatch):
    monkeypatch.setattr(steering, "POLL_S", 0.0)


class SendAt(keras.callbacks.Callback):
    """At the end of step `step` (1-based), queue requests as the app would."""

    def __init__(self, store, run_id, step, requests) -> None:
        super().__init__()
        self.store, self.run_id, self.at, self.requests, self.done = store, run_id, step, requests, 0

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        if self.done == self.at:
            for kind, args in self.requests:
                interventions.request(self.store, self.run_id, kind, args, source="test")


class Snapshots(keras.callbacks.Callback):
    """The values of `variables` after every step."""

    def __init__(self, variables) -> None:
        super().__init__()
        self.variables, self.values = variables, []

    def on_train_batch_end(self, batch, logs=None):
        self.model  # noqa: B018 - on JAX this writes the training state back into the variables
        self.values.append([keras.ops.convert_to_numpy(v).copy() for v in self.variables])


def _run(tmp_path, config, callbacks_for, *, background=False):
    store = RunStore(tmp_path / "runs")
    prep = prepare(config)
    run_id = store.create_run(config.to_dict(), "steer", status="running")
    extra = callbacks_for(store, run_id, prep)
    live = LiveState(publish=lambda snapshot: store.update_progress(run_id, snapshot))  # as `runs.execute` sets it
    job = lambda: train(prep, store=store, run_id=run_id, live=live, extra_callbacks=extra)  # noqa: E731
    if not background:
        return store, run_id, prep, job(), extra
    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    return store, run_id, prep, thread, extra


def _series(store, run_id, key):
    m = store.metrics(run_id, keys=[key])
    return dict(zip(m["step"], m["value"], strict=True))


def test_pause_holds_the_step_and_an_lr_change_shows_in_the_recorded_lr(tmp_path):
    config = small_image_config(epochs=3)
    store, run_id, _, thread, _ = _run(tmp_path, config, lambda s, r, p: [SendAt(s, r, 5, [("pause", {})])],
                                       background=True)
    deadline = time.time() + 120
    while store.get_run(run_id).status != "paused":
        assert time.time() < deadline and thread.is_alive(), "the run never paused"
        time.sleep(0.05)
    held = store.get_run(run_id).progress["step"]
    rows = len(store.metrics(run_id))
    time.sleep(1.5)
    assert store.get_run(run_id).progress["step"] == held == 5
    assert len(store.metrics(run_id)) == rows, "a paused run recorded more metrics"
    interventions.steer(store, run_id, "lr", {"scale": 0.1}, source="test")  # applied during the pause
    interventions.steer(store, run_id, "unpause", {}, source="test")
    thread.join(180)
    assert store.get_run(run_id).status == "running"  # (the executor writes the end; here train returned)
    lr = _series(store, run_id, "train/lr")
    assert all(lr[s] == pytest.approx(lr[1]) for s in range(1, 6))
    assert all(lr[s] == pytest.approx(0.1 * lr[1]) for s in range(6, max(lr) + 1))
    kinds = [(i.kind, i.step) for i in interventions.history(store, run_id)]
    assert kinds == [("pause", 5), ("lr", 5), ("unpause", 5)]
    assert "for every group" in interventions.history(store, run_id)[1].outcome


def test_unfreeze_now_changes_which_variables_train_from_that_step(tmp_path):
    config = small_image_config(method="full", epochs=4, hierarchical="bottom-up", stage_steps=12)

    def callbacks(store, run_id, prep):
        block_2 = [v for v in prep.task_model.model.trainable_variables if "conv_2" in v.path]
        return [SendAt(store, run_id, 3, [("unfreeze", {})]), Snapshots(block_2)]

    store, run_id, _, _, extra = _run(tmp_path, config, callbacks)
    values = extra[1].values
    assert all(np.array_equal(values[i][0], values[0][0]) for i in range(3)), "block_2 moved before it was unfrozen"
    assert not np.array_equal(values[3][0], values[2][0]), "block_2 did not train after `unfreeze`"
    trainable = store.metrics(run_id, keys=["trainable/block_2"])
    assert trainable.loc[trainable["value"] == 1.0, "step"].min() == 3
    (item,) = interventions.history(store, run_id)
    assert item.step == 3 and "stage 2" in item.outcome


def test_freeze_stops_a_group_and_refusals_are_recorded(tmp_path):
    config = small_image_config(method="lora", epochs=2)

    def callbacks(store, run_id, prep):
        head = [v for v in prep.task_model.model.trainable_variables if v.path.startswith("head")]
        return [SendAt(store, run_id, 4, [("freeze", {"group": "head"}), ("lr", {"scale": 2.0, "group": "head"}),
                                          ("freeze", {"group": "embeddings"})]), Snapshots(head)]

    store, run_id, _, _, extra = _run(tmp_path, config, callbacks)
    values = extra[1].values
    assert not np.array_equal(values[3][0], values[2][0])
    freeze, group_lr, unknown = interventions.history(store, run_id)
    if keras.backend.backend() == "jax":  # one optimizer (no stages, no discriminative LRs): refused there
        assert freeze.refused and "on JAX a run with one optimizer" in freeze.outcome and freeze.step == 4
        assert not np.array_equal(values[-1][0], values[3][0]), "a refused freeze stopped the head"
    else:
        assert all(np.array_equal(values[i][0], values[3][0]) for i in range(4, len(values))), "head trained when frozen"
        assert freeze.outcome == "head frozen from here" and freeze.step == 4
    assert group_lr.refused and "one optimizer for every group" in group_lr.outcome
    assert unknown.refused and "nothing to train" in unknown.outcome


def test_a_group_lr_on_a_grouped_run_is_recorded_per_group(tmp_path):
    config = small_image_config(method="full", epochs=1, discriminative=2.0)
    store, run_id, _, _, _ = _run(tmp_path, config, lambda s, r, p: [SendAt(s, r, 2, [("lr", {"set": 1e-5,
                                                                                               "group": "head"})])])
    head = _series(store, run_id, "lr/head")
    block = _series(store, run_id, "lr/block_1")
    assert head[3] == pytest.approx(1e-5) and head[2] != pytest.approx(1e-5)
    assert block[3] == pytest.approx(block[2])


def test_stop_after_this_epoch_completes_with_a_test_evaluation(tmp_path):
    config = small_image_config(epochs=3)
    store, run_id, _, summary, _ = _run(tmp_path, config, lambda s, r, p: [SendAt(s, r, 2, [("stop_epoch", {})])])
    steps = store.metrics(run_id, keys=["train/loss"])["step"]
    assert steps.max() == 7  # one epoch of 7 steps, then the end
    assert "test_accuracy" in summary
    assert interventions.history(store, run_id)[0].outcome == "training ends at the end of epoch 1"


def test_early_stopping_restores_the_best_epoch(monkeypatch):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    added = []
    monkeypatch.setattr(interventions, "add", lambda *a, **k: added.append(k))
    recorder = type("Recorder", (), {"step": 30})()
    stop = steering.EarlyStop("val/loss", 2, True, model.trainable_variables, None, "x", recorder)
    stop.set_model(model)
    kernel = model.trainable_variables[0]
    for epoch, loss in enumerate([1.0, 0.5, 0.7, 0.6]):
        kernel.assign(np.full((2, 1), float(epoch), "float32"))
        stop.on_epoch_end(epoch, {"val_loss": loss})
    assert model.stop_training and stop.summary() == {"early_stopped_epoch": 4, "best_epoch": 2}
    assert np.all(keras.ops.convert_to_numpy(kernel) == 1.0), "the best epoch's weights were not put back"
    assert "stopped after epoch 4" in added[0]["outcome"]


def test_steering_a_finished_run_or_bad_requests_is_refused(tmp_path, backend):  # (SQLite and PostgreSQL)
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(small_image_config().to_dict(), "x", status="completed")
    with pytest.raises(WorkbenchError, match="is completed: only a queued, running or paused run"):
        interventions.steer(store, run_id, "pause")
    store.update_run(run_id, status="running")
    for kind, args, message in (("lr", {}, "exactly one of set"), ("lr", {"scale": -1}, "must be a number"),
                                ("freeze", {}, "needs the layer group"), ("warp", {}, "Unknown intervention"),
                                ("unpause", {}, "not paused")):
        with pytest.raises(WorkbenchError, match=message):
            interventions.steer(store, run_id, kind, args)
    assert interventions.history(store, run_id) == []


def test_early_stopping_ends_a_run_and_its_test_metrics_are_the_best_epochs(tmp_path):
    from workbench.train.trainer import labels

    config = small_image_config(method="full", epochs=40, early_stopping=2, early_stopping_metric="val/loss")
    store, run_id, prep, summary, _ = _run(tmp_path, config, lambda s, r, p: [])
    val = store.metrics(run_id, keys=["val/loss"])["value"].tolist()
    stopped = summary["early_stopped_epoch"]
    assert stopped < 40 and len(val) == stopped, "early stopping never ended the run"
    best = int(np.argmin(val))
    assert summary["best_epoch"] == best + 1 and stopped == best + 1 + 2  # two epochs without a better val/loss
    assert store.metrics(run_id, keys=["train/loss"])["step"].max() == stopped * 7
    model = prep.task_model.model
    again = model.evaluate(prep.inputs["val"], labels(prep, "val"), batch_size=256, verbose=0, return_dict=True)
    assert again["loss"] == pytest.approx(val[best], rel=1e-5), "the best epoch's weights were not put back"
    (item,) = interventions.history(store, run_id)
    assert item.kind == "early_stop" and item.step == stopped * 7 and f"weights of epoch {best + 1} are back" in item.outcome


def test_the_cli_steers_a_run_that_another_process_trains(tmp_path, capsys, monkeypatch):
    import json
    import os
    import subprocess
    import sys

    from workbench.cli import main
    from workbench.runs.manager import RunManager

    runs = tmp_path / "runs"
    manager = RunManager(runs, executor="thread")
    run_id = manager.start(small_image_config(epochs=60))
    deadline = time.time() + 120
    while (manager.store.get_run(run_id).progress or {}).get("step", 0) < 3:
        assert time.time() < deadline, "the run never started"
        time.sleep(0.05)
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(runs)}
    cli = [sys.executable, "-m", "workbench.cli", "runs"]
    out = subprocess.run([*cli, "steer", run_id[:15], "--lr-scale", "0.5", "--json"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    asked = json.loads(out.stdout)
    assert (asked["kind"], asked["args"], asked["source"]) == ("lr", {"scale": 0.5}, "cli")
    while interventions.history(manager.store, run_id)[0].step is None:
        assert time.time() < deadline, "the run never applied the request"
        time.sleep(0.05)
    subprocess.run([*cli, "steer", run_id, "--stop-after-epoch"], env=env, check=True, capture_output=True, timeout=60)
    assert manager.wait(run_id, 120) == "completed"
    step = interventions.history(manager.store, run_id)[0].step
    lr = _series(manager.store, run_id, "train/lr")
    assert lr[step + 1] == pytest.approx(0.5 * lr[step]) and max(lr) % 7 == 0 and max(lr) < 60 * 7
    shown = subprocess.run([*cli, "show", run_id], env=env, capture_output=True, text=True, timeout=60).stdout
    assert f"#1 LR ×0.5 (cli, step {step}): LR " in shown and "#2 stop after epoch (cli, step" in shown
    capsys.readouterr()
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(runs))
    for args, message in ((["--pause"], "is completed: only a queued, running or paused run"),
                          (["--pause", "--group", "head"], "--group goes with --lr or --lr-scale"),
                          (["--lr-scale", "0"], "must be a number in (0, 100)")):
        assert main(["runs", "steer", run_id, *args]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and message in err, err
    manager.close()
