"""How the pages draw the engine's Plotly figures, and the small layout tweaks they apply to them.

Why a module of its own: the figures come from `workbench.charts` (shared with the notebooks); this
module only renders them in Streamlit (the engine's own template, PNG export from the toolbar, a static
drawing while a run is live) and adjusts their layout for a page (legend beside the plot, axes from
zero, padded scatter axes).
"""

from __future__ import annotations

import math
import re
from typing import Any

import plotly.graph_objects as go
import streamlit as st

PNG_NOTE = "Every chart downloads as PNG from the camera icon in its toolbar (top right, on hover)."


def plot_config(filename: str) -> dict[str, Any]:
    """Plotly modebar: PNG export at 2x, no logo, no selection tools."""
    slug = re.sub(r"[^a-z0-9]+", "-", filename.lower()).strip("-") or "chart"
    return {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"],
            "toImageButtonOptions": {"format": "png", "filename": f"peft-workbench-{slug}", "scale": 2}}


def plot(fig: go.Figure, name: str, *, key: str | None = None, live: bool = False) -> None:
    """Render an engine figure as it looks in the notebooks (its own template, not Streamlit's).

    `live`: a chart redrawn every few seconds while a run trains is drawn static (no hover, zoom or
    toolbar layers), which costs the browser a fraction of an interactive redraw; once the run ends
    the page draws it interactive.
    """
    config = {**plot_config(name), "staticPlot": True} if live else plot_config(name)
    st.plotly_chart(fig, width="stretch", theme=None, config=config, key=key)


def from_zero(fig: go.Figure) -> go.Figure:
    """y axis from 0 to just above the largest value (learning rates: a constant LR is a visible line)."""
    ys = [float(v) for trace in fig.data if getattr(trace, "y", None) is not None for v in trace.y
          if v is not None and math.isfinite(float(v))]
    if ys and max(ys) > 0:
        fig.update_yaxes(range=[0, max(ys) * 1.15])
    return fig


def stages(groups: list[str], mode: str, n_stages: int | None = None) -> go.Figure:
    """The engine's stage diagram; its column labels already say "stage", so no axis title on top."""
    from workbench.charts import stage_diagram

    return stage_diagram(groups, mode, n_stages=n_stages).update_xaxes(title_text=None)


def legend_right(fig: go.Figure) -> go.Figure:
    """Vertical legend beside the plot: long run names never wrap into the title."""
    return fig.update_layout(legend=dict(orientation="v", x=1.01, xanchor="left", y=1, yanchor="top"),
                             margin=dict(t=50, r=10))


def roomy_scatter(fig: go.Figure) -> go.Figure:
    """Pad a labelled scatter's axes so the text above the top points is not clipped."""
    xs = [float(v) for t in fig.data for v in (t.x if t.x is not None else []) if v is not None and float(v) > 0]
    ys = [float(v) for t in fig.data for v in (t.y if t.y is not None else []) if v is not None and math.isfinite(float(v))]
    if xs and ys:
        lo, hi = math.log10(min(xs)), math.log10(max(xs))
        span = max(max(ys) - min(ys), abs(max(ys)) * 0.1, 1e-9)
        fig.update_xaxes(range=[lo - 0.3, hi + 0.3])
        fig.update_yaxes(range=[min(ys) - 0.15 * span, max(ys) + 0.3 * span])
    return fig.update_layout(legend=dict(itemsizing="constant"))


def no_legend(fig: go.Figure) -> go.Figure:
    """For a small chart beside a bigger one with the same colours: drop the legend, reclaim its space."""
    return fig.update_layout(showlegend=False, margin=dict(t=50))
