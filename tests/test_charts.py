"""Tests for workbench.charts: assert on figure data, not pixels."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from workbench import charts
from workbench.run_tables import config_diff, metrics_table

STEPS_PER_EPOCH = 20
EPOCHS = 3


def _run_metrics(run_id: str, *, spike_at: int = 33, scale: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """One run: 3 epochs × 20 steps, per-step train rows, per-epoch val rows, a loss spike."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, EPOCHS * STEPS_PER_EPOCH + 1)
    epoch = (steps - 1) // STEPS_PER_EPOCH
    loss = scale * (2.0 / np.sqrt(steps) + 0.05 * rng.random(len(steps)))
    loss[steps == spike_at] = 9.0
    rows = [
        pd.DataFrame({"step": steps, "epoch": epoch, "key": "train/loss", "value": loss}),
        pd.DataFrame({"step": steps, "epoch": epoch, "key": "train/lr", "value": 1e-3 * (1 - steps / 61)}),
        pd.DataFrame({"step": steps, "epoch": epoch, "key": "lr/head", "value": 1e-3}),
        pd.DataFrame({"step": steps, "epoch": epoch, "key": "lr/block_1", "value": 2.6e-4}),
        pd.DataFrame({"step": steps, "epoch": epoch, "key": "train/examples_per_s", "value": 500.0}),
    ]
    ends = np.arange(1, EPOCHS + 1) * STEPS_PER_EPOCH
    ep = np.arange(EPOCHS)
    rows.append(pd.DataFrame({"step": ends, "epoch": ep, "key": "val/loss", "value": [0.9, 0.5, 0.7]}))
    rows.append(pd.DataFrame({"step": ends, "epoch": ep, "key": "val/accuracy", "value": [0.6, 0.8, 0.75]}))
    rows.append(pd.DataFrame({"step": [ends[-1]], "epoch": [EPOCHS - 1], "key": "test/accuracy",
                              "value": [0.74]}))
    # change points: block_1 trainable 0..30 then frozen; embeddings frozen then unfrozen at 40; head always
    tr = [(0, "embeddings", 0.0), (0, "block_1", 1.0), (0, "head", 1.0),
          (30, "block_1", 0.0), (30, "embeddings", 0.0), (30, "head", 1.0), (40, "embeddings", 1.0)]
    rows.append(pd.DataFrame({"step": [s for s, _, _ in tr], "epoch": 0,
                              "key": [f"trainable/{g}" for _, g, _ in tr], "value": [v for *_, v in tr]}))
    m = pd.concat(rows, ignore_index=True)
    m["run_id"] = run_id
    m["wall"] = m["step"] * 0.5
    return m[["run_id", "step", "epoch", "key", "value", "wall"]]


def _runs(ids: list[str], *, configs: list[dict] | None = None, **cols) -> pd.DataFrame:
    n = len(ids)
    base = {"id": ids, "name": [f"run-{i}" for i in ids], "status": "done", "method": "lora",
            "model": "bert-tiny", "dataset": "sst2", "seed": list(range(n)), "batch_size": 32,
            "trainable_params": 1000, "total_params": 100000, "wall_s": 10.0,
            "config": configs or [{"lr": 1e-3, "seed": i} for i in range(n)]}
    base.update(cols)
    return pd.DataFrame(base)


def _trace(fig: go.Figure, name: str) -> go.Scatter:
    return next(t for t in fig.data if t.name == name)


def _is_empty(fig: go.Figure) -> bool:
    return any(a.text == "No data yet" for a in fig.layout.annotations) and not fig.data


def _is_white(fig: go.Figure) -> bool:
    return fig.layout.template.to_plotly_json() == go.layout.Template(pio.templates["plotly_white"]).to_plotly_json()


@pytest.fixture
def metrics() -> pd.DataFrame:
    return pd.concat([_run_metrics("a"), _run_metrics("b", seed=1)], ignore_index=True)


@pytest.mark.parametrize("module", ["charts", "charts_stages", "charts_style", "run_tables"])
def test_module_imports_no_ui_or_ml_framework(module: str) -> None:
    tree = ast.parse((Path(charts.__file__).parent / f"{module}.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"streamlit", "tensorflow", "keras"}


def test_charts_exposes_public_names_only() -> None:
    """What `charts` re-exports (the stage figures) is public, never a helper; run tables come from
    `run_tables` itself, so `charts` does not re-export them."""
    assert all(not n.startswith("_") and hasattr(charts, n) for n in charts.__all__)
    assert {"stage_diagram", "timeline_figure", "trainable_intervals"} <= set(charts.__all__)
    assert not {"config_diff", "metrics_table", "as_dict", "flatten", "run_labels"} & set(charts.__all__)
    tree = ast.parse(Path(charts.__file__).read_text())
    imported = {a.name for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("workbench")
                for a in n.names}
    assert not {n for n in imported if n.startswith("_")}


def test_loss_figure_traces(metrics: pd.DataFrame) -> None:
    fig = charts.loss_figure(metrics)  # two runs given: uses the first only
    raw, sm, val = (_trace(fig, n) for n in ("train loss (raw)", "train loss (smoothed)", "val loss"))
    assert len(raw.x) == len(sm.x) == EPOCHS * STEPS_PER_EPOCH
    assert list(val.x) == [20, 40, 60] and list(val.y) == [0.9, 0.5, 0.7]
    assert list(val.customdata) == [1, 2, 3]  # hover epoch is 1-based
    assert raw.opacity < 1 and raw.line.width < sm.line.width
    assert max(raw.y) == 9.0 and max(sm.y) < 9.0
    assert _is_white(fig) and fig.layout.title.text == "Loss" and fig.layout.xaxis.title.text == "step"


def test_loss_figure_without_smoothing_has_single_train_trace(metrics: pd.DataFrame) -> None:
    fig = charts.loss_figure(metrics, smoothing=0.0, title="x")
    assert [t.name for t in fig.data] == ["train loss", "val loss"]


def test_loss_figure_downsamples_long_runs_but_keeps_spike() -> None:
    n = 50_000
    steps = np.arange(1, n + 1)
    y = np.exp(-steps / 10_000)
    y[31_337] = 50.0
    m = pd.DataFrame({"run_id": "r", "step": steps, "epoch": 0, "key": "train/loss", "value": y, "wall": 0.0})
    raw = _trace(charts.loss_figure(m, max_points=1000), "train loss (raw)")
    assert len(raw.x) <= 1000 and 50.0 in raw.y and 31_338 in raw.x


def test_downsample_keeps_extremes_and_limit() -> None:
    rng = np.random.default_rng(3)
    x = np.arange(10_000)
    y = rng.normal(size=x.size)
    y[1234], y[8765] = 40.0, -40.0
    xs, ys = charts.downsample(x, y, max_points=500)
    assert len(xs) <= 500 and ys.max() == 40.0 and ys.min() == -40.0
    assert np.all(np.diff(xs) > 0) and xs[0] == 0 and xs[-1] == 9999
    np.testing.assert_array_equal(ys, y[xs])  # pairs stay aligned
    small_x, small_y = charts.downsample(x[:100], y[:100], max_points=500)
    np.testing.assert_array_equal(small_y, y[:100])
    xs, ys = charts.downsample(np.array([3, 1, 2]), np.array([30.0, 10.0, 20.0]))
    assert list(xs) == [1, 2, 3] and list(ys) == [10.0, 20.0, 30.0]


def test_smooth_matches_tensorboard() -> None:
    v = np.array([1.0, 5.0, np.nan, 2.0, 8.0, 3.0])
    np.testing.assert_array_equal(charts.smooth(v, 0.0), v)
    w, last, n, ref = 0.6, 0.0, 0, []
    for x in v:  # TensorBoard's reference loop
        if not np.isfinite(x):
            ref.append(x)
            continue
        last, n = last * w + (1 - w) * x, n + 1
        ref.append(last / (1 - w**n))
    np.testing.assert_allclose(charts.smooth(v, w), ref)
    np.testing.assert_allclose(charts.smooth(np.full(7, 2.5), 0.9), 2.5)
    with pytest.raises(ValueError):
        charts.smooth(v, 1.0)


def test_timeline_reconstructs_intervals(metrics: pd.DataFrame) -> None:
    iv = charts.trainable_intervals(metrics)
    got = {(r.group, r.start, r.end) for r in iv.itertuples()}
    assert got == {("block_1", 0, 30), ("head", 0, 60), ("embeddings", 40, 60)}
    fig = charts.timeline_figure(metrics, total_steps=100)
    bar = _trace(fig, "trainable")
    bars = {(g, b, b + w) for g, b, w in zip(bar.y, bar.base, bar.x, strict=True)}
    assert bars == {("block_1", 0, 30), ("head", 0, 100), ("embeddings", 40, 100)}
    assert list(fig.layout.yaxis.categoryarray) == ["embeddings", "block_1", "head"]  # bottom → top
    assert list(_trace(fig, "frozen").x) == [100] * 3
    assert len(fig.layout.shapes) == EPOCHS  # epoch-end markers
    custom = charts.timeline_figure(metrics, groups=["block_1", "head"])
    assert set(_trace(custom, "trainable").y) == {"block_1", "head"}


def test_timeline_of_a_tied_run_shows_dropped_blocks_as_tied() -> None:
    """tie_layers: block_2 left the model (block_1 runs at its depth), so it is no "nothing trains here" row."""
    tr = [(0, "block_1", 0.0), (0, "head", 1.0), (5, "block_1", 1.0)]  # top-down LoRA on a tied tiny-bert
    m = pd.DataFrame({"run_id": "t", "step": [s for s, _, _ in tr], "epoch": 0,
                      "key": [f"trainable/{g}" for _, g, _ in tr], "value": [v for *_, v in tr]})
    card_groups = ["embeddings", "block_1", "block_2", "head"]  # what the Runs page passes: the card's groups
    plain = charts.timeline_figure(m, card_groups, 10)  # positional call: the old signature still works
    assert list(_trace(plain, "nothing trains here").y) == ["embeddings", "block_2"]
    assert "tied to block_1" not in {t.name for t in plain.data}
    fig = charts.timeline_figure(m, groups=card_groups, total_steps=10, tied=True)
    assert list(_trace(fig, "tied to block_1").y) == ["block_2"]
    assert list(_trace(fig, "nothing trains here").y) == ["embeddings"]  # under LoRA: really nothing
    assert list(_trace(fig, "frozen").y) == ["block_1", "head"]
    bar = _trace(fig, "trainable")
    assert {(g, b, b + w) for g, b, w in zip(bar.y, bar.base, bar.x, strict=True)} == {("block_1", 5, 10),
                                                                                         ("head", 0, 10)}
    assert list(fig.layout.yaxis.categoryarray) == card_groups
    recorded = pd.concat([m, m.assign(key="trainable/block_2")], ignore_index=True)  # rows win over the flag
    assert "tied to block_1" not in {t.name for t in charts.timeline_figure(recorded, card_groups, 10, tied=True).data}


def test_seed_group_label_of_engine_names() -> None:
    """Engine names separate their parts with " · " and end with the seed: the label drops " · sN"."""
    stem = "lora r8 · mnist-cnn/digits"
    assert charts._group_label([f"{stem} · s{i}" for i in range(3)]) == f"{stem} (3 seeds)"
    assert charts._group_label([f"{stem} · s{i}" for i in (10, 11)]) == f"{stem} (2 seeds)"  # common "· s1"
    assert charts._group_label(["lr=1e-3 seed=1", "lr=1e-3 seed=2"]) == "lr=1e-3 (2 seeds)"
    assert charts._group_label(["x1", "x2"]) == "x1 (2 seeds)"  # no seed marker: the short prefix is not used
    m = pd.concat([_run_metrics(r, seed=i) for i, r in enumerate("xyz")], ignore_index=True)
    runs = _runs(["x", "y", "z"], name=[f"{stem} · s{i}" for i in range(3)])
    fig = charts.compare_figure(m, runs, smoothing=0.0)
    assert [t.name for t in fig.data if t.showlegend is not False] == [f"{stem} (3 seeds)"]


def test_compare_seed_runs_collapse_to_band() -> None:
    m = pd.concat([_run_metrics(r, seed=i) for i, r in enumerate("xyz")], ignore_index=True)
    runs = _runs(["x", "y", "z"], name=["lora-r8-seed0", "lora-r8-seed1", "lora-r8-seed2"])
    fig = charts.compare_figure(m, runs, smoothing=0.0)
    assert [t.name for t in fig.data if t.showlegend is not False] == ["lora-r8 (3 seeds)"]
    assert len(fig.data) == 3 and any(t.fill == "tonexty" for t in fig.data)
    lo, hi, mean = fig.data
    train = m[m["key"] == "train/loss"].pivot(index="step", columns="run_id", values="value")
    np.testing.assert_allclose(mean.y, train.mean(axis=1).to_numpy())
    np.testing.assert_allclose(lo.y, train.min(axis=1).to_numpy())
    np.testing.assert_allclose(hi.y, train.max(axis=1).to_numpy())
    std_lo, std_hi, _ = charts.compare_figure(m, runs, smoothing=0.0, band="std").data
    np.testing.assert_allclose(std_lo.y, (train.mean(axis=1) - train.std(axis=1)).to_numpy())
    np.testing.assert_allclose(std_hi.y, (train.mean(axis=1) + train.std(axis=1)).to_numpy())
    assert len(charts.compare_figure(m, runs, band_by_seed=False).data) == 3
    same_names = _runs(["x", "y"], name=["dup", "dup"], configs=[{"lr": 1}, {"lr": 2}])
    assert [t.name for t in charts.compare_figure(m, same_names).data] == ["dup (x)", "dup (y)"]
    diff_cfg = _runs(["x", "y", "z"], configs=[{"lr": v, "seed": 0} for v in (1e-3, 1e-4, 1e-5)])
    assert [t.name for t in charts.compare_figure(m, diff_cfg).data] == ["run-x", "run-y", "run-z"]
    other_model = _runs(["x", "y", "z"], model=["bert", "bert", "gpt"])  # same config, other model
    assert [t.name for t in charts.compare_figure(m, other_model).data if t.showlegend is not False] == [
        "run (2 seeds)", "run-z"]


def test_compare_x_units(metrics: pd.DataFrame) -> None:
    runs = _runs(["a", "b"], configs=[{"lr": 1e-3}, {"lr": 1e-4}], batch_size=[16, 32])
    fig = charts.compare_figure(metrics, runs, x="examples", smoothing=0.0)
    a, b = _trace(fig, "run-a"), _trace(fig, "run-b")
    assert a.x[0] == 16 and a.x[-1] == 60 * 16 and b.x[-1] == 60 * 32
    assert fig.layout.xaxis.title.text == "examples seen"
    ep = _trace(charts.compare_figure(metrics, runs, x="epoch"), "run-a")
    assert ep.x[0] == pytest.approx(1 / 20) and ep.x[19] == pytest.approx(1.0) and ep.x[-1] == pytest.approx(3.0)
    val = _trace(charts.compare_figure(metrics, runs, key="val/loss", x="epoch"), "run-a")
    assert list(val.x) == [1.0, 2.0, 3.0] and list(val.y) == [0.9, 0.5, 0.7]  # per-epoch keys: unsmoothed
    wall = _trace(charts.compare_figure(metrics, runs, x="wall"), "run-a")
    assert wall.x[-1] == 30.0
    with pytest.raises(ValueError):
        charts.compare_figure(metrics, runs, x="bogus")


def test_config_diff_only_differing_keys() -> None:
    runs = _runs(["a", "b", "c"], configs=[
        {"lr": 1e-3, "seed": 0, "peft": {"r": 8, "alpha": 16}, "epochs": 3},
        {"lr": 1e-3, "seed": 1, "peft": {"r": 16, "alpha": 16}, "epochs": 3},
        {"lr": 1e-3, "seed": 2, "peft": {"r": 8, "alpha": 16}, "epochs": 3, "warmup": 0.1},
    ])
    d = config_diff(runs)
    assert list(d.columns) == ["seed", "peft.r", "warmup"]
    assert list(d.index) == ["run-a", "run-b", "run-c"]
    assert d.loc["run-b", "peft.r"] == 16 and pd.isna(d.loc["run-a", "warmup"])
    assert config_diff(runs.iloc[:1]).columns.empty
    assert config_diff(pd.DataFrame()).empty
    steered = config_diff(runs, {runs["id"].iloc[1]: "LR ×0.1 @ 130"})  # what was done to a run joins its settings
    assert list(steered.columns) == ["seed", "peft.r", "warmup", "interventions"]
    assert steered.loc["run-b", "interventions"] == "LR ×0.1 @ 130" and pd.isna(steered.loc["run-a", "interventions"])


def test_intervention_marks_name_their_run() -> None:
    from workbench import charts_events
    from workbench.runs.interventions import Intervention

    items = [Intervention("r1", 1, 0.0, "lr", {"scale": 0.1}, "app", 130, 1.0, "LR 0.001 → 0.0001"),
             Intervention("r2", 1, 0.0, "lr", {"set": 1e-4}, "app", 40, 1.0, "refused: one optimizer"),
             Intervention("r2", 2, 0.0, "unfreeze", {}, "cli", 50, 1.0, "stage 2 of 3 now")]
    assert charts_events.named_marks(items, {"r1": "lora", "r2": "full"}) == (
        (130, "lora: LR ×0.1"), (50, "full: unfreeze next"))  # a refused request changed nothing: no mark


def test_metrics_table_values(metrics: pd.DataFrame) -> None:
    runs = _runs(["a", "b"], trainable_params=[1000, 5000], wall_s=[12.0, None])
    t = metrics_table(runs, metrics)
    assert list(t.index) == ["run-a", "run-b"]
    assert t.loc["run-a", "best_val_loss"] == 0.5 and t.loc["run-a", "final_val_loss"] == 0.7
    assert t.loc["run-a", "final_val_accuracy"] == 0.75 and t.loc["run-a", "test_accuracy"] == 0.74
    last = metrics[(metrics.run_id == "a") & (metrics.key == "train/loss")].sort_values("step")["value"]
    assert t.loc["run-a", "final_train_loss"] == pytest.approx(last.iloc[-3:].mean())  # 5% of 60 steps
    assert t.loc["run-b", "trainable_pct"] == pytest.approx(5.0)
    assert t.loc["run-a", "wall_s"] == 12.0 and t.loc["run-b", "wall_s"] == 30.0  # falls back to last wall
    assert list(t.columns[-3:]) == ["trainable_params", "trainable_pct", "wall_s"]


def test_efficiency_marker_sizes_follow_wall_time() -> None:
    table = pd.DataFrame({"name": ["lora", "full", "head"], "method": ["lora", "full", "lora"],
                          "trainable_params": [1e4, 1e6, 1e3], "test_accuracy": [0.8, 0.85, 0.7],
                          "wall_s": [30.0, 300.0, 10.0]})
    fig = charts.efficiency_figure(table, metric="test_accuracy")
    pts = sorted((s, n) for t in fig.data for s, n in zip(t.marker.size, t.text, strict=True))
    assert [n for _, n in pts] == ["head", "lora", "full"]
    assert fig.layout.xaxis.type == "log" and {t.name for t in fig.data} == {"lora", "full"}
    assert _is_empty(charts.efficiency_figure(table, metric="missing"))


def test_stage_diagram_schedules() -> None:
    groups = ["embeddings", "block_1", "block_2", "head"]
    bu = np.array(charts.stage_diagram(groups, "bottom-up").data[0].z)
    np.testing.assert_array_equal(bu, [[1, 1, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]])
    td = np.array(charts.stage_diagram(groups, "top-down").data[0].z)
    np.testing.assert_array_equal(td, [[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]])
    off = np.array(charts.stage_diagram(groups, "off", n_stages=2).data[0].z)
    assert off.shape == (4, 2) and off.all()
    assert list(charts.stage_diagram(groups, "ulmfit").data[0].y) == groups
    with pytest.raises(ValueError):
        charts.stage_diagram(groups, "sideways")


def test_small_figures(metrics: pd.DataFrame) -> None:
    pb = charts.params_bar(1_000, 200_000, label="LoRA")
    assert "0.50% trainable (1,000 of 200,000)" in pb.layout.annotations[0].text and [t.x[0] for t in pb.data] == [1000, 199000]
    sf = charts.schedule_figure({"cosine": [1.0, 0.5, 0.0], "constant": [1.0] * 4})
    assert [len(t.x) for t in sf.data] == [3, 4] and sf.data[0].x[0] == 1
    lr = charts.lr_figure(metrics, log_y=True)
    assert [t.name for t in lr.data] == ["lr (global)", "block_1", "head"] and lr.layout.yaxis.type == "log"
    assert charts.throughput_figure(metrics).data[0].y[0] == 500.0


EMPTY = pd.DataFrame(columns=["run_id", "step", "epoch", "key", "value", "wall"])


@pytest.mark.parametrize("make", [
    lambda: charts.loss_figure(EMPTY), lambda: charts.loss_figure(pd.DataFrame()),
    lambda: charts.lr_figure(EMPTY), lambda: charts.timeline_figure(EMPTY),
    lambda: charts.throughput_figure(EMPTY), lambda: charts.compare_figure(EMPTY, _runs(["a"])),
    lambda: charts.compare_figure(_run_metrics("a"), pd.DataFrame()),
    lambda: charts.efficiency_figure(pd.DataFrame(), metric="test_accuracy"),
    lambda: charts.schedule_figure({}), lambda: charts.params_bar(0, 0), lambda: charts.stage_diagram([], "off"),
])
def test_empty_inputs_say_no_data(make) -> None:
    fig = make()
    assert _is_empty(fig) and _is_white(fig) and fig.layout.title.text


def test_empty_tables() -> None:
    assert metrics_table(pd.DataFrame(), EMPTY).empty
    t = metrics_table(_runs(["a"]), EMPTY)
    assert list(t.index) == ["run-a"] and t.loc["run-a", "trainable_pct"] == pytest.approx(1.0)
    assert charts.trainable_intervals(EMPTY).empty
