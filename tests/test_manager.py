"""RunManager: background runs, stop within one batch, failures contained, same seed = same curve."""

from __future__ import annotations

import threading
import time

import numpy as np
from conftest import small_image_config

from workbench.config import TrainConfig
from workbench.runs import RunManager


def wait_for_step(manager, run_id, step, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        snap = manager.snapshot(run_id)
        if snap and snap["step"] >= step:
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached step {step}: {manager.store.get_run(run_id)}")


def test_stop_ends_run_within_one_batch(runs_dir):
    manager = RunManager(runs_dir)
    run_id = manager.start(small_image_config(method="full", epochs=200, batch_size=4, limit_per_class=None,
                                              export_model=False))
    wait_for_step(manager, run_id, 3)
    manager.stop(run_id)
    step_at_stop = manager.snapshot(run_id)["step"]
    assert manager.wait(run_id, timeout=60) == "stopped"
    losses = manager.store.metrics(run_id, keys=["train/loss"])
    assert step_at_stop <= len(losses) <= step_at_stop + 1


def test_nan_loss_fails_that_run_with_its_step_and_others_continue(runs_dir):
    manager = RunManager(runs_dir, max_concurrent=2)
    bad = manager.start(TrainConfig(model="mlp", data="diabetes", method="full", lr=1e12, epochs=20, batch_size=8))
    good = manager.start(small_image_config(method="lora", epochs=1))
    assert manager.wait(bad, timeout=120) == "failed"
    record = manager.store.get_run(bad)
    assert record.error_step >= 1 and "loss became" in record.error
    assert manager.wait(good, timeout=120) == "completed"


def test_exception_in_training_fails_only_that_run(runs_dir, monkeypatch):
    manager = RunManager(runs_dir)
    from workbench.train import trainer

    original = trainer.save_artifacts
    monkeypatch.setattr(trainer, "save_artifacts", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    run_id = manager.start(small_image_config(epochs=1))
    assert manager.wait(run_id, timeout=120) == "failed"
    assert "disk full" in manager.store.get_run(run_id).error
    monkeypatch.setattr(trainer, "save_artifacts", original)
    assert manager.wait(manager.start(small_image_config(epochs=1)), timeout=120) == "completed"


def test_same_seed_same_curve_and_queueing(runs_dir):
    manager = RunManager(runs_dir, max_concurrent=1)
    ids = [manager.start(small_image_config(method="lora", epochs=2, seed=3)) for _ in range(2)]
    assert manager.status(ids[1]) == "queued"
    assert [manager.wait(i, timeout=120) for i in ids] == ["completed", "completed"]
    a, b = (manager.store.metrics(i, keys=["train/loss"]).value.to_numpy() for i in ids)
    np.testing.assert_array_equal(a, b)
    other = manager.start(small_image_config(method="lora", epochs=2, seed=4))
    manager.wait(other, timeout=120)
    assert not np.array_equal(a, manager.store.metrics(other, keys=["train/loss"]).value.to_numpy())


def test_two_concurrent_runs_and_readers_no_lock_error(runs_dir):
    manager = RunManager(runs_dir, max_concurrent=2)
    errors: list[BaseException] = []
    done = threading.Event()

    def read():
        from workbench.runs import RunStore

        while not done.is_set():
            try:
                reader = RunStore(runs_dir)
                reader.list_runs()
                reader.metrics(ids)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    ids = [manager.start(small_image_config(method=m, epochs=3, batch_size=4)) for m in ("lora", "full")]
    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    statuses = [manager.wait(i, timeout=180) for i in ids]
    done.set()
    for t in readers:
        t.join()
    assert statuses == ["completed", "completed"] and not errors
    for run_id in ids:
        summary = manager.store.get_run(run_id).final_metrics
        assert len(manager.store.metrics(run_id, keys=["train/loss"])) == summary["steps"]


def test_starting_another_run_does_not_change_a_run_being_prepared(runs_dir):
    """Initial weights come from Python's global RNG: model building is serialised per process."""
    base = small_image_config(method="full", epochs=1)
    manager = RunManager(runs_dir)
    alone = manager.start(base)
    manager.wait(alone, timeout=120)
    crowded = manager.start(base)
    other = manager.start(small_image_config(method="full", hierarchical="bottom-up", stage_steps=4, epochs=2))
    manager.wait(crowded, timeout=120)
    manager.wait(other, timeout=120)  # leave no thread building models behind for later tests
    # Two failed runs would give two equal (empty) curves: all three must have trained.
    assert [manager.status(i) for i in (alone, crowded, other)] == ["completed"] * 3
    a, b = (manager.store.metrics(i, keys=["train/loss"]).value.to_numpy() for i in (alone, crowded))
    assert len(a) > 0
    np.testing.assert_array_equal(a, b)
