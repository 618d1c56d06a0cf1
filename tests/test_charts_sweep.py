"""Tests for workbench.charts_sweep: assert on figure data (axes, ticks, colours), not pixels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.io as pio

from workbench import charts_sweep


def _frame() -> pd.DataFrame:
    """A sweep_frame of 6 trials: lr × method × rank, one running, one pruned, one failed."""
    return pd.DataFrame({
        "trial": [0, 1, 2, 3, 4, 5],
        "run_id": [f"r{i}" for i in range(6)],
        "state": ["complete", "complete", "pruned", "complete", "running", "failed"],
        "status": ["completed", "completed", "stopped", "completed", "running", "failed"],
        "lr": [1e-4, 1e-3, 1e-2, 1e-4, 1e-3, None],
        "method": ["lora", "dora", "lora", "dora", "lora", "lora"],
        "method_options.rank": [4, 8, 4, 16, 8, 4],
        "hierarchical": ["off", "bottom-up", "off", "off", "off", "off"],
        "value": [0.9, 0.8, 0.5, 0.7, np.nan, np.nan],
        "epochs_done": [2, 2, 1, 2, 0, 0],
    })


def _dims(fig) -> dict[str, dict]:
    return {d.label: d for d in fig.data[0].dimensions}


def test_parallel_coordinates_axes_in_order_with_the_metric_last() -> None:
    fig = charts_sweep.parallel_coordinates(_frame(), ["method", "lr", "method_options.rank"], "val_accuracy")
    labels = [d["label"] for d in fig.data[0].dimensions]
    assert labels == ["method", "lr (log)", "method_options.rank", "val_accuracy"]
    pio.to_json(fig)  # serialisable for the browser


def test_categorical_settings_become_integer_ticks_with_their_labels() -> None:
    dims = _dims(charts_sweep.parallel_coordinates(_frame(), ["method", "hierarchical"], "val_accuracy"))
    method = dims["method"]
    assert list(method["ticktext"]) == ["dora", "lora"] and list(method["tickvals"]) == [0, 1]
    assert list(method["values"]) == [1, 0, 1, 0, 1, 1]
    assert list(dims["hierarchical"]["ticktext"]) == ["bottom-up", "off"]


def test_learning_rate_spanning_decades_is_log10_with_plain_labels_and_a_missing_slot() -> None:
    lr = _dims(charts_sweep.parallel_coordinates(_frame(), ["lr"], "val_accuracy"))["lr (log)"]
    values = np.asarray(lr["values"], dtype=float)
    assert np.allclose(values[:5], [-4, -3, -2, -4, -3])
    assert lr["ticktext"][0] == charts_sweep.MISSING and list(lr["ticktext"][1:]) == ["0.0001", "0.001", "0.01"]
    assert values[5] == lr["tickvals"][0] < -4  # the trial with no LR sits on the "—" tick below the axis
    assert all(math.isfinite(v) for v in values)


def test_random_lr_uses_decade_ticks_and_small_integer_settings_their_values() -> None:
    frame = pd.DataFrame({"trial": range(12), "run_id": [f"r{i}" for i in range(12)], "state": "complete",
                          "lr": np.geomspace(2e-5, 3e-2, 12), "method_options.rank": [2, 4, 8] * 4,
                          "value": np.linspace(0.5, 0.9, 12)})
    dims = _dims(charts_sweep.parallel_coordinates(frame, ["lr", "method_options.rank"], "val_accuracy"))
    assert list(dims["lr (log)"]["ticktext"]) == ["1e-05", "0.0001", "0.001", "0.01", "0.1"]
    assert list(dims["method_options.rank"]["ticktext"]) == ["2", "4", "8"]


def test_missing_metric_values_are_shown_on_a_dash_tick_and_greyed() -> None:
    fig = charts_sweep.parallel_coordinates(_frame(), ["method"], "val_accuracy")
    metric = _dims(fig)["val_accuracy"]
    values = np.asarray(metric["values"], dtype=float)
    assert np.isfinite(values).all() and metric["ticktext"][0] == charts_sweep.MISSING
    color = np.asarray(fig.data[0].line.color, dtype=float)
    assert color[4] == 0.0  # running: light grey
    assert color[2] == color[5] == 0.05  # pruned, failed: grey
    assert color[0] == 1.0 and color[1] > color[3] >= 0.1  # best complete trial brightest


def test_minimized_metric_colours_the_lowest_value_brightest() -> None:
    fig = charts_sweep.parallel_coordinates(_frame(), ["method"], "val_loss")
    color = np.asarray(fig.data[0].line.color, dtype=float)
    assert color[3] == 1.0 and color[0] == 0.1
    fig = charts_sweep.parallel_coordinates(_frame(), ["method"], "score", direction="minimize")
    assert np.asarray(fig.data[0].line.color, dtype=float)[3] == 1.0


def test_nothing_measured_yet_and_empty_frames() -> None:
    frame = _frame().assign(value=np.nan, state="running")
    fig = charts_sweep.parallel_coordinates(frame, ["method"], "val_accuracy")
    assert [d["label"] for d in fig.data[0].dimensions] == ["method", "val_accuracy"]
    assert charts_sweep.parallel_coordinates(pd.DataFrame(), ["lr"], "val_accuracy").layout.annotations
    assert charts_sweep.trial_values(frame, "val_accuracy").layout.annotations  # "No data yet"


def test_trial_values_by_state_with_a_best_so_far_line() -> None:
    fig = charts_sweep.trial_values(_frame(), "val_accuracy")
    names = [t.name for t in fig.data]
    assert set(names) == {"complete", "pruned", "best so far"}
    best = next(t for t in fig.data if t.name == "best so far")
    assert list(best.y) == [0.9, 0.9, 0.9]
    loss = charts_sweep.trial_values(_frame(), "val_loss")
    assert list(next(t for t in loss.data if t.name == "best so far").y) == [0.9, 0.8, 0.7]


def test_planned_values_fix_the_axes_from_the_first_trial() -> None:
    """With the spec's params, an axis spans every planned value while only two trials have run."""
    frame = _frame().head(2)  # lr 1e-4 and 1e-3, methods lora and dora, ranks 4 and 8
    planned = {"lr": [1e-4, 1e-3, 1e-2], "method": ["lora", "dora", "ia3"], "method_options.rank": [4, 8, 16]}
    dims = _dims(charts_sweep.parallel_coordinates(frame, planned, "val_accuracy"))
    assert list(dims["lr (log)"]["ticktext"]) == ["0.0001", "0.001", "0.01"]
    assert list(dims["method"]["ticktext"]) == ["lora", "dora", "ia3"] and list(dims["method"]["values"]) == [0, 1]
    assert list(dims["method_options.rank"]["ticktext"]) == ["4", "8", "16"]
    ranged = _dims(charts_sweep.parallel_coordinates(frame, {"lr": {"low": 1e-5, "high": 1e-1, "log": True}},
                                                     "val_accuracy"))["lr (log)"]
    assert list(ranged["ticktext"]) == ["1e-05", "0.0001", "0.001", "0.01", "0.1"]
    one = _dims(charts_sweep.parallel_coordinates(frame.head(1), ["lr"], "val_accuracy"))
    assert "lr (log)" in one  # a learning rate is on log10 even before a second value exists


def test_a_single_metric_value_gets_a_narrow_axis() -> None:
    frame = _frame().head(2).assign(value=[0.72, np.nan], state=["complete", "running"])
    metric = _dims(charts_sweep.parallel_coordinates(frame, ["method"], "val_accuracy"))["val_accuracy"]
    assert metric["range"][1] < 0.8 and metric["ticktext"][0] == charts_sweep.MISSING
    trend = charts_sweep.trial_values(frame, "val_accuracy")
    assert trend.layout.yaxis.range[1] < 0.8 and list(trend.layout.xaxis.range) == [-0.5, 1.5]
