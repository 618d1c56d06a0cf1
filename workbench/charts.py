"""Plotly charts shared by the Streamlit app and the notebooks: the one import both front ends use.

Pure functions: pandas frames in, ``go.Figure`` (or a frame) out, so a chart looks the same in
both front ends and is testable without a browser. Long curves are smoothed on full data, then
decimated *before* traces are built: serialising 50k-point traces is what makes a page slow.
Empty input yields a "No data yet" figure, because a live run has no rows for its first seconds.

This module holds the curves (loss, lr, throughput, compare, efficiency, schedule, params). The
stage figures live in `charts_stages` and are re-exported here (see ``__all__``), so callers write
``charts.stage_diagram(...)``; the shared look lives in `charts_style`. The run tables (frames, not
figures: ``config_diff``, ``metrics_table``) live in `run_tables`, which callers import directly;
this module uses a few of its helpers itself but does not re-export them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative

from workbench.charts_stages import stage_diagram, timeline_figure, trainable_intervals
from workbench.charts_style import (
    HEIGHT,
    OFF_COLOR,
    ON_COLOR,
    TEMPLATE,
    TRAIN_COLOR,
    VAL_COLOR,
    empty_figure,
    first_run,
    group_order,
    key_rows,
    style_figure,
    usable,
)
from workbench.run_tables import as_dict, run_labels
from workbench.seed_groups import group_label as _group_label  # one definition of "differ only in seed"
from workbench.seed_groups import seed_key as _seed_key

_X_TITLES = {"step": "step", "epoch": "epoch", "examples": "examples seen", "wall": "wall time (s)"}


def _m4_indices(y: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted indices of first/min/max/last per equal-count bucket (at most ``max_points``)."""
    n, nb, y = len(y), max(1, max_points // 4), np.asarray(y, dtype=float)
    if n <= max_points:
        return np.arange(n)
    edges = np.linspace(0, n, nb + 1).astype(np.int64)
    bucket = np.repeat(np.arange(nb), np.diff(edges))
    lo = np.lexsort((np.where(np.isnan(y), np.inf, y), bucket))[edges[:-1]]
    hi = np.lexsort((np.where(np.isnan(y), -np.inf, y), bucket))[edges[1:] - 1]
    return np.unique(np.concatenate([edges[:-1], lo, hi, edges[1:] - 1]))


def downsample(x: np.ndarray, y: np.ndarray, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """M4-style decimation: per bucket keep the first, min, max and last point, in x order.

    Unlike striding, this keeps every loss spike and the global extrema, which is what a user
    looks for in a 50k-step curve. A no-op (beyond sorting by x) under ``max_points`` points.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape or max_points < 4:
        raise ValueError("x and y must have equal length and max_points must be >= 4")
    if len(x) > 1 and np.any(np.diff(x) < 0):
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
    idx = _m4_indices(y, max_points)
    return x[idx], y[idx]


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased EMA (``weight`` in [0, 1)); non-finite points pass through untouched.

    Debiasing stops the first points being dragged toward zero. It equals pandas'
    ``ewm(adjust=True)``, which runs in C rather than a Python loop.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError("weight must be in [0, 1)")
    v = np.asarray(values, dtype=float)
    if weight == 0.0 or v.size == 0:
        return v.copy()
    finite = np.isfinite(v)
    ewm = pd.Series(np.where(finite, v, np.nan)).ewm(alpha=1.0 - weight, adjust=True, ignore_na=True)
    out = ewm.mean().to_numpy(copy=True)
    out[~finite] = v[~finite]
    return out


def loss_figure(metrics: pd.DataFrame, *, smoothing: float = 0.6, title: str | None = None,
                max_points: int = 2000) -> go.Figure:
    """Train loss per step (faint raw + smoothed) and validation loss per epoch on one axis.

    Hover shows the 1-based epoch (store ``epoch`` + 1), matching the fractional-epoch axis of
    ``compare_figure`` where the first epoch ends at 1.0.
    """
    title, m = title or "Loss", first_run(metrics)
    train, val = (key_rows(m, k) for k in ("train/loss", "val/loss")) if m is not None else (None, None)
    if m is None or (train.empty and val.empty):
        return empty_figure(title)
    fig, hover = go.Figure(), "step %{x}<br>epoch %{customdata}<br>loss %{y:.4g}"
    if not train.empty:
        st, y, ep = train["step"].to_numpy(), train["value"].to_numpy(float), train["epoch"].to_numpy() + 1
        thin, thick = dict(color=TRAIN_COLOR, width=1), dict(color=TRAIN_COLOR, width=2)
        curves = [(y, dict(name="train loss", line=thick))]
        if smoothing > 0:
            curves = [(y, dict(name="train loss (raw)", opacity=0.3, line=thin)),
                      (smooth(y, smoothing), dict(name="train loss (smoothed)", line=thick))]
        for ys, kw in curves:
            i = _m4_indices(ys, max_points)
            fig.add_trace(go.Scatter(x=st[i], y=ys[i], customdata=ep[i], mode="lines", hovertemplate=hover, **kw))
    if not val.empty:
        fig.add_trace(go.Scatter(x=val["step"], y=val["value"], customdata=val["epoch"] + 1, hovertemplate=hover,
                                 mode="lines+markers", name="val loss", line=dict(color=VAL_COLOR, width=2)))
    return style_figure(fig, title, "step", "loss")


def _lines(m: pd.DataFrame, keys: dict[str, str], max_points: int) -> list[go.Scatter]:
    """Downsampled per-step lines, one per ``key -> legend name`` present in the run."""
    out = []
    for key, name in keys.items():
        if not (r := key_rows(m, key)).empty:
            x, y = downsample(r["step"].to_numpy(), r["value"].to_numpy(float), max_points)
            out.append(go.Scatter(x=x, y=y, mode="lines", name=name))
    return out


def lr_figure(metrics: pd.DataFrame, *, log_y: bool = False, max_points: int = 2000) -> go.Figure:
    """Learning rate per step: the global ``train/lr`` (dashed) and each discriminative ``lr/<group>``."""
    title, m = "Learning rate", first_run(metrics)
    groups = [] if m is None else sorted((k for k in m["key"].unique() if k.startswith("lr/")),
                                         key=lambda k: group_order(k[3:]))
    fig = go.Figure(_lines(m, {"train/lr": "lr (global)"} | {k: k[3:] for k in groups}, max_points)
                    if m is not None else [])
    if not fig.data:
        return empty_figure(title)
    if groups:  # the global lr is then only the reference the group multipliers apply to
        fig.update_traces(line_dash="dash", selector=dict(name="lr (global)"))
    fig = style_figure(fig, title, "step", "learning rate", legend_right=len(fig.data) > 6)
    return fig.update_yaxes(type="log" if log_y else "linear", exponentformat="e",
                            rangemode="normal" if log_y else "tozero")


def throughput_figure(metrics: pd.DataFrame, *, max_points: int = 2000) -> go.Figure:
    """Examples/s per step with a dotted median, so warm-up and stalls stand out."""
    m = first_run(metrics)
    lines = [] if m is None else _lines(m, {"train/examples_per_s": "examples/s"}, max_points)
    if not lines:
        return empty_figure("Throughput")
    med = float(np.nanmedian(key_rows(m, "train/examples_per_s")["value"]))
    fig = go.Figure(lines).add_hline(y=med, line=dict(dash="dot", color="#666"),
                                     annotation_text=f"median {med:,.0f}/s")
    return style_figure(fig, "Throughput", "step", "examples / s")


def _x_values(d: pd.DataFrame, metrics: pd.DataFrame, runs: pd.DataFrame, x: str, key: str) -> np.ndarray:
    """x for each row of ``d`` (sorted by run, step) in the requested unit (NaN where unknown)."""
    if x in ("step", "wall"):
        return d[x].to_numpy(float) if x in d else np.full(len(d), np.nan)
    if x == "examples":
        cfg_bs = runs["config"].map(lambda c: as_dict(c).get("batch_size")) if "config" in runs else np.nan
        bs = runs["batch_size"].fillna(cfg_bs) if "batch_size" in runs else pd.Series(cfg_bs, index=runs.index)
        bs = pd.to_numeric(pd.Series(bs.to_numpy(), index=runs["id"].astype(str)), errors="coerce")
        return d["step"].to_numpy(float) * d["run_id"].map(bs).to_numpy(float)
    # Fractional epoch: epoch e covers steps (first_e - 1, first_e - 1 + len_e]. A run's last
    # (maybe unfinished) epoch takes the median length of its completed ones.
    src = metrics[metrics["key"].isin([key, "train/loss"]) & metrics["run_id"].isin(d["run_id"].unique())]
    b = src.groupby(["run_id", "epoch"])["step"].agg(["min", "max"]).reset_index()
    b["len"] = (b["max"] - b["min"] + 1).astype(float)
    last = b["epoch"] == b.groupby("run_id")["epoch"].transform("max")
    med = b[~last].groupby("run_id")["len"].median()
    b.loc[last, "len"] = b.loc[last, "run_id"].map(med).fillna(b.loc[last, "len"])
    j = d.merge(b[["run_id", "epoch", "min", "len"]], on=["run_id", "epoch"], how="left")
    return (j["epoch"] + (j["step"] - j["min"] + 1) / j["len"]).to_numpy(float)


def compare_figure(metrics: pd.DataFrame, runs: pd.DataFrame, *, key: str = "train/loss", x: str = "step",
                   smoothing: float = 0.6, max_points: int = 1500, band_by_seed: bool = True,
                   band: Literal["minmax", "std"] = "minmax") -> go.Figure:
    """Overlay ``key`` for the runs in ``runs`` (legend = run name, in ``runs`` order).

    Runs whose config differs only in seed/name (and that agree on model, dataset, method and
    batch size) are one experiment, so they are drawn as a mean line with a min–max (or ±std)
    band, aligned on step: the honest picture of seed noise. Per-epoch keys (≤ 1 point per epoch)
    are not smoothed and get markers. Runs without a batch size are left out of x="examples".
    """
    if x not in _X_TITLES:
        raise ValueError(f"x must be one of {sorted(_X_TITLES)}")
    title = f"{key} by run"
    if not usable(metrics) or not isinstance(runs, pd.DataFrame) or runs.empty or "id" not in runs:
        return empty_figure(title)
    runs = runs.drop_duplicates("id")
    ids = runs["id"].astype(str)
    cols = [c for c in ("run_id", "step", "epoch", "value", "wall") if c in metrics]
    d = metrics.loc[(metrics["key"] == key) & metrics["run_id"].isin(ids), cols]
    d = d.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
    d["x"] = _x_values(d, metrics, runs, x, key) if not d.empty else []
    if (d := d[np.isfinite(d["x"])]).empty:
        return empty_figure(title)
    per_step = d.groupby(["run_id", "epoch"]).size().median() > 1
    rid, (st, xv, val) = d["run_id"].to_numpy(), (d[c].to_numpy(float) for c in ("step", "x", "value"))
    cuts = np.flatnonzero(rid[1:] != rid[:-1]) + 1
    data = {rid[a]: (st[a:b], xv[a:b], smooth(val[a:b], smoothing if per_step else 0.0))
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(d)], strict=True)}
    labels, groups = run_labels(runs), {}
    for i, row in zip(ids, runs.to_dict("records"), strict=True):
        if i in data:
            groups.setdefault(_seed_key(row) if band_by_seed else i, []).append(i)
    palette = qualitative.Plotly if len(groups) <= 10 else qualitative.Dark24
    mode = "lines" if per_step else "lines+markers"
    hover = f"%{{fullData.name}}<br>{_X_TITLES[x]} %{{x:.4g}}<br>{key} %{{y:.4g}}<extra></extra>"
    traces: list[go.Scatter] = []
    for n, members in enumerate(groups.values()):
        color = palette[n % len(palette)]
        if len(members) == 1:
            _, xs, ys = data[members[0]]
            i = _m4_indices(ys, max_points)
            traces.append(go.Scatter(x=xs[i], y=ys[i], mode=mode, name=labels[members[0]],
                                     line=dict(color=color, width=1.5), hovertemplate=hover))
            continue
        s = pd.concat([pd.DataFrame({"step": data[m][0], "x": data[m][1], "y": data[m][2]}) for m in members])
        a = s.groupby("step").agg(x=("x", "mean"), mu=("y", "mean"), lo=("y", "min"), hi=("y", "max"),
                                  sd=("y", "std"))
        if band == "std":
            a["lo"], a["hi"] = a["mu"] - a["sd"].fillna(0.0), a["mu"] + a["sd"].fillna(0.0)
        xs, mu, lo, hi = (a[c].to_numpy(float) for c in ("x", "mu", "lo", "hi"))
        i = np.unique(np.concatenate([_m4_indices(v, max_points // 3) for v in (mu, lo, hi)]))
        name = _group_label([labels[m] for m in members])
        edge = dict(mode="lines", line=dict(width=0, color=color), legendgroup=name, showlegend=False,
                    hoverinfo="skip")
        traces += [go.Scatter(x=xs[i], y=lo[i], name=f"{name} low", **edge),
                   go.Scatter(x=xs[i], y=hi[i], name=f"{name} band", fill="tonexty",
                              fillcolor="rgba({},{},{},0.2)".format(*hex_to_rgb(color)), **edge),
                   go.Scatter(x=xs[i], y=mu[i], mode=mode, name=name, legendgroup=name,
                              line=dict(color=color, width=2), hovertemplate=hover)]
    return style_figure(go.Figure(traces), title, _X_TITLES[x], key, legend_right=len(groups) > 6)


def efficiency_figure(table: pd.DataFrame, *, metric: str) -> go.Figure:
    """Quality vs trainable parameters (log x): the PEFT trade-off in one picture.

    Bubble *area* ∝ wall time (``marker.size`` = wall_s), one colour per method, text = run name
    (``name`` column, else the index, as ``metrics_table`` returns it).
    """
    title = f"{metric} vs trainable parameters"
    if not isinstance(table, pd.DataFrame) or table.empty or not {metric, "trainable_params"} <= set(table):
        return empty_figure(title)
    t = table.assign(_name=table["name"] if "name" in table else table.index.astype(str))
    if (t := t[pd.to_numeric(t["trainable_params"], errors="coerce") > 0].dropna(subset=[metric])).empty:
        return empty_figure(title)
    wall = pd.to_numeric(t["wall_s"], errors="coerce") if "wall_s" in t else pd.Series(1.0, index=t.index)
    wall = wall.fillna(wall.median()).fillna(1.0).clip(lower=0)
    t = t.assign(_wall=wall, _method=t["method"].fillna("—").astype(str) if "method" in t else "all")
    sizeref = 2.0 * max(float(wall.max()), 1e-9) / 40.0**2  # largest bubble ≈ 40 px across
    hover = f"%{{text}}<br>params %{{x:,}}<br>{metric} %{{y:.4g}}<br>wall %{{customdata:.0f}} s<extra></extra>"
    fig = go.Figure([go.Scatter(
        x=s["trainable_params"], y=s[metric], mode="markers+text", name=method, text=s["_name"],
        textposition="top center", customdata=s["_wall"], hovertemplate=hover,
        marker=dict(size=s["_wall"], sizemode="area", sizeref=sizeref, sizemin=6, opacity=0.8))
        for method, s in t.groupby("_method", sort=False)])
    return style_figure(fig, title, "trainable parameters (log)", metric).update_xaxes(type="log")


def schedule_figure(curves: dict[str, list[float]], title: str = "Learning-rate schedule") -> go.Figure:
    """Precomputed LR curves, one line per name; x = 1-based step, as in the run store."""
    curves = {k: v for k, v in (curves or {}).items() if len(v)}
    if not curves:
        return empty_figure(title)
    fig = go.Figure()
    for name, v in curves.items():
        x, y = downsample(np.arange(1, len(v) + 1), np.asarray(v, dtype=float))
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name))
    return style_figure(fig, title, "step", "learning rate").update_yaxes(exponentformat="e", rangemode="tozero")


def params_bar(trainable: int, total: int, *, label: str = "") -> go.Figure:
    """Trainable vs frozen parameters as one stacked bar; the percentage is the PEFT headline."""
    title = f"Trainable parameters{f' — {label}' if label else ''}"
    if not total or total <= 0:
        return empty_figure(title)
    fig = go.Figure([go.Bar(y=[""], x=[trainable], orientation="h", name="trainable", marker_color=ON_COLOR),
                     go.Bar(y=[""], x=[max(total - trainable, 0)], orientation="h", name="frozen",
                            marker_color=OFF_COLOR)])
    fig.add_annotation(text=f"{100.0 * trainable / total:.2f}% trainable ({trainable:,} of {total:,})",
                       x=0.5, y=-0.6, xref="paper", yref="paper", showarrow=False)
    fig = style_figure(fig, title, "parameters", "", height=200).update_layout(barmode="stack")
    return fig.update_layout(margin=dict(l=20, r=20, t=80, b=70))


__all__ = [
    "HEIGHT", "TEMPLATE",
    "compare_figure", "downsample", "efficiency_figure", "loss_figure", "lr_figure", "params_bar",
    "schedule_figure", "smooth", "throughput_figure",
    "stage_diagram", "timeline_figure", "trainable_intervals",  # from charts_stages
]
