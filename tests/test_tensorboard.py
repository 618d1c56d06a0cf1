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
