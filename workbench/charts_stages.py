"""Figures of hierarchical fine-tuning: which layer groups train when.

Split from `charts.py` because these answer a different question than the curves there: not "how
did the loss move" but "what was trainable at each step". `stage_diagram` draws the plan before a
run (rows = groups, columns = stages); `timeline_figure` draws what a run recorded (the trainer logs
``trainable/<group>`` rows at each change). Both come to pages and notebooks through `workbench.charts`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.charts_style import (
    HEIGHT,
    NONE_COLOR,
    OFF_COLOR,
    ON_COLOR,
    empty_figure,
    first_run,
    group_order,
    style_figure,
)


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
        return empty_figure(title)
    if stages is None:
        from workbench.train.stages import stage_plan  # the trainer's rule, not a copy of it

        stages = stage_plan([g for g in groups if g not in skipped], kind)
    n = n_stages or len(stages)
    on = np.array([[g in stages[min(k, len(stages) - 1)] for k in range(n)] for g in groups], dtype=float)
    z = np.where(np.array([g in skipped for g in groups])[:, None], -1.0, on)
    text = np.where(z > 0, "train", np.where(z < 0, "nothing trains here", "frozen"))
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"stage {k + 1}" for k in range(n)], y=list(groups), text=text, texttemplate="%{text}",
        colorscale=[[0, NONE_COLOR], [0.5, OFF_COLOR], [1, ON_COLOR]], zmin=-1, zmax=1, showscale=False,
        xgap=3, ygap=3, hovertemplate="%{y} · %{x}: %{text}<extra></extra>"))
    height = max(HEIGHT, 80 + 30 * len(groups))
    fig = style_figure(fig, title, "stage", "layer group (bottom → top)", height=height)
    return fig.update_yaxes(type="category").update_xaxes(type="category", side="top")


def trainable_intervals(metrics: pd.DataFrame, total_steps: int | None = None) -> pd.DataFrame:
    """Rebuild ``[start, end)`` trainable intervals (columns group, start, end) from change points.

    A ``trainable/<group>`` row holds until the next row for that group; the last one holds until
    ``total_steps`` (default: the run's last logged step). Repeated equal values are merged.
    """
    if (m := first_run(metrics)) is None:
        return pd.DataFrame(columns=["group", "start", "end"])
    t = m[m["key"].str.startswith("trainable/")].sort_values("step", kind="stable")
    t = t.assign(group=t["key"].str[len("trainable/"):], on=t["value"] >= 0.5)
    t = t.drop_duplicates(["group", "step"], keep="last").sort_values(["group", "step"], kind="stable")
    t = t[t["on"] != t.groupby("group")["on"].shift()]  # keep only real changes
    end = total_steps if total_steps is not None else int(m["step"].max())
    t = t.assign(start=t["step"], end=t.groupby("group")["step"].shift(-1).fillna(end))
    t = t[t["on"] & (t["end"] > t["start"])]
    return t[["group", "start", "end"]].astype({"start": int, "end": int}).reset_index(drop=True)


def _tied_away(group: str) -> bool:
    """A block group that ALBERT-style tying removes (`peft.tying.tie_blocks` keeps block_1 only)."""
    match = re.fullmatch(r"block_(\d+)", group)
    return match is not None and int(match.group(1)) > 1


def _full_row(groups: list[str], end: int, name: str, **kw: object) -> go.Bar:
    """One full-width background bar per group: the row a trainable interval is drawn over."""
    return go.Bar(y=groups, x=[end] * len(groups), base=[0] * len(groups), orientation="h", name=name, **kw)


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
    title, m = "Trainable layer groups", first_run(metrics)
    found = [] if m is None else [k[10:] for k in m["key"].unique() if k.startswith("trainable/")]
    order = list(groups) if groups else sorted(found, key=group_order)
    if m is None or not order:
        return empty_figure(title)
    tied_away = [g for g in order if g not in found and _tied_away(g)] if tied else []
    skipped = [g for g in order if g not in found and g not in tied_away] if found else []
    staged = [g for g in order if g not in skipped and g not in tied_away]
    end = total_steps if total_steps is not None else int(m["step"].max())
    iv = trainable_intervals(m, end)
    iv = iv[iv["group"].isin(order)]
    bars = [_full_row(staged, end, "frozen", marker_color=OFF_COLOR, hoverinfo="skip")]
    if skipped:
        bars.append(_full_row(skipped, end, "nothing trains here",
                              marker=dict(color=NONE_COLOR, line=dict(color=OFF_COLOR, width=1)),
                              hovertemplate="%{y}: nothing to train under this method<extra></extra>"))
    if tied_away:
        bars.append(_full_row(tied_away, end, "tied to block_1",
                              marker=dict(color=NONE_COLOR, line=dict(color=ON_COLOR, width=1),
                                          pattern=dict(shape="/", fgcolor=ON_COLOR)),
                              hovertemplate="%{y}: tied, block_1's weights run at this depth "
                                            "(they train when block_1 does)<extra></extra>"))
    bars.append(go.Bar(y=iv["group"], x=iv["end"] - iv["start"], base=iv["start"], orientation="h",
                       name="trainable", marker_color=ON_COLOR, customdata=iv[["start", "end"]].to_numpy(),
                       hovertemplate="%{y}: steps %{customdata[0]}–%{customdata[1]}<extra></extra>"))
    fig = go.Figure(bars)
    # One `shapes` list, not one `add_vline` per epoch: Plotly re-validates every shape on each add
    # (quadratic; 200 epochs took ~0.5 s of a live page's refresh).
    fig.update_layout(shapes=[dict(type="line", xref="x", yref="paper", x0=float(s), x1=float(s), y0=0, y1=1,
                                   line=dict(color="#999", width=1, dash="dot"))
                              for s in m.loc[m["key"] == "val/loss", "step"].unique()[:100]])
    fig = style_figure(fig, title, "step", "layer group", height=max(HEIGHT, 60 + 28 * len(order)))
    return fig.update_layout(barmode="overlay").update_yaxes(categoryorder="array", categoryarray=order, type="category")


__all__ = ["stage_diagram", "timeline_figure", "trainable_intervals"]
