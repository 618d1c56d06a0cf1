"""TensorBoard sees every run: the event files hold the recorded scalars."""

from __future__ import annotations

from conftest import small_image_config
from helpers import prepared, train_here


def test_event_files_hold_the_loss_curve(store):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_id, summary = train_here(prepared(small_image_config(epochs=2)), store)
    events = EventAccumulator(str(store.run_dir(run_id) / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/loss", "test/accuracy"} <= tags
    assert len(events.Scalars("train/loss")) == summary["steps"]


def test_a_failed_event_write_surfaces_at_the_next_write_without_a_thread_traceback(tmp_path, monkeypatch):
    """A full disk in TensorBoard's writer thread: no thread traceback (Python's excepthook prints
    it to stderr), and the next write raises, so the Recorder ends the run with its one-line reason."""
    import errno
    import threading
    import time

    import pytest

    from workbench.train.tensorboard import TensorBoardWriter

    reported: list = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.thread))
    writer = TensorBoardWriter(tmp_path / "tb")
    thread = writer._writer._async_writer._worker

    def full(_data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    thread._record_writer.write = full
    writer.write([("run", 1, 0, "train/loss", 0.5, 0.0)])
    deadline = time.time() + 10
    while thread.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    assert not thread.is_alive()
    with pytest.raises(OSError, match="No space left"):
        writer.write([("run", 2, 0, "train/loss", 0.4, 0.0)])
    assert reported == []
    threading.excepthook(threading.ExceptHookArgs((RuntimeError, RuntimeError("x"), None, threading.current_thread())))
    assert reported == [threading.current_thread()]  # every other thread's failure is still reported
