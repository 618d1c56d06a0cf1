"""Faults: out of memory, a full or read-only disk, crowds of readers, pickles — each contained and explained."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import small_image_config

from workbench.errors import WorkbenchError
from workbench.runs import RunManager, RunStore

ROOT = Path(__file__).resolve().parents[1]


def test_out_of_memory_fails_the_run_with_a_hint(runs_dir, monkeypatch):
    import tensorflow as tf

    from workbench.train import trainer

    def exhausted(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[100000,4096]")

    monkeypatch.setattr(trainer, "training_feed", exhausted)
    manager = RunManager(runs_dir)
    run_id = manager.start(small_image_config())
    assert manager.wait(run_id, timeout=120) == "failed"
    assert "out of memory" in manager.store.get_run(run_id).error and "batch size" in manager.store.get_run(run_id).error


def test_full_disk_is_refused_at_start(runs_dir, monkeypatch):
    import shutil

    from workbench.runs import store as store_module

    manager = RunManager(runs_dir)
    usage = shutil.disk_usage(runs_dir)
    monkeypatch.setattr(store_module.shutil, "disk_usage", lambda path: usage._replace(free=10 * 2**20))
    with pytest.raises(WorkbenchError, match="MiB free"):
        manager.start(small_image_config())
    assert manager.list() == []


def test_read_only_location_is_a_clear_error():
    with pytest.raises(WorkbenchError, match="not writable"):
        RunStore("/proc/workbench-runs")


def test_three_runs_and_ten_readers_lose_nothing(runs_dir):
    manager = RunManager(runs_dir, max_concurrent=3)
    ids = [manager.start(small_image_config(method=m, epochs=3, batch_size=4))
           for m in ("lora", "full", "linear")]
    errors: list[BaseException] = []
    done = threading.Event()

    def read():
        try:
            reader = RunStore(runs_dir)
            while not done.is_set():
                reader.list_runs()
                reader.metrics(ids, keys=["train/loss"])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(10)]
    for t in readers:
        t.start()
    statuses = [manager.wait(i, timeout=300) for i in ids]
    done.set()
    for t in readers:
        t.join()
    assert statuses == ["completed"] * 3 and not errors, errors[:1]
    for run_id in ids:
        steps = manager.store.get_run(run_id).final_metrics["steps"]
        losses = manager.store.metrics(run_id, keys=["train/loss"])
        assert list(losses.step) == list(range(1, steps + 1))


def test_adapter_files_are_never_unpickled(tmp_path):
    from workbench.train.trainer import load_adapter

    evil = tmp_path / "adapter.npz"
    np.savez(evil, **{"head/kernel": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="allow_pickle"):
        load_adapter(None, evil)


def test_server_defaults_are_safe():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["enableXsrfProtection"] is True
    assert 0 < config["server"]["maxUploadSize"] <= 200


def test_write_failures_are_named_for_what_they_are(tmp_path):
    """A full disk is not "out of memory" (TensorFlow calls ENOSPC ResourceExhausted), and each kind has its fix."""
    import errno
    import sqlite3

    import tensorflow as tf

    from workbench.runs.execute import explain
    from workbench.runs.storage import write_problem

    store = RunStore(tmp_path / "runs")
    tensorboard = tf.errors.ResourceExhaustedError(None, None, f"{store.runs_dir}/x/events.out; No space left on device")
    assert "disk is full" in explain(tensorboard, store) and "out of memory" not in explain(tensorboard, store)
    export = OSError(errno.ENOSPC, "No space left on device", str(store.runs_dir / "run" / "model.keras"))
    assert explain(export, store).startswith("the runs directory's disk is full (")
    elsewhere = OSError(errno.ENOSPC, "No space left on device", "/var/cache/thing")
    assert explain(elsewhere, store).startswith("the disk holding /var/cache/thing is full")
    assert "read-only" in explain(OSError(errno.EROFS, "Read-only file system"), store)
    assert "ulimit -f" in explain(OSError(errno.EFBIG, "File too large"), store)
    assert write_problem(sqlite3.OperationalError("attempt to write a readonly database")) == "readonly"
    assert write_problem(ValueError("upload is a file too large for the app")) is None  # user text, not a disk
    assert write_problem(OSError("disk full")) is None  # no errno: not claimed as a disk problem
    assert explain(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating"), store).startswith("out of memory")
