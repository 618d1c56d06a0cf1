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


def test_ids_are_checked_before_touching_paths(store):
    with pytest.raises(WorkbenchError, match="Not a run id"):
        store.run_dir("../../etc")
    run_id = store.create_run({"model": "x"}, "name with / and ..")
    assert store.run_dir(run_id).parent == store.runs_dir
    assert store.resolve_id(run_id[:15]) == run_id


def test_read_only_runs_directory_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # root ignores permissions
        pytest.skip("running as root: permissions are not enforced")
    with pytest.raises(WorkbenchError, match="not writable"):
        RunStore(ro / "runs")
