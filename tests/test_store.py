"""The run store survives kill -9: the run shows `interrupted` with its metrics after restart, and its
wall time ends at its last record, not when the store was next opened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from workbench.errors import WorkbenchError
from workbench.runs import RunStore

SCRIPT = """
import sys
from workbench.config import TrainConfig
from workbench.runs import RunManager
manager = RunManager(sys.argv[1])
run_id = manager.start(TrainConfig(model="mnist-cnn", data="mnist-5k", method="full", epochs=100, batch_size=8,
                                   export_model=False))
print(run_id, flush=True)
manager.wait(run_id)
"""


def test_kill_9_leaves_interrupted_run_with_metrics(runs_dir):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(runs_dir)], stdout=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().strip()
        store = RunStore(runs_dir)
        deadline = time.time() + 120
        while len(store.metrics(run_id, keys=["train/loss"])) < 20:
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.2)
        seen = len(store.metrics(run_id, keys=["train/loss"]))
        time.sleep(1.2)  # one flush interval (<= 1 s) later, everything seen so far is on disk
        flushed = len(store.metrics(run_id, keys=["train/loss"]))
        assert store.get_run(run_id).status == "running"
    finally:
        killed = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(1.0)
    restarted = RunStore(runs_dir)
    record = restarted.get_run(run_id)
    assert record.status == "interrupted" and "process" in record.error
    assert record.started < record.ended <= killed  # its last record, not the moment of recovery
    kept = restarted.metrics(run_id, keys=["train/loss"])
    assert len(kept) >= flushed > seen - 1
    assert list(kept.step) == list(range(1, len(kept) + 1))

    # ... and the user starts a new run from the interrupted run's config.
    from workbench.cli import main

    assert main(["--runs-dir", str(runs_dir), "train", "--from-run", run_id, "--epochs", "1", "--max-rows", "300"]) == 0
    newest = restarted.list_runs()[0]
    assert newest.id != run_id and newest.status == "completed" and newest.config["model"] == "mnist-cnn"


def test_ids_are_checked_before_touching_paths(store):
    with pytest.raises(WorkbenchError, match="Not a run id"):
        store.run_dir("../../etc")
    run_id = store.create_run({"model": "x"}, "name with / and ..")
    assert store.run_dir(run_id).parent == store.runs_dir
    assert store.resolve_id(run_id[:15]) == run_id


def _orphan(store: RunStore, run_id: str) -> None:
    """Make `run_id`'s owner a process that no longer exists (this pid, another start time: a reused pid)."""
    with store._write() as conn:
        conn.execute("UPDATE runs SET owner_start = 'gone' WHERE id = ?", (run_id,))


def test_an_interrupted_run_ends_at_its_last_record_not_at_recovery(store):
    t0 = time.time() - 3600  # the process died an hour before the store was opened again
    by_metrics = store.create_run({"model": "x"}, "last sign: a metric row")
    store.update_run(by_metrics, status="running", started=t0)
    store.update_progress(by_metrics, {"step": 30, "started": t0 + 2.0, "written": t0 + 9.0})
    store.append_metrics([(by_metrics, s, 0, "train/loss", 1.0, 0.5 * s) for s in range(1, 31)])  # last: +2+15 s
    by_progress = store.create_run({"model": "x"}, "last sign: a progress snapshot")
    store.update_run(by_progress, status="running", started=t0)
    store.update_progress(by_progress, {"step": 4, "started": t0 + 2.0, "written": t0 + 40.0})
    store.append_metrics([(by_progress, s, 0, "train/loss", 1.0, 1.0 * s) for s in range(1, 5)])
    never_started = store.create_run({"model": "x"}, "queued when its process died", status="queued")
    for run_id in (by_metrics, by_progress, never_started):
        _orphan(store, run_id)

    reopened = RunStore(store.runs_dir)
    a, b, c = (reopened.get_run(i) for i in (by_metrics, by_progress, never_started))
    assert {a.status, b.status, c.status} == {"interrupted"}
    assert a.ended == pytest.approx(t0 + 17.0) and a.wall_s == pytest.approx(17.0)
    assert b.ended == pytest.approx(t0 + 40.0) and b.wall_s == pytest.approx(40.0)
    assert a.error_step == 30 and b.error_step == 4
    assert c.wall_s is None and c.ended == pytest.approx(c.created)
    assert "nearly full" not in a.error  # this disk has room: no hint about space


def test_a_run_orphaned_on_a_nearly_full_disk_says_so(store, monkeypatch):
    import shutil

    run_id = store.create_run({"model": "x"}, "died on a full disk", status="running")
    _orphan(store, run_id)
    usage = shutil.disk_usage(store.runs_dir)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=2**20))
    error = RunStore(store.runs_dir).get_run(run_id).error
    assert "process running it ended" in error and "nearly full (1.0 MiB free" in error and "--runs-dir" in error
