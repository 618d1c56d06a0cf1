"""Checkpoints and resume: a stopped, killed or paused-out run continues its own curve from its last epoch.

Resume is exact on this CPU: the resumed curve equals an uninterrupted run with the same seed bit for
bit (weights, Adam moments, dropout seed states, the plateau rule, stages and the shuffle orders all
come back), so these tests compare with `==`, not a tolerance.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import pytest
from conftest import small_image_config

from workbench.errors import WorkbenchError
from workbench.runs import interventions
from workbench.runs.manager import RunManager
from workbench.runs.store import RunStore
from workbench.train import checkpoint, steering
from workbench.train.trainer import prepare, train

ROOT = Path(__file__).resolve().parents[1]


class StopAt(keras.callbacks.Callback):
    """Presses Stop at the end of step `step` (and may send requests at another step first)."""

    def __init__(self, event, step, send=None) -> None:
        super().__init__()
        self.event, self.at, self.send, self.done = event, step, send or {}, 0

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        for request in self.send.get(self.done, []):
            request()
        if self.done == self.at:
            self.event.set()


def _train(store, config, *, run_id=None, stop_at=None, send=None):
    prep = prepare(config)
    run_id = run_id or store.create_run(config.to_dict(), "resume", status="running")
    event = threading.Event()
    extra = [StopAt(event, stop_at, send)] if stop_at else []
    summary = train(prep, store=store, run_id=run_id, stop_event=event, extra_callbacks=extra, resume=stop_at is None
                    and checkpoint.describe(store.runs_dir / run_id) is not None)
    return run_id, summary


def _curves(store, run_id):
    m = store.metrics(run_id)
    m = m[~m["key"].isin(["train/examples_per_s"]) & ~m["key"].str.startswith(("change/", "grad/"))]
    return {k: list(zip(g["step"], g["value"], strict=True)) for k, g in m.groupby("key")}


def test_a_resumed_run_continues_the_uninterrupted_curve_exactly(tmp_path):
    store = RunStore(tmp_path / "runs")
    config = small_image_config(method="full", epochs=4, hierarchical="top-down", augment=True,
                                lr_schedule="plateau", plateau_patience=1)
    whole, summary = _train(store, config)
    cut, _ = _train(store, config, stop_at=17)  # in epoch 3 (7 steps an epoch): the checkpoint is epoch 2's
    assert checkpoint.describe(store.runs_dir / cut) == {"step": 14, "epoch": 2}
    assert store.metrics(cut, keys=["train/loss"])["step"].max() == 18  # (Stop ends the batch after the press)
    _, resumed = _train(store, config, run_id=cut)
    assert _curves(store, cut) == _curves(store, whole)
    assert resumed["test_accuracy"] == summary["test_accuracy"]
    (item,) = interventions.history(store, cut)
    assert (item.kind, item.step) == ("resume", 14) and "after epoch 2" in item.outcome
    assert checkpoint.describe(store.runs_dir / cut) is None, "a completed run keeps no checkpoint"


def test_requests_made_after_the_checkpoint_apply_again_on_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(steering, "POLL_S", 0.0)
    store = RunStore(tmp_path / "runs")
    config = small_image_config(epochs=3)
    run_id = store.create_run(config.to_dict(), "replay", status="running")
    lower = lambda: interventions.request(store, run_id, "lr", {"scale": 0.5})  # noqa: E731
    end_epoch = lambda: interventions.request(store, run_id, "stop_epoch")  # noqa: E731
    # Sent after step 7 (the epoch-1 checkpoint's step: applied after it was written) and after step 9.
    _train(store, config, run_id=run_id, stop_at=11, send={7: [lower], 9: [end_epoch]})
    assert [(i.kind, i.step) for i in interventions.history(store, run_id)] == [("lr", 7), ("stop_epoch", 9)]
    _train(store, config, run_id=run_id)
    assert [(i.kind, i.step) for i in interventions.history(store, run_id)] == [
        ("lr", 7), ("stop_epoch", 7), ("resume", 7)]
    lr = dict(store.metrics(run_id, keys=["train/lr"])[["step", "value"]].itertuples(index=False))
    assert lr[8] == pytest.approx(0.5 * lr[7]) and lr[14] == pytest.approx(lr[8])
    assert max(lr) == 14, "the replayed 'stop after this epoch' ends the retrained epoch 2"


def test_resume_refuses_a_completed_run_and_one_without_a_checkpoint(tmp_path):
    manager = RunManager(tmp_path / "runs", executor="thread")
    done = manager.start(small_image_config(epochs=1))
    assert manager.wait(done, 120) == "completed"
    with pytest.raises(WorkbenchError, match="Only a stopped, interrupted or failed run can be resumed; this one is completed"):
        manager.resume(done)
    early = manager.store.create_run(small_image_config().to_dict(), "x", status="stopped")
    with pytest.raises(WorkbenchError, match="no checkpoint"):
        manager.resume(early)


def test_a_paused_run_gives_way_to_a_queued_one_after_the_limit_and_resumes_later(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PAUSE_LIMIT_S", "0.5")
    monkeypatch.setattr(steering, "QUEUE_CHECK_S", 0.2)
    manager = RunManager(tmp_path / "runs", executor="thread", max_concurrent=1)
    first = manager.start(small_image_config(epochs=40))
    deadline = time.time() + 120
    while (manager.store.get_run(first).progress or {}).get("epoch", 0) < 1:  # its epoch-1 checkpoint exists
        assert time.time() < deadline
        time.sleep(0.05)
    manager.pause(first)
    while manager.status(first) != "paused":
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    assert manager.status(first) == "paused", "nobody waits: a paused run stays paused"
    second = manager.start(small_image_config(epochs=1))
    assert manager.wait(first, 60) == "stopped"
    assert "while 1 run(s) waited for its worker" in manager.store.get_run(first).error
    assert manager.wait(second, 120) == "completed"
    manager.resume(first)
    assert manager.wait(first, 300) == "completed"
    assert manager.store.get_run(first).error is None
    steps = manager.store.metrics(first, keys=["train/loss"])["step"]
    assert list(steps) == list(range(1, 40 * 7 + 1)), "the resumed run's curve has a gap or a repeat"


def test_kill_9_then_resume_loses_at_most_one_epoch(tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(runs)}
    flags = ["--model", "mnist-cnn", "--data", "digits", "--method", "lora", "--epochs", "60", "--batch-size", "16",
             "--limit-per-class", "10"]
    process = subprocess.Popen([sys.executable, "-m", "workbench.cli", "train", *flags], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while True:
            assert time.time() < deadline and process.poll() is None, "the run ended before it could be killed"
            ids = [p.name for p in runs.glob("2*") if checkpoint.describe(p) and checkpoint.describe(p)["epoch"] >= 3]
            if ids:
                break
            time.sleep(0.1)
        time.sleep(0.3)  # somewhere inside an epoch
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    (run_id,) = ids
    store = RunStore(runs)  # opening it marks the run interrupted: its process is gone
    record = store.get_run(run_id)
    assert record.status == "interrupted"
    reached = int(store.metrics(run_id, keys=["train/loss"])["step"].max())
    saved = checkpoint.describe(runs / run_id)["step"]
    assert 0 <= reached - saved <= 7, f"a kill lost more than an epoch: step {reached}, checkpoint {saved}"
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "train", "--resume", run_id[:12], "--json"], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1])["status"] == "completed"
    steps = RunStore(runs).metrics(run_id, keys=["train/loss"])["step"]
    assert list(steps) == list(range(1, 60 * 7 + 1))


def test_resume_takes_no_other_flags(tmp_path):
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "train", "--resume", "20260101-000000-abcdef",
                          "--epochs", "3"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "WORKBENCH_RUNS_DIR": str(tmp_path / "runs")})
    assert out.returncode == 2 and "drop --epochs" in out.stderr


def test_of_two_resumes_at_once_exactly_one_claims_the_run(tmp_path):
    """Two tabs (or the app and a CLI) pressing Resume together: one conditional UPDATE decides."""
    from workbench.runs.store import RESUMABLE

    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(small_image_config().to_dict(), "x", status="stopped")
    barrier, results = threading.Barrier(4), []

    def claim():
        barrier.wait()
        results.append(store.claim(run_id, RESUMABLE))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False, False, False, True] and store.get_run(run_id).status == "queued"
