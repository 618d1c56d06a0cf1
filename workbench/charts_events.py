"""Interventions on the charts: one dotted vertical line per applied request, labelled ("LR ×0.1").

Why on every chart: an intervention explains what comes after it (the loss drops because the LR was
cut, a group starts to move because it was unfrozen), so each step-axis chart marks the same steps.
Refused requests changed nothing and are not drawn.
"""

from __future__ import annotations

from collections.abc import Iterable

import plotly.graph_objects as go

COLOR = "rgba(120, 60, 170, 0.75)"


def marks(items: Iterable) -> tuple[tuple[int, str], ...]:
    """(step, label) of the applied, not refused interventions: hashable, so figure caches key on it."""
    return tuple((int(i.step), i.label()) for i in items if i.step is not None and not i.refused
                 and i.kind != "unpause")


def named_marks(items: Iterable, names: dict[str, str]) -> tuple[tuple[int, str], ...]:
    """`marks` of several runs' interventions, each label prefixed by its run's name (Compare)."""
    return tuple((step, f"{names.get(i.run_id, i.run_id)}: {label}") for i in items for step, label in marks([i]))


def mark(fig: go.Figure, steps: tuple[tuple[int, str], ...], *, prefix: str = "") -> go.Figure:
    """Add the marks to a figure whose x axis is the step (every subplot); returns the figure."""
    labels: dict[int, list[str]] = {}
    for step, label in steps:
        labels.setdefault(step, []).append(label)
    for step, texts in labels.items():
        fig.add_vline(x=step, line_width=1, line_dash="dot", line_color=COLOR)
        fig.add_annotation(x=step, y=1.0, yref="paper", text=prefix + " · ".join(texts), showarrow=False,
                           textangle=-90, xanchor="right", yanchor="top", font={"size": 10, "color": COLOR})
    return fig
