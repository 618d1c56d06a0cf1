"""The run store survives kill -9: the run shows `interrupted` with its metrics after restart."""

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
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    restarted = RunStore(runs_dir)
    record = restarted.get_run(run_id)
    assert record.status == "interrupted" and "process" in record.error
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
