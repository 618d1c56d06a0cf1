"""The app's executor: runs train in engine worker processes, supervised by the run manager's threads.

One warm pool for the module (a worker takes seconds to import TensorFlow): a run's phases and
progress reach the store, Stop ends it within one batch, and `kill -9` of a worker mid-run leaves
that run `interrupted` with the reason while a fresh worker trains the next run.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import small_image_config

from workbench.runs import RunManager
from workbench.runs.pool import death_reason


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    manager = RunManager(tmp_path_factory.mktemp("workers") / "runs", executor="process")
    yield manager
    manager.close()


def _wait_step(manager, run_id: str, step: int, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        snap = manager.snapshot(run_id) or {}
        if snap.get("step", 0) >= step:
            return snap
        assert manager.status(run_id) in ("queued", "running"), manager.store.get_run(run_id)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached step {step}")


def _busy_worker(manager) -> int:
    pids = [pid for slot, pid in manager.pool.pids().items() if slot.endswith(":busy")]
    assert len(pids) == 1, manager.pool.pids()
    return pids[0]


def test_a_run_trains_in_a_worker_and_reports_its_phases(manager):
    run_id = manager.start(small_image_config(epochs=2))
    assert manager.wait(run_id, timeout=180) == "completed", manager.store.get_run(run_id).error
    record = manager.store.get_run(run_id)
    assert record.final_metrics["steps"] == len(manager.store.metrics(run_id, keys=["train/loss"]))
    phases = [name for name, _ in record.progress["phases"]]
    assert phases == ["loading data", "building the model", "compiling the first step", "training", "evaluating",
                      "explaining", "saving", "done"]
    assert record.progress["step"] == record.final_metrics["steps"]
    assert all(pid != os.getpid() for pid in manager.pool.pids().values())  # not this process


def test_stop_is_recorded_at_once_and_ends_the_run_within_one_batch(manager):
    run_id = manager.start(small_image_config(method="full", epochs=200, batch_size=4, limit_per_class=None,
                                              export_model=False))
    _wait_step(manager, run_id, 5)
    assert manager.stop(run_id)
    requested = manager.store.get_run(run_id).stop_requested
    assert requested is not None  # every page shows "stopping…" from this moment
    assert manager.wait(run_id, timeout=60) == "stopped"
    record = manager.store.get_run(run_id)
    assert record.ended - requested < 5, "a stopped run ends after its current batch"
    assert "test_accuracy" not in record.final_metrics  # stop means stop: no test pass after it


def test_kill_9_of_a_worker_marks_its_run_and_the_next_run_trains(manager):
    run_id = manager.start(small_image_config(method="full", epochs=200, batch_size=4, limit_per_class=None,
                                              export_model=False))
    step = _wait_step(manager, run_id, 5)["step"]
    os.kill(_busy_worker(manager), signal.SIGKILL)
    assert manager.wait(run_id, timeout=30) == "interrupted"
    record = manager.store.get_run(run_id)
    assert "SIGKILL" in record.error and "start the run again" in record.error, record.error
    assert record.error_step >= step
    assert len(manager.store.metrics(run_id, keys=["train/loss"])) >= step  # its curve so far is kept
    after = manager.start(small_image_config(epochs=1))
    assert manager.wait(after, timeout=180) == "completed", manager.store.get_run(after).error


def test_death_reasons_say_what_happened():
    assert "SIGKILL (out of memory, or kill -9)" in death_reason(-9, 0, Path("/x"))
    assert "SIGSEGV" in death_reason(-11, 0, Path("/x"))
    assert "exited with code 3" in death_reason(3, 1, Path("/x"))
