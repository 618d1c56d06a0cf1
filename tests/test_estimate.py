"""Duration estimates before launch, from a run store filled with completed runs of known speed."""

from __future__ import annotations

import pytest

from workbench.config import TrainConfig
from workbench.runs import RunStore
from workbench.runs.estimate import calibration, duration_text, estimate_duration

CPU = "CPU: test (tensorflow)"


def add_run(store: RunStore, *, steps: int, fit_s: float, wall_s: float, status: str = "completed",
            device: str = CPU, **config: object) -> str:
    """A finished run as the run manager records it (config, device, final metrics, start and end)."""
    values = {"model": "tiny-bert", "data": "sms-spam", "method": "lora", **config}
    run_id = store.create_run(TrainConfig(**values).to_dict(), "fake", status="running")
    store.update_run(run_id, status=status, device=device, started=1000.0, ended=1000.0 + wall_s,
                     final_metrics={"steps": steps, "fit_s": fit_s, "steps_per_s": steps / fit_s})
    return run_id


def test_no_history_means_no_estimate(store: RunStore) -> None:
    add_run(store, steps=100, fit_s=10, wall_s=15, method="full")  # other method
    add_run(store, steps=100, fit_s=10, wall_s=15, model="minilm-l6")  # other model
    add_run(store, steps=100, fit_s=10, wall_s=15, status="failed")
    add_run(store, steps=100, fit_s=10, wall_s=15, device="GPU: elsewhere")
    assert estimate_duration(TrainConfig(), 100, store, device=CPU) is None


def test_seconds_per_step_and_startup_from_earlier_runs(store: RunStore) -> None:
    # fit_s = 2 s (tracing) + 0.1 s/step; 5 s outside training (data, build, evaluation, saving)
    for steps in (50, 100, 200):
        add_run(store, steps=steps, fit_s=2 + 0.1 * steps, wall_s=7 + 0.1 * steps)
    est = estimate_duration(TrainConfig(), 400, store, device=CPU)
    assert est is not None and est.runs == 3 and est.scaled_from is None
    assert est.per_step_s == pytest.approx(0.1) and est.startup_s == pytest.approx(7)
    assert est.seconds == pytest.approx(47)
    assert est.describe() == "≈ 47s on this machine (from 3 earlier lora runs of tiny-bert)"


def test_one_run_gives_its_average_step_time(store: RunStore) -> None:
    add_run(store, steps=90, fit_s=9, wall_s=12, model="mnist-cnn", data="digits", method="full")
    est = estimate_duration(TrainConfig(model="mnist-cnn", data="digits", method="full"), 600, store,
                            modality="image")
    assert est is not None and est.seconds == pytest.approx(3 + 60)
    assert est.describe() == "≈ 1m 03s on this machine (from 1 earlier full run of mnist-cnn)"


def test_nearest_batch_size_and_length_are_scaled(store: RunStore) -> None:
    add_run(store, steps=100, fit_s=10, wall_s=10, batch_size=16)  # 0.1 s/step at 16 × 64
    add_run(store, steps=100, fit_s=80, wall_s=80, batch_size=128)  # 0.8 s/step at 128 × 64
    near_small = estimate_duration(TrainConfig(batch_size=32), 100, store)
    assert near_small is not None and near_small.per_step_s == pytest.approx(0.2)
    assert near_small.scaled_from == "batch size 16, 64 tokens"
    longer = estimate_duration(TrainConfig(batch_size=128, max_seq_len=128), 100, store)
    assert longer is not None and longer.per_step_s == pytest.approx(1.6)
    exact = estimate_duration(TrainConfig(batch_size=16), 100, store)
    assert exact is not None and exact.per_step_s == pytest.approx(0.1) and exact.scaled_from is None
    images = estimate_duration(TrainConfig(batch_size=32, max_seq_len=128), 100, store, modality="image")
    assert images is not None and images.per_step_s == pytest.approx(0.2)  # length does not count
    assert images.scaled_from == "batch size 16"


def test_calibration_is_cached_until_a_run_completes(store: RunStore) -> None:
    add_run(store, steps=100, fit_s=10, wall_s=12)
    first = calibration(store, "tiny-bert", "lora")
    assert calibration(store, "tiny-bert", "lora") is first
    add_run(store, steps=100, fit_s=30, wall_s=32)
    second = calibration(store, "tiny-bert", "lora")
    assert second is not first and second.runs == 2
    assert estimate_duration(TrainConfig(), 100, store).per_step_s == pytest.approx(0.2)


def test_duration_text() -> None:
    assert [duration_text(s) for s in (4.4, 80, 3725)] == ["4s", "1m 20s", "1h 02m"]
