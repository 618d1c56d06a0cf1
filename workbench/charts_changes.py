"""Figures of the change map (`workbench.explain.changes`): which layer groups moved, when, and how much.

Why a module of its own: these answer "where did fine-tuning act" rather than "how did the loss move"
(`charts.py`) or "what was trainable when" (`charts_stages.py`). Pure functions: a run store's long
frame (rows `change/<group>`, `grad/<group>`; `val/loss` rows mark the epoch ends) or a run's
`changes.json` (as a dict) in, a Plotly figure out, for the pages and the notebooks alike.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from workbench.charts_style import HEIGHT, empty_figure, first_run, group_order, style_figure

Metric = Literal["change", "grad"]
SCALES = {"change": "Blues", "grad": "Oranges"}  # white = unchanged / no pull
LABELS = {"change": "‖ΔW‖ / ‖W₀‖", "grad": "‖∇L‖"}
TITLES = {"change": "What changed where: relative change of each layer group",
          "grad": "Gradient norm of each layer group (fixed probe batch)"}
MAX_BARS = 40  # per-weight bars shown at most (the largest), so a full fine-tune stays readable
TEXT_CELLS = 120  # write the value into each cell up to this many cells


def _grid(frame: pd.DataFrame | None, metric: Metric) -> tuple[list[str], list[int], np.ndarray, list[str]] | None:
    """(groups bottom→top, steps, z[group, step], x labels) of one run's `<metric>/<group>` rows, or None."""
    m = first_run(frame)
    if m is None:
        return None
    rows = m[m["key"].str.match(rf"^{metric}/[^/]+$")]
    if rows.empty:
        return None
    rows = rows.assign(group=rows["key"].str[len(metric) + 1:]).drop_duplicates(["group", "step"], keep="last")
    table = rows.pivot(index="group", columns="step", values="value")
    groups = sorted(table.index, key=group_order)
    steps = [int(s) for s in table.columns]
    ends = dict(zip(m.loc[m["key"] == "val/loss", "step"], m.loc[m["key"] == "val/loss", "epoch"], strict=True))
    labels = [f"{s}<br>ep {int(ends[s]) + 1}" if s in ends else str(s) for s in steps]
    return groups, steps, table.loc[groups].to_numpy(float), labels


def _heatmap(grid: tuple, metric: Metric, **kw: Any) -> go.Heatmap:
    groups, steps, z, labels = grid
    text = z.size <= TEXT_CELLS
    return go.Heatmap(z=z, x=labels, y=groups, colorscale=SCALES[metric], xgap=1, ygap=1,
                      text=np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.2g}")(z) if text else None,
                      texttemplate="%{text}" if text else None,
                      hovertemplate="%{y} · step %{x}<br>" + LABELS[metric] + " = %{z:.4g}<extra></extra>", **kw)


def _zmax(grids: list, zmax: float | None) -> float:
    if zmax is not None:
        return float(zmax)
    peaks = [np.nanmax(g[2]) for g in grids if g is not None and np.isfinite(g[2]).any()]
    return float(max(peaks)) if peaks and max(peaks) > 0 else 1.0


def change_heatmap(frame: pd.DataFrame | None, title: str | None = None, *, zmax: float | None = None,
                   metric: Metric = "change") -> go.Figure:
    """Layer group (bottom group at the bottom, head on top) × record step; colour from 0 to `zmax`
    (default: this run's largest value; pass one number to put two runs on one scale)."""
    title = title or TITLES[metric]
    grid = _grid(frame, metric)
    if grid is None:
        return empty_figure(title)
    fig = go.Figure(_heatmap(grid, metric, zmin=0.0, zmax=_zmax([grid], zmax), colorbar=dict(title=LABELS[metric])))
    fig = style_figure(fig, title, "step (record point)", "layer group (bottom → top)",
                       height=max(HEIGHT, 120 + 32 * len(grid[0])))
    return fig.update_xaxes(type="category").update_yaxes(type="category", categoryorder="array",
                                                           categoryarray=grid[0])


def change_maps_side_by_side(frames: list[pd.DataFrame | None], names: list[str], *, zmax: float | None = None,
                             metric: Metric = "change", title: str | None = None) -> go.Figure:
    """Several runs' change maps on one colour scale (default: the largest value of any of them)."""
    if len(frames) != len(names):
        raise ValueError(f"Give one name per frame. Received: frames={len(frames)}, names={len(names)}")
    title = title or TITLES[metric] + (" (one colour scale)" if len(frames) > 1 else "")
    grids = [_grid(f, metric) for f in frames]
    if not frames or all(g is None for g in grids):
        return empty_figure(title)
    fig = make_subplots(rows=1, cols=len(frames), subplot_titles=list(names), horizontal_spacing=0.1)
    for col, grid in enumerate(grids, start=1):
        if grid is None:
            fig.add_annotation(text="No change map", showarrow=False, row=1, col=col, x=0.5, y=0.5,
                               xref="x domain" if col == 1 else f"x{col} domain",
                               yref="y domain" if col == 1 else f"y{col} domain", font=dict(color="#888"))
            continue
        fig.add_trace(_heatmap(grid, metric, coloraxis="coloraxis"), row=1, col=col)
        fig.update_yaxes(type="category", categoryorder="array", categoryarray=grid[0], row=1, col=col)
        fig.update_xaxes(type="category", tickangle=0, row=1, col=col)
    fig.update_layout(coloraxis=dict(colorscale=SCALES[metric], cmin=0.0, cmax=_zmax(grids, zmax),
                                     colorbar=dict(title=LABELS[metric])))
    rows = max(len(g[0]) for g in grids if g is not None)
    fig = style_figure(fig, title, "step (record point)", height=max(HEIGHT, 160 + 32 * rows))
    return fig.update_layout(margin=dict(t=110)).update_annotations(font_size=12)


def change_bars(changes_json: dict[str, Any] | None, title: str = "Relative change per adapted weight, at the end",
                max_bars: int = MAX_BARS) -> go.Figure:
    """One bar per adapted weight (bottom group at the bottom), coloured by its group; the `max_bars`
    largest when there are more (a full fine-tune of a deep model)."""
    weights = [w for w in (changes_json or {}).get("weights", []) if w.get("change") is not None]
    if not weights:
        return empty_figure(title)
    order = {g: i for i, g in enumerate(sorted({w["group"] for w in weights}, key=group_order))}
    if len(weights) > max_bars:
        title = f"{title} ({max_bars} largest of {len(weights)})"
        weights = sorted(weights, key=lambda w: -w["change"])[:max_bars]
    weights = sorted(weights, key=lambda w: order[w["group"]])
    palette = qualitative.Plotly
    fig = go.Figure()
    for group in order:
        mine = [w for w in weights if w["group"] == group]
        if mine:
            fig.add_trace(go.Bar(y=[f"{group} · {w['name']}" for w in mine], x=[w["change"] for w in mine],
                                 orientation="h", name=group, marker_color=palette[order[group] % len(palette)],
                                 hovertemplate="%{y}: %{x:.4g}<extra></extra>"))
    fig = style_figure(fig, title, LABELS["change"], "", height=max(HEIGHT, 90 + 22 * len(weights)), legend_right=True)
    labels = [f"{w['group']} · {w['name']}" for w in weights]
    return fig.update_yaxes(type="category", categoryorder="array", categoryarray=labels, automargin=True)


def spectra_figure(changes_json: dict[str, Any] | None, title: str | None = None) -> go.Figure:
    """Each low-rank update's singular values σ_i / σ_1 (hover: σ_i itself), and its effective rank: how
    many hold 90 % of ΔW's energy. A flat spectrum uses the whole rank; a steep one, a few directions."""
    spectra = (changes_json or {}).get("spectra") or []
    energy = int(round(100 * (changes_json or {}).get("energy", 0.9)))
    if not spectra:
        return empty_figure(title or "Low-rank update spectra")
    mean = float(np.mean([s["effective_rank"] for s in spectra]))
    title = title or f"Low-rank update spectra (effective rank at {energy} % energy: {mean:.1f} on average)"
    fig = go.Figure()
    for s in spectra:
        values = np.asarray(s["singular_values"], float)
        top = values[0] if len(values) and values[0] > 0 else 1.0
        fig.add_trace(go.Scatter(x=np.arange(1, len(values) + 1), y=values / top, customdata=values,
                                 mode="lines+markers", name=f"{s['group']} · {s['name']} (rank {s['effective_rank']})",
                                 hovertemplate="σ%{x} = %{customdata:.4g} (%{y:.2f} of σ1)<extra></extra>"))
    fig = style_figure(fig, title, "singular value i", "σ_i / σ_1", legend_right=True)
    longest = max(len(s["singular_values"]) for s in spectra)
    return fig.update_yaxes(range=[0, 1.05]).update_xaxes(dtick=1 if longest <= 16 else None)


__all__ = ["change_bars", "change_heatmap", "change_maps_side_by_side", "spectra_figure"]
