"""The look and the metric-frame helpers that every chart module shares.

Split from `charts.py` so the curve figures (`charts.py`) and the stage figures (`charts_stages.py`)
draw with one template, one palette and one "No data yet" figure without importing each other.
Pure functions over pandas frames and Plotly figures: no UI, no ML framework.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

TEMPLATE = "plotly_white"
HEIGHT = 350
TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#ff7f0e"
ON_COLOR, OFF_COLOR = "#2563eb", "#e5e7eb"  # trainable / frozen
NONE_COLOR = "#f8fafc"  # a group with nothing to train under the method
METRIC_COLUMNS = frozenset({"run_id", "step", "epoch", "key", "value"})


def usable(metrics: pd.DataFrame | None) -> bool:
    """A non-empty metrics frame with the run store's long-format columns."""
    return isinstance(metrics, pd.DataFrame) and not metrics.empty and set(metrics.columns) >= METRIC_COLUMNS


def first_run(metrics: pd.DataFrame | None) -> pd.DataFrame | None:
    """Single-run charts use the first run present rather than mixing runs (None: no usable data)."""
    return metrics[metrics["run_id"] == metrics["run_id"].iloc[0]] if usable(metrics) else None


def key_rows(m: pd.DataFrame, key: str) -> pd.DataFrame:
    """The rows of one metric key, in step order."""
    return m[m["key"] == key].sort_values("step", kind="stable")


def group_order(name: str) -> tuple[int, list[tuple[int, int, str]]]:
    """Sort key for layer groups bottom→top: embeddings first, head last, block_10 after block_9."""
    low = name.lower()
    rank = 0 if low.startswith("emb") else 2 if low in ("head", "classifier", "output") else 1
    parts = "".join(c if c.isdigit() else f" {c} " for c in low).split()
    return rank, [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


def style_figure(fig: go.Figure, title: str, x_title: str = "", y_title: str = "", height: int = HEIGHT,
                 legend_right: bool = False) -> go.Figure:
    """One place for the look, so the app and notebooks cannot drift apart."""
    legend = (dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top") if legend_right
              else dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    fig.update_layout(template=TEMPLATE, height=height, legend=legend, title=dict(text=title, x=0, xanchor="left"),
                      margin=dict(l=60, r=20, t=80, b=50), hovermode="closest")
    return fig.update_xaxes(title_text=x_title).update_yaxes(title_text=y_title)


def empty_figure(title: str) -> go.Figure:
    """The "No data yet" figure: a live run has no rows for its first seconds."""
    fig = go.Figure().add_annotation(text="No data yet", x=0.5, y=0.5, xref="paper", yref="paper",
                                     showarrow=False, font=dict(size=16, color="#888"))
    return style_figure(fig, title).update_xaxes(visible=False).update_yaxes(visible=False)


__all__ = ["HEIGHT", "METRIC_COLUMNS", "NONE_COLOR", "OFF_COLOR", "ON_COLOR", "TEMPLATE", "TRAIN_COLOR",
           "VAL_COLOR", "empty_figure", "first_run", "group_order", "key_rows", "style_figure", "usable"]
