"""Figures of a run's test predictions: confusion matrices, per-class scores, residuals, try-it bars.

Pure functions over the frames of `workbench.explain.predictions` (and `TryIt.predict`), drawn with
the shared look of `charts_style`, so the app and the notebooks show the same pictures. The
difference of two confusion matrices uses a diverging scale centred on 0: white means "the same",
and the colour says which run puts more examples in a cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.charts_style import HEIGHT, TRAIN_COLOR, VAL_COLOR, empty_figure, style_figure

MODEL_COLORS = {"fine-tuned": TRAIN_COLOR, "base + linear probe": VAL_COLOR}


def _matrix_height(n: int) -> int:
    return max(HEIGHT, 140 + 34 * n)


def confusion_figure(conf: pd.DataFrame, *, title: str = "Confusion matrix (test)") -> go.Figure:
    """Counts per (true, predicted) class with the numbers written in the cells; the hover adds the
    share of the true class (the row), which is the recall on the diagonal."""
    if conf is None or conf.empty:
        return empty_figure(title)
    counts = conf.to_numpy()
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    names_x, names_y = [str(c) for c in conf.columns], [str(c) for c in conf.index]
    fig = go.Figure(go.Heatmap(
        z=counts, x=names_x, y=names_y, colorscale="Blues", text=counts, texttemplate="%{text}",
        customdata=share, colorbar=dict(title="examples"), xgap=1, ygap=1,
        hovertemplate="true %{y} → predicted %{x}<br>%{z} examples (%{customdata:.0%} of true %{y})<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", side="bottom")
    return style_figure(fig, title, "predicted class", "true class", height=_matrix_height(len(names_y)))


def confusion_difference_figure(diff: pd.DataFrame, *, names: tuple[str, str] = ("A", "B"),
                                title: str | None = None) -> go.Figure:
    """B's confusion matrix minus A's: red cells hold more examples in B, blue cells more in A.
    A better B shows red on the diagonal and blue off it."""
    title = title or f"Confusion difference: {names[1]} − {names[0]}"
    if diff is None or diff.empty:
        return empty_figure(title)
    z = diff.to_numpy()
    top = max(1, int(np.abs(z).max()))
    text = np.vectorize(lambda v: f"{v:+d}" if v else "0")(z.astype(int))
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(c) for c in diff.columns], y=[str(c) for c in diff.index], colorscale="RdBu_r", zmid=0,
        zmin=-top, zmax=top, text=text, texttemplate="%{text}", xgap=1, ygap=1,
        colorbar=dict(title=f"{names[1]} − {names[0]}"),
        hovertemplate=f"true %{{y}} → predicted %{{x}}<br>{names[1]} − {names[0]}: %{{text}}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return style_figure(fig, title, "predicted class", "true class", height=_matrix_height(len(diff)))


def per_class_figure(table: pd.DataFrame, *, title: str = "Per-class scores (test)") -> go.Figure:
    """Precision, recall and F1 per class as grouped bars (support in the hover)."""
    if table is None or table.empty:
        return empty_figure(title)
    fig = go.Figure()
    for metric, color in (("precision", "#60a5fa"), ("recall", "#f59e0b"), ("f1", "#10b981")):
        fig.add_bar(x=table["class"].astype(str), y=table[metric], name=metric, marker_color=color,
                    customdata=table["support"],
                    hovertemplate=f"class %{{x}}<br>{metric} %{{y:.3f}}<br>support %{{customdata}}<extra></extra>")
    fig.update_yaxes(range=[0, 1.05])
    fig.update_xaxes(type="category")
    return style_figure(fig.update_layout(barmode="group"), title, "class", "score")


def residual_figure(res: pd.DataFrame, *, title: str = "Residuals (test)") -> go.Figure:
    """Residual (true − predicted) against the prediction, with the zero line: a good regressor's
    points scatter evenly around it; a slope or a funnel is a pattern the model missed."""
    if res is None or res.empty:
        return empty_figure(title)
    fig = go.Figure(go.Scatter(
        x=res["predicted"], y=res["residual"], mode="markers", marker=dict(color=TRAIN_COLOR, size=7, opacity=0.7),
        customdata=np.stack([res["true"], res["position"]], axis=1), name="test example",
        hovertemplate="predicted %{x:.4g}<br>true %{customdata[0]:.4g}<br>residual %{y:.4g}"
                      "<br>example %{customdata[1]}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="#888", dash="dash"))
    return style_figure(fig, title, "predicted value", "residual (true − predicted)")


def probability_figure(frame: pd.DataFrame, *, example: int = 0, title: str | None = None) -> go.Figure:
    """Try it: each model's class probabilities for one input, side by side (regression: the values)."""
    title = title or ("What each model predicts" if frame is None or "class" in frame else "Predicted value")
    if frame is None or frame.empty:
        return empty_figure(title)
    rows = frame[frame["example"] == example]
    fig = go.Figure()
    if "class" in rows:
        for model, part in rows.groupby("model", sort=False):
            fig.add_bar(x=part["class"].astype(str), y=part["probability"], name=str(model),
                        marker_color=MODEL_COLORS.get(str(model)),
                        text=[f"{v:.0%}" if v >= 0.005 else "" for v in part["probability"]],
                        textposition="outside", hovertemplate="%{x}: %{y:.3f}<extra>" + str(model) + "</extra>")
        fig.update_yaxes(range=[0, 1.12], tickformat=".0%")
        fig.update_xaxes(type="category")
        return style_figure(fig.update_layout(barmode="group"), title, "class", "probability")
    fig.add_bar(x=rows["model"].astype(str), y=rows["value"], marker_color=[MODEL_COLORS.get(str(m)) for m in rows["model"]],
                text=[f"{v:.4g}" for v in rows["value"]], textposition="outside", showlegend=False)
    return style_figure(fig, title, "", "predicted value")


__all__ = ["confusion_difference_figure", "confusion_figure", "per_class_figure", "probability_figure",
           "residual_figure"]
