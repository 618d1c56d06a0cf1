"""The Learn page's mini-demos: small numpy computations and the figures that show them.

Pure functions (numbers in, figures out) so every demo value can be checked in a test; the style
matches `workbench.charts` (plotly_white, the same blues and oranges).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.charts import HEIGHT

BLUE, ORANGE, GREY = "#2563eb", "#f97316", "#9ca3af"


def _layout(fig: go.Figure, title: str, height: int = HEIGHT) -> go.Figure:
    return fig.update_layout(template="plotly_white", height=height, title=dict(text=title, x=0),
                             margin=dict(l=50, r=20, t=60, b=45), legend=dict(orientation="h", y=1.02,
                                                                             yanchor="bottom", x=1, xanchor="right"))


# -- 1. gradient descent on L(θ) = a·(θ − θ*)² ---------------------------------------------------
def gd_path(theta0: float, lr: float, steps: int, *, a: float = 1.0, target: float = 3.0) -> pd.DataFrame:
    """Iterates of θ ← θ − α·∇L with ∇L = 2a(θ − θ*); the loss at each."""
    thetas = [float(theta0)]
    for _ in range(steps):
        theta = thetas[-1]
        thetas.append(theta - lr * 2 * a * (theta - target))
        if not np.isfinite(thetas[-1]) or abs(thetas[-1]) > 1e6:
            break
    theta = np.array(thetas)
    return pd.DataFrame({"step": np.arange(len(theta)), "theta": theta, "loss": a * (theta - target) ** 2,
                         "grad": 2 * a * (theta - target)})


def gd_figure(path: pd.DataFrame, *, a: float = 1.0, target: float = 3.0) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("L(θ) and the steps taken", "loss per step"),
                        horizontal_spacing=0.12)
    span = max(4.0, float(np.nanmax(np.abs(path["theta"].clip(-50, 50) - target))) * 1.1)
    grid = np.linspace(target - span, target + span, 200)
    fig.add_trace(go.Scatter(x=grid, y=a * (grid - target) ** 2, mode="lines", name="L(θ)",
                             line=dict(color=GREY)), 1, 1)
    shown = path[path["theta"].abs() < 1e3]
    fig.add_trace(go.Scatter(x=shown["theta"], y=shown["loss"], mode="lines+markers", name="θ after each step",
                             line=dict(color=BLUE, width=1), marker=dict(size=7), customdata=shown["step"],
                             hovertemplate="step %{customdata}<br>θ %{x:.4g}<br>L %{y:.4g}<extra></extra>"), 1, 1)
    fig.add_trace(go.Scatter(x=path["step"], y=path["loss"], mode="lines+markers", name="loss",
                             line=dict(color=ORANGE), showlegend=False), 1, 2)
    fig.update_xaxes(title_text="θ", row=1, col=1).update_xaxes(title_text="step", row=1, col=2)
    fig.update_yaxes(title_text="L", row=1, col=1)
    fig.update_yaxes(title_text="L (log)", type="log", dtick=1, exponentformat="power", row=1, col=2)
    fig = _layout(fig, "")
    return fig.update_layout(title=None, margin=dict(t=40, b=80),
                             legend=dict(orientation="h", y=-0.22, yanchor="top", x=0, xanchor="left"))


# -- 2. losses -----------------------------------------------------------------------------------
def cross_entropy_figure(p: float, classes: int) -> go.Figure:
    grid = np.linspace(0.005, 1.0, 200)
    fig = go.Figure([
        go.Scatter(x=grid, y=-np.log(grid), mode="lines", name="−log p", line=dict(color=GREY)),
        go.Scatter(x=[p], y=[-np.log(p)], mode="markers", name="your prediction", marker=dict(color=BLUE, size=12)),
        go.Scatter(x=[1 / classes], y=[np.log(classes)], mode="markers", name=f"uniform guess (1/{classes})",
                   marker=dict(color=ORANGE, size=10, symbol="diamond")),
    ])
    fig.update_xaxes(title_text="probability given to the true class").update_yaxes(title_text="loss")
    return _layout(fig, "Cross-entropy: L = −log p(true class)")


def mse_figure(prediction: float, target: float) -> go.Figure:
    grid = np.linspace(target - 4, target + 4, 200)
    fig = go.Figure([
        go.Scatter(x=grid, y=(grid - target) ** 2, mode="lines", name="(ŷ − y)²", line=dict(color=GREY)),
        go.Scatter(x=[prediction], y=[(prediction - target) ** 2], mode="markers", name="your prediction",
                   marker=dict(color=BLUE, size=12)),
    ])
    fig.add_vline(x=target, line=dict(color=ORANGE, dash="dot"), annotation_text="target y")
    fig.update_xaxes(title_text="prediction ŷ").update_yaxes(title_text="loss")
    return _layout(fig, "Squared error: L = (ŷ − y)²")


# -- 3/4. LoRA and sharing -----------------------------------------------------------------------
def lora_matrices(d: int, r: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small B (d×r) and A (r×d) as after some training, and their product ΔW = B·A (rank ≤ r)."""
    rng = np.random.default_rng(seed)
    b, a = rng.normal(size=(d, r)), rng.normal(size=(r, d))
    return b, a, b @ a


def lora_figure(b: np.ndarray, a: np.ndarray, delta: np.ndarray) -> go.Figure:
    d, r = b.shape
    fig = make_subplots(rows=1, cols=3, column_widths=[0.16, 0.34, 0.5], horizontal_spacing=0.06,
                        subplot_titles=(f"B ({d}×{r})", f"A ({r}×{d})", f"ΔW = B·A ({d}×{d}, rank {np.linalg.matrix_rank(delta)})"))
    for col, m in enumerate((b, a, delta), start=1):
        fig.add_trace(go.Heatmap(z=m, colorscale="RdBu", zmid=0, showscale=False,
                                 hovertemplate="row %{y}, col %{x}: %{z:.2f}<extra></extra>"), 1, col)
    fig.update_yaxes(autorange="reversed", showticklabels=False).update_xaxes(showticklabels=False)
    return _layout(fig, toy_title(d, r))


def toy_title(d: int, r: int) -> str:
    """The toy's headline: LoRA's 2·d·r against the d² it replaces, and whether that saves anything."""
    lora, full = 2 * d * r, d * d
    if lora < full:
        return f"{lora} trainable numbers make a {d}×{d} update: {100 * lora / full:.0f}% of its {full}"
    return f"{lora} trainable numbers for a {d}×{d} update of {full}: no saving, since r ≥ d/2"


def lora_table(shapes: pd.DataFrame, r: int) -> pd.DataFrame:
    """Per adapted layer type: full d_in·d_out against LoRA r·(d_in + d_out)."""
    t = shapes.copy()
    t["full (per layer)"] = t["d_in"] * t["d_out"]
    t["LoRA r·(d_in+d_out)"] = r * (t["d_in"] + t["d_out"])
    t["share"] = (t["LoRA r·(d_in+d_out)"] / t["full (per layer)"]).map(lambda v: f"{100 * v:.2f}%")
    return t


def sharing_counts(shapes: pd.DataFrame, r: int) -> dict[str, int]:
    """Trainable numbers of the adapted layers: full, plain LoRA, tied LoRA, VeRA, by the engine's formula.

    plain: each of the L layers has its own B, A → Σ r·(d_in + d_out) (= 2·L·d·r for square d×d)
    tied:  one B, A pair per distinct shape, reused by every layer, plus a scale vector of r per layer
           → r·(d_in + d_out) per shape + L·r (= 2·d·r + L·r)
    VeRA:  B, A frozen random and shared; each layer trains two scaling vectors → Σ (d_out + r) (= L·(d + r))
    The LoRA counts come from `workbench.peft.lora.lora_count`, the formula the Train page's method applies.
    """
    from workbench.peft.lora import lora_count

    layers = [(int(row.d_in), int(row.d_out)) for row in shapes.itertuples() for _ in range(int(row.count))]
    return {"full fine-tuning": sum(d_in * d_out for d_in, d_out in layers),
            "LoRA": lora_count(layers, r), "tied LoRA": lora_count(layers, r, "tied"),
            "VeRA": lora_count(layers, r, "vera")}


def sharing_figure(counts: dict[str, int]) -> go.Figure:
    colors = [GREY, BLUE, "#60a5fa", ORANGE]
    fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()), marker_color=colors[: len(counts)],
                           text=[f"{v:,}" for v in counts.values()], textposition="outside",
                           hovertemplate="%{x}: %{y:,} trainable<extra></extra>"))
    fig.update_yaxes(type="log", title_text="trainable numbers (log)")
    return _layout(fig, "What sharing saves on the adapted layers").update_layout(showlegend=False)


# -- 6. plateau and discriminative LR ------------------------------------------------------------
def parse_losses(text: str) -> list[float]:
    """'1.0, 0.8 0.7' -> [1.0, 0.8, 0.7]; raises ValueError on anything else."""
    values = [float(v) for v in text.replace(",", " ").split()]
    if not values or not all(np.isfinite(values)):
        raise ValueError("give one or more finite numbers, e.g. 1.0, 0.8, 0.75")
    return values


def plateau_figure(val_losses: list[float], lr_curve: list[float], steps_per_epoch: int) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    ends = [(e + 1) * steps_per_epoch for e in range(len(val_losses))]
    fig.add_trace(go.Scatter(x=ends, y=val_losses, mode="lines+markers", name="val loss (per epoch)",
                             line=dict(color=ORANGE)), secondary_y=False)
    fig.add_trace(go.Scatter(x=np.arange(1, len(lr_curve) + 1), y=lr_curve, mode="lines", name="learning rate",
                             line=dict(color=BLUE, shape="hv")), secondary_y=True)
    fig.update_xaxes(title_text="step").update_yaxes(title_text="val loss", secondary_y=False)
    fig.update_yaxes(title_text="learning rate", exponentformat="e", secondary_y=True)
    return _layout(fig, "Plateau: cut the LR when validation loss stops improving")


def multipliers_figure(mult: dict[str, float], base_lr: float) -> go.Figure:
    fig = go.Figure(go.Bar(x=[base_lr * m for m in mult.values()], y=list(mult), orientation="h",
                           marker_color=BLUE, text=[f"×{m:.3g}" for m in mult.values()], textposition="outside"))
    fig.update_xaxes(title_text="learning rate", exponentformat="e", type="log")
    fig.update_yaxes(title_text="layer group (bottom → top)", categoryorder="array", categoryarray=list(mult))
    return _layout(fig, "Discriminative LR: lower groups learn slower").update_layout(showlegend=False)
