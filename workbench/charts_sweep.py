"""Sweep charts: a parallel-coordinates view of a sweep's trials and the metric per trial.

Pure functions over `workbench.sweeps.sweep_frame` output (one row per trial: trial, run_id, state,
one column per swept setting, value, epochs_done), so the app and the notebooks draw the same figure.
Plotly's parallel coordinates take numbers only: a categorical setting (a method, a schedule) becomes
integer positions with its labels as ticks, a learning rate spanning decades is drawn on log10 with
the plain values as tick labels, and a missing value (a trial with no metric yet, the method's default
LR) sits on a "—" tick just below its axis instead of vanishing. Finished trials are coloured by the
metric (orange worst, blue best); running ones light grey, pruned, failed and stopped ones a darker grey.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from workbench.charts_style import HEIGHT, TEMPLATE, empty_figure, style_figure

MISSING = "—"  # the tick of a missing value
RUNNING_COLOR, OUT_COLOR = "#d1d5db", "#9ca3af"  # running · pruned, failed, stopped
STATE_COLORS = {"complete": "#2563eb", "running": "#60a5fa", "pruned": "#9ca3af", "failed": "#dc2626",
                "stopped": "#6b7280"}
# Worst to best: saturated on white at both ends, and apart from the greys of unscored trials.
SCALE = [[0.0, "#f97316"], [0.5, "#a855f7"], [1.0, "#1d4ed8"]]
_LOWER_IS_BETTER = ("loss", "mae", "mse", "rmse", "error", "perplexity")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of `metric` is better (losses and errors), when the sweep does not say."""
    return any(word in metric.lower() for word in _LOWER_IS_BETTER)


def format_value(value: Any) -> str:
    """A swept value as a tick or table label: 0.001, on/off, "—" for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "on" if value else "off"
    if isinstance(value, float | np.floating):
        return f"{float(value):.3g}"
    return str(value)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float | np.floating) and math.isnan(v))


def _numeric(values: pd.Series) -> bool:
    present = [v for v in values if not _is_missing(v)]
    return bool(present) and all(isinstance(v, int | float | np.integer | np.floating)
                                 and not isinstance(v, bool | np.bool_) for v in present)


def _with_missing_slot(axis: dict[str, Any], values: np.ndarray, lo: float, hi: float) -> dict[str, Any]:
    """Put missing values on a "—" tick below the axis's range."""
    if not np.isnan(values).any():
        return {**axis, "values": values, "range": [lo, hi]}
    span = (hi - lo) or max(abs(hi), 1.0)
    slot = lo - 0.2 * span
    ticks = list(axis.get("tickvals") or np.linspace(lo, hi, 5))
    labels = list(axis.get("ticktext") or [f"{t:.3g}" for t in ticks])
    return {**axis, "values": np.where(np.isnan(values), slot, values), "range": [slot, hi],
            "tickvals": [slot, *ticks], "ticktext": [MISSING, *labels]}


def _planned_values(planned: Any) -> list[Any]:
    """The values a sweep will try for a setting: its list, or a range's two ends."""
    if isinstance(planned, dict):
        return [planned.get("low"), planned.get("high")]
    return list(planned) if isinstance(planned, list | tuple) else []


def _numeric_dimension(name: str, values: pd.Series, *, log: bool | None = None, ticks_at_values: bool = True,
                       planned: Any = None) -> dict[str, Any]:
    raw = np.array([np.nan if _is_missing(v) else float(v) for v in values], dtype=float)
    extra = [float(v) for v in _planned_values(planned) if isinstance(v, int | float) and not isinstance(v, bool)]
    present = np.concatenate([raw[~np.isnan(raw)], extra])  # the planned values fix the axis from the start
    lo, hi = float(present.min()), float(present.max())
    uniques = np.unique(present)
    if log is None:  # a learning rate is read in decades, however few trials have run yet
        log = name.split(".")[-1].endswith("lr") and lo > 0
    axis: dict[str, Any] = {"label": f"{name} (log)" if log else name}
    if log:
        raw, lo, hi = np.log10(raw), math.log10(lo), math.log10(hi)
        if len(uniques) <= 8 and not isinstance(planned, dict):
            axis.update(tickvals=[math.log10(u) for u in uniques], ticktext=[f"{u:g}" for u in uniques])
        else:
            decades = range(math.floor(lo), math.ceil(hi) + 1)
            axis.update(tickvals=list(decades), ticktext=[f"{10.0 ** d:g}" for d in decades])
    elif ticks_at_values and len(uniques) <= 8 and not isinstance(planned, dict):  # a few swept values: a tick each
        axis.update(tickvals=list(uniques), ticktext=[format_value(u.item() if float(u).is_integer() else u) for u in uniques])
    if lo == hi:  # one value: a short axis around it (half a decade, half a step, or 5 % of a metric)
        pad = 0.5 if log or float(lo).is_integer() else max(abs(lo) * 0.05, 1e-3)
        lo, hi = lo - pad, hi + pad
    return _with_missing_slot(axis, raw, lo, hi)


def _categorical_dimension(name: str, values: pd.Series, planned: Any = None) -> dict[str, Any]:
    labels = [format_value(v) for v in values]
    order = list(dict.fromkeys(format_value(v) for v in _planned_values(planned)))  # the spec's order first
    order += sorted(set(labels) - set(order), key=lambda s: (s == MISSING, s))
    index = {label: i for i, label in enumerate(order)}
    return {"label": name, "values": [index[label] for label in labels], "tickvals": list(range(len(order))),
            "ticktext": order, "range": [-0.25, max(len(order) - 1, 0) + 0.25]}


def dimension(name: str, values: pd.Series, planned: Any = None) -> dict[str, Any]:
    """One Parcoords axis for a swept setting: numeric (log10 for a learning rate) or categorical.
    `planned`: the spec's values for it (a list or a {"low", "high"} range): the axis shows them all
    from the first trial on, so it does not rescale while the sweep runs."""
    kept = pd.Series([*values, *_planned_values(planned)], dtype=object)
    if _numeric(kept):
        return _numeric_dimension(name, values, planned=planned)
    return _categorical_dimension(name, values, planned)


def _line_colors(frame: pd.DataFrame, minimize: bool) -> tuple[np.ndarray, list[list[Any]]]:
    """Colour values in [0, 1] and a colorscale: 0 running (light grey), 0.05 out (grey), 0.1–1 the metric."""
    value = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=float)
    state = frame["state"].astype(str).to_numpy() if "state" in frame else np.full(len(frame), "complete")
    scored = (state == "complete") & ~np.isnan(value)
    color = np.where(state == "running", 0.0, 0.05)
    if scored.any():
        lo, hi = float(value[scored].min()), float(value[scored].max())
        share = (value - lo) / (hi - lo) if hi > lo else np.full(len(value), 1.0)
        if minimize:
            share = 1 - share  # blue = good either way
        color = np.where(scored, 0.1 + 0.9 * np.nan_to_num(share, nan=0.0), color)
    stops = sample_colorscale(SCALE, [i / 8 for i in range(9)])
    scale = [[0.0, RUNNING_COLOR], [0.045, RUNNING_COLOR], [0.05, OUT_COLOR], [0.095, OUT_COLOR],
             *[[0.1 + 0.9 * i / 8, c] for i, c in enumerate(stops)]]
    return color, scale


def parallel_coordinates(frame: pd.DataFrame | None, params: list[str] | dict[str, Any], metric_label: str, *,
                         direction: str | None = None, title: str | None = None) -> go.Figure:
    """One line per trial through its settings, the metric as the last axis and the line colour.

    `frame`: `sweep_frame` output; `params`: the swept settings (columns of `frame`, in axis order), or the
    spec's params dict (name → values or range): then every axis spans the planned values from the start;
    `direction`: "maximize" | "minimize" (None: from the metric's name). Bluer lines are better.
    """
    title = title or f"Sweep: {metric_label} by setting"
    if frame is None or frame.empty:
        return empty_figure(title)
    minimize = direction == "minimize" if direction else lower_is_better(metric_label)
    planned = params if isinstance(params, dict) else {}
    dims = [dimension(p, frame[p], planned.get(p)) for p in params if p in frame]
    values = pd.to_numeric(frame["value"], errors="coerce")
    if values.notna().any():
        dims.append(_numeric_dimension(metric_label, values, log=False, ticks_at_values=False))
    else:  # nothing measured yet: an empty axis that still says what will be there
        dims.append({"label": metric_label, "values": np.zeros(len(frame)), "range": [0, 1],
                     "tickvals": [0], "ticktext": [MISSING]})
    color, scale = _line_colors(frame, minimize)
    trace = go.Parcoords(dimensions=dims, line=dict(color=color, colorscale=scale, cmin=0, cmax=1),
                         labelangle=0, labelside="top", labelfont=dict(size=13), tickfont=dict(size=11),
                         rangefont=dict(size=1, color="rgba(0,0,0,0)"))
    fig = go.Figure(trace)
    fig.update_layout(template=TEMPLATE, height=max(HEIGHT, 400), title=dict(text=title, x=0, xanchor="left"),
                      margin=dict(l=70, r=70, t=100, b=30))
    return fig


def trial_values(frame: pd.DataFrame | None, metric_label: str, *, direction: str | None = None,
                 title: str | None = None) -> go.Figure:
    """The metric of each trial in trial order, coloured by state, with the best so far as a step line."""
    title = title or f"{metric_label} per trial"
    if frame is None or frame.empty:
        return empty_figure(title)
    minimize = direction == "minimize" if direction else lower_is_better(metric_label)
    d = frame.assign(value=pd.to_numeric(frame["value"], errors="coerce")).sort_values("trial")
    fig = go.Figure()
    for state, rows in d.groupby("state", sort=False):
        rows = rows[rows["value"].notna()]
        if rows.empty:
            continue
        fig.add_trace(go.Scatter(x=rows["trial"], y=rows["value"], mode="markers", name=str(state),
                                 marker=dict(size=10, color=STATE_COLORS.get(str(state), "#6b7280")),
                                 customdata=rows["run_id"], hovertemplate="trial %{x}: %{y:.4g}<br>%{customdata}"))
    done = d[(d["state"] == "complete") & d["value"].notna()]
    if not done.empty:
        best = done["value"].cummin() if minimize else done["value"].cummax()
        fig.add_trace(go.Scatter(x=done["trial"], y=best, mode="lines", line=dict(shape="hv", color="#111827",
                                 width=1.5, dash="dot"), name="best so far", hoverinfo="skip"))
    if not fig.data:
        return empty_figure(title)
    fig = style_figure(fig, title, "trial", metric_label)
    fig.update_xaxes(range=[d["trial"].min() - 0.5, d["trial"].max() + 0.5], dtick=1 if d["trial"].nunique() <= 20 else None)
    values = d["value"].dropna()
    if values.nunique() == 1:  # one value so far: a narrow y axis around it, not Plotly's ±0.5 on a 0–1 metric
        pad = max(abs(values.iloc[0]) * 0.05, 1e-3)
        fig.update_yaxes(range=[values.iloc[0] - pad, values.iloc[0] + pad])
    return fig


__all__ = ["MISSING", "dimension", "format_value", "lower_is_better", "parallel_coordinates", "trial_values"]
