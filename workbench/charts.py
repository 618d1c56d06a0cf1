"""Plotly charts shared by the Streamlit app and the notebooks.

Pure functions: pandas frames in, ``go.Figure`` (or a frame) out, so a chart looks the same in
both front ends and is testable without a browser. Long curves are smoothed on full data, then
decimated *before* traces are built: serialising 50k-point traces is what makes a page slow.
Empty input yields a "No data yet" figure, because a live run has no rows for its first seconds.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative

from workbench.run_tables import _as_dict, _flatten, _run_labels, config_diff, metrics_table  # noqa: F401 (re-exported)

TEMPLATE = "plotly_white"
HEIGHT = 350
_TRAIN, _VAL, _ON, _OFF = "#1f77b4", "#ff7f0e", "#2563eb", "#e5e7eb"
_NONE = "#f8fafc"  # a group with nothing to train under the method
_NEED = {"run_id", "step", "epoch", "key", "value"}
_X_TITLES = {"step": "step", "epoch": "epoch", "examples": "examples seen", "wall": "wall time (s)"}


def _ok(metrics: pd.DataFrame | None) -> bool:
    return isinstance(metrics, pd.DataFrame) and not metrics.empty and set(metrics.columns) >= _NEED


def _run(metrics: pd.DataFrame | None) -> pd.DataFrame | None:
    """Single-run charts use the first run present rather than mixing runs (None: no usable data)."""
    return metrics[metrics["run_id"] == metrics["run_id"].iloc[0]] if _ok(metrics) else None


def _rows(m: pd.DataFrame, key: str) -> pd.DataFrame:
    return m[m["key"] == key].sort_values("step", kind="stable")


def _style(fig: go.Figure, title: str, x_title: str = "", y_title: str = "", height: int = HEIGHT,
           legend_right: bool = False) -> go.Figure:
    """One place for the look, so the app and notebooks cannot drift apart."""
    legend = (dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top") if legend_right
              else dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    fig.update_layout(template=TEMPLATE, height=height, legend=legend, title=dict(text=title, x=0, xanchor="left"),
                      margin=dict(l=60, r=20, t=80, b=50), hovermode="closest")
    return fig.update_xaxes(title_text=x_title).update_yaxes(title_text=y_title)


def _empty(title: str) -> go.Figure:
    fig = go.Figure().add_annotation(text="No data yet", x=0.5, y=0.5, xref="paper", yref="paper",
                                     showarrow=False, font=dict(size=16, color="#888"))
    return _style(fig, title).update_xaxes(visible=False).update_yaxes(visible=False)


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
    title, m = title or "Loss", _run(metrics)
    train, val = (_rows(m, k) for k in ("train/loss", "val/loss")) if m is not None else (None, None)
    if m is None or (train.empty and val.empty):
        return _empty(title)
    fig, hover = go.Figure(), "step %{x}<br>epoch %{customdata}<br>loss %{y:.4g}"
    if not train.empty:
        st, y, ep = train["step"].to_numpy(), train["value"].to_numpy(float), train["epoch"].to_numpy() + 1
        curves = [(y, dict(name="train loss", line=dict(color=_TRAIN, width=2)))]
        if smoothing > 0:
            curves = [(y, dict(name="train loss (raw)", opacity=0.3, line=dict(color=_TRAIN, width=1))),
                      (smooth(y, smoothing), dict(name="train loss (smoothed)", line=dict(color=_TRAIN, width=2)))]
        for ys, kw in curves:
            i = _m4_indices(ys, max_points)
            fig.add_trace(go.Scatter(x=st[i], y=ys[i], customdata=ep[i], mode="lines", hovertemplate=hover, **kw))
    if not val.empty:
        fig.add_trace(go.Scatter(x=val["step"], y=val["value"], customdata=val["epoch"] + 1, hovertemplate=hover,
                                 mode="lines+markers", name="val loss", line=dict(color=_VAL, width=2)))
    return _style(fig, title, "step", "loss")


def _natural(name: str) -> tuple:
    """Order layer groups bottom→top: embeddings first, head last, block_10 after block_9."""
    low = name.lower()
    rank = 0 if low.startswith("emb") else 2 if low in ("head", "classifier", "output") else 1
    parts = "".join(c if c.isdigit() else f" {c} " for c in low).split()
    return rank, [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


def _lines(m: pd.DataFrame, keys: dict[str, str], max_points: int) -> list[go.Scatter]:
    """Downsampled per-step lines, one per ``key -> legend name`` present in the run."""
    out = []
    for key, name in keys.items():
        if not (r := _rows(m, key)).empty:
            x, y = downsample(r["step"].to_numpy(), r["value"].to_numpy(float), max_points)
            out.append(go.Scatter(x=x, y=y, mode="lines", name=name))
    return out


def lr_figure(metrics: pd.DataFrame, *, log_y: bool = False, max_points: int = 2000) -> go.Figure:
    """Learning rate per step: the global ``train/lr`` (dashed) and each discriminative ``lr/<group>``."""
    title, m = "Learning rate", _run(metrics)
    groups = [] if m is None else sorted((k for k in m["key"].unique() if k.startswith("lr/")),
                                         key=lambda k: _natural(k[3:]))
    fig = go.Figure(_lines(m, {"train/lr": "lr (global)"} | {k: k[3:] for k in groups}, max_points)
                    if m is not None else [])
    if not fig.data:
        return _empty(title)
    if groups:  # the global lr is then only the reference the group multipliers apply to
        fig.update_traces(line_dash="dash", selector=dict(name="lr (global)"))
    fig = _style(fig, title, "step", "learning rate", legend_right=len(fig.data) > 6)
    return fig.update_yaxes(type="log" if log_y else "linear", exponentformat="e",
                            rangemode="normal" if log_y else "tozero")


def trainable_intervals(metrics: pd.DataFrame, total_steps: int | None = None) -> pd.DataFrame:
    """Rebuild ``[start, end)`` trainable intervals (columns group, start, end) from change points.

    A ``trainable/<group>`` row holds until the next row for that group; the last one holds until
    ``total_steps`` (default: the run's last logged step). Repeated equal values are merged.
    """
    if (m := _run(metrics)) is None:
        return pd.DataFrame(columns=["group", "start", "end"])
    t = m[m["key"].str.startswith("trainable/")].sort_values("step", kind="stable")
    t = t.assign(group=t["key"].str[len("trainable/"):], on=t["value"] >= 0.5)
    t = t.drop_duplicates(["group", "step"], keep="last").sort_values(["group", "step"], kind="stable")
    t = t[t["on"] != t.groupby("group")["on"].shift()]  # keep only real changes
    end = total_steps if total_steps is not None else int(m["step"].max())
    t = t.assign(start=t["step"], end=t.groupby("group")["step"].shift(-1).fillna(end))
    t = t[t["on"] & (t["end"] > t["start"])]
    return t[["group", "start", "end"]].astype({"start": int, "end": int}).reset_index(drop=True)


def timeline_figure(metrics: pd.DataFrame, groups: list[str] | None = None,
                    total_steps: int | None = None, *, tied: bool = False) -> go.Figure:
    """Unfreezing timeline: one row per layer group (bottom group low, head on top).

    Grey = frozen, blue = trainable; dotted lines mark epoch ends since most schedules unfreeze
    per epoch. ``groups`` (bottom→top) overrides the guessed order; one without recorded rows had
    nothing to train (the trainer records its whole stage plan at step 0): "nothing trains here".
    ``tied``: the run tied its transformer blocks (``tie_layers``, ALBERT-style), so block_2… left the
    model and block_1's weights run at their depths. A card's groups still name them; without rows
    they would read "nothing trains here", which is false (they are block_1), so they get a hatched
    "tied to block_1" row instead.
    """
    title, m = "Trainable layer groups", _run(metrics)
    found = [] if m is None else [k[10:] for k in m["key"].unique() if k.startswith("trainable/")]
    order = list(groups) if groups else sorted(found, key=_natural)
    if m is None or not order:
        return _empty(title)
    tied_away = [g for g in order if g not in found and _tied_away(g)] if tied else []
    skipped = [g for g in order if g not in found and g not in tied_away] if found else []
    staged = [g for g in order if g not in skipped and g not in tied_away]
    end = total_steps if total_steps is not None else int(m["step"].max())
    iv = trainable_intervals(m, end)
    iv = iv[iv["group"].isin(order)]
    bars = [go.Bar(y=staged, x=[end] * len(staged), base=[0] * len(staged), orientation="h", name="frozen",
                   marker_color=_OFF, hoverinfo="skip")] + ([go.Bar(
        y=skipped, x=[end] * len(skipped), base=[0] * len(skipped), orientation="h", name="nothing trains here",
        marker=dict(color=_NONE, line=dict(color=_OFF, width=1)),
        hovertemplate="%{y}: nothing to train under this method<extra></extra>")] if skipped else []) + ([go.Bar(
        y=tied_away, x=[end] * len(tied_away), base=[0] * len(tied_away), orientation="h", name="tied to block_1",
        marker=dict(color=_NONE, line=dict(color=_ON, width=1), pattern=dict(shape="/", fgcolor=_ON)),
        hovertemplate="%{y}: tied, block_1's weights run at this depth (they train when block_1 does)"
                      "<extra></extra>")] if tied_away else [])
    fig = go.Figure([*bars,
        go.Bar(y=iv["group"], x=iv["end"] - iv["start"], base=iv["start"], orientation="h", name="trainable",
               marker_color=_ON, customdata=iv[["start", "end"]].to_numpy(),
               hovertemplate="%{y}: steps %{customdata[0]}–%{customdata[1]}<extra></extra>")])
    # One `shapes` list, not one `add_vline` per epoch: Plotly re-validates every shape on each add
    # (quadratic; 200 epochs took ~0.5 s of a live page's refresh).
    fig.update_layout(shapes=[dict(type="line", xref="x", yref="paper", x0=float(s), x1=float(s), y0=0, y1=1,
                                   line=dict(color="#999", width=1, dash="dot"))
                              for s in m.loc[m["key"] == "val/loss", "step"].unique()[:100]])
    fig = _style(fig, title, "step", "layer group", height=max(HEIGHT, 60 + 28 * len(order)))
    return fig.update_layout(barmode="overlay").update_yaxes(categoryorder="array", categoryarray=order, type="category")


def _tied_away(group: str) -> bool:
    """A block group that ALBERT-style tying removes (`peft.tying.tie_blocks` keeps block_1 only)."""
    match = re.fullmatch(r"block_(\d+)", group)
    return match is not None and int(match.group(1)) > 1


def throughput_figure(metrics: pd.DataFrame, *, max_points: int = 2000) -> go.Figure:
    """Examples/s per step with a dotted median, so warm-up and stalls stand out."""
    m = _run(metrics)
    lines = [] if m is None else _lines(m, {"train/examples_per_s": "examples/s"}, max_points)
    if not lines:
        return _empty("Throughput")
    med = float(np.nanmedian(_rows(m, "train/examples_per_s")["value"]))
    fig = go.Figure(lines).add_hline(y=med, line=dict(dash="dot", color="#666"),
                                     annotation_text=f"median {med:,.0f}/s")
    return _style(fig, "Throughput", "step", "examples / s")


def _seed_key(row: dict[str, Any]) -> str:
    """Everything that defines an experiment except its seed(s) and display name."""
    cfg = _flatten(_as_dict(row.get("config")))
    cfg = {k: v for k, v in cfg.items() if k != "name" and k.rsplit(".", 1)[-1] != "seed"}
    extra = {c: row.get(c) for c in ("model", "dataset", "method", "batch_size")}
    return json.dumps([cfg, extra], sort_keys=True, default=str)


# What separates the parts of a run name: the engine's own names use " · " ("lora r8 · mnist-cnn/digits · s0").
_NAME_SEP = r"[\s\-_./=:,;|·•–—]"


def _group_label(names: list[str]) -> str:
    """The label of runs that differ only in seed: their names' common part, the seed marker cut off.

    "lora r8 · mnist-cnn/digits · s0" … "· s2" → "lora r8 · mnist-cnn/digits (3 seeds)". Seeds with a
    common first digit (s10, s11) leave "· s1" in the common prefix, so digits after the marker go too.
    """
    stem = re.sub(rf"({_NAME_SEP}+(seed|s){_NAME_SEP}*\d*)?{_NAME_SEP}*$", "", os.path.commonprefix(names))
    return f"{stem if len(stem) >= 3 else names[0]} ({len(names)} seeds)"


def _x_values(d: pd.DataFrame, metrics: pd.DataFrame, runs: pd.DataFrame, x: str, key: str) -> np.ndarray:
    """x for each row of ``d`` (sorted by run, step) in the requested unit (NaN where unknown)."""
    if x in ("step", "wall"):
        return d[x].to_numpy(float) if x in d else np.full(len(d), np.nan)
    if x == "examples":
        cfg_bs = runs["config"].map(lambda c: _as_dict(c).get("batch_size")) if "config" in runs else np.nan
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
    if not _ok(metrics) or not isinstance(runs, pd.DataFrame) or runs.empty or "id" not in runs:
        return _empty(title)
    runs = runs.drop_duplicates("id")
    ids = runs["id"].astype(str)
    cols = [c for c in ("run_id", "step", "epoch", "value", "wall") if c in metrics]
    d = metrics.loc[(metrics["key"] == key) & metrics["run_id"].isin(ids), cols]
    d = d.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
    d["x"] = _x_values(d, metrics, runs, x, key) if not d.empty else []
    if (d := d[np.isfinite(d["x"])]).empty:
        return _empty(title)
    per_step = d.groupby(["run_id", "epoch"]).size().median() > 1
    rid, (st, xv, val) = d["run_id"].to_numpy(), (d[c].to_numpy(float) for c in ("step", "x", "value"))
    cuts = np.flatnonzero(rid[1:] != rid[:-1]) + 1
    data = {rid[a]: (st[a:b], xv[a:b], smooth(val[a:b], smoothing if per_step else 0.0))
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(d)], strict=True)}
    labels, groups = _run_labels(runs), {}
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
    return _style(go.Figure(traces), title, _X_TITLES[x], key, legend_right=len(groups) > 6)


def efficiency_figure(table: pd.DataFrame, *, metric: str) -> go.Figure:
    """Quality vs trainable parameters (log x): the PEFT trade-off in one picture.

    Bubble *area* ∝ wall time (``marker.size`` = wall_s), one colour per method, text = run name
    (``name`` column, else the index, as ``metrics_table`` returns it).
    """
    title = f"{metric} vs trainable parameters"
    if not isinstance(table, pd.DataFrame) or table.empty or not {metric, "trainable_params"} <= set(table):
        return _empty(title)
    t = table.assign(_name=table["name"] if "name" in table else table.index.astype(str))
    if (t := t[pd.to_numeric(t["trainable_params"], errors="coerce") > 0].dropna(subset=[metric])).empty:
        return _empty(title)
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
    return _style(fig, title, "trainable parameters (log)", metric).update_xaxes(type="log")


def schedule_figure(curves: dict[str, list[float]], title: str = "Learning-rate schedule") -> go.Figure:
    """Precomputed LR curves, one line per name; x = 1-based step, as in the run store."""
    curves = {k: v for k, v in (curves or {}).items() if len(v)}
    if not curves:
        return _empty(title)
    fig = go.Figure()
    for name, v in curves.items():
        x, y = downsample(np.arange(1, len(v) + 1), np.asarray(v, dtype=float))
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name))
    return _style(fig, title, "step", "learning rate").update_yaxes(exponentformat="e", rangemode="tozero")


def params_bar(trainable: int, total: int, *, label: str = "") -> go.Figure:
    """Trainable vs frozen parameters as one stacked bar; the percentage is the PEFT headline."""
    title = f"Trainable parameters{f' — {label}' if label else ''}"
    if not total or total <= 0:
        return _empty(title)
    fig = go.Figure([go.Bar(y=[""], x=[trainable], orientation="h", name="trainable", marker_color=_ON),
                     go.Bar(y=[""], x=[max(total - trainable, 0)], orientation="h", name="frozen",
                            marker_color=_OFF)])
    fig.add_annotation(text=f"{100.0 * trainable / total:.2f}% trainable ({trainable:,} of {total:,})",
                       x=0.5, y=-0.6, xref="paper", yref="paper", showarrow=False)
    fig = _style(fig, title, "parameters", "", height=200).update_layout(barmode="stack")
    return fig.update_layout(margin=dict(l=20, r=20, t=80, b=70))


def stage_diagram(groups: list[str], schedule: str, n_stages: int | None = None, *,
                  stages: list[list[str]] | None = None, skipped: list[str] | tuple[str, ...] = ()) -> go.Figure:
    """Teaching grid of hierarchical fine-tuning: rows = groups (bottom→top, head last), columns = stages.

    bottom-up: stage k trains groups[0..k] plus the head; top-down (ULMFiT, alias "ulmfit"):
    stage 1 trains only the head and each stage adds the next lower group; off: everything in
    every stage. ``stages`` (a preview's plan) is drawn as given, else the trainer's rule runs over the
    groups not ``skipped`` (nothing to train: no stage, a pale "nothing trains here" row).
    """
    kind = schedule.lower().replace("_", "-").replace(" ", "-")
    kind = {"ulmfit": "top-down", "none": "off"}.get(kind, kind)
    if kind not in ("bottom-up", "top-down", "off"):
        raise ValueError(f"unknown schedule {schedule!r}")
    title = f"Hierarchical fine-tuning: {kind}"
    if not groups:
        return _empty(title)
    if stages is None:
        from workbench.train.stages import stage_plan  # the trainer's rule, not a copy of it

        stages = stage_plan([g for g in groups if g not in skipped], kind)
    n = n_stages or len(stages)
    on = np.array([[g in stages[min(k, len(stages) - 1)] for k in range(n)] for g in groups], dtype=float)
    z = np.where(np.array([g in skipped for g in groups])[:, None], -1.0, on)
    text = np.where(z > 0, "train", np.where(z < 0, "nothing trains here", "frozen"))
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"stage {k + 1}" for k in range(n)], y=list(groups), text=text, texttemplate="%{text}",
        colorscale=[[0, _NONE], [0.5, _OFF], [1, _ON]], zmin=-1, zmax=1, showscale=False,
        xgap=3, ygap=3, hovertemplate="%{y} · %{x}: %{text}<extra></extra>"))
    fig = _style(fig, title, "stage", "layer group (bottom → top)", height=max(HEIGHT, 80 + 30 * len(groups)))
    return fig.update_yaxes(type="category").update_xaxes(type="category", side="top")
