"""A recording as a student reads it: the waveform above, the log-mel picture the model sees below."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.data import audio


def recording_figure(wav: bytes, title: str = "", height: int = 340) -> go.Figure:
    """Waveform (time in s) over the clip's 49 × 32 log-mel features (what the model reads)."""
    samples = audio.read_wav(wav, title or "recording.wav")
    features = audio.log_mel(samples).astype(float) * (audio.FLOOR_DB / 255.0) - audio.FLOOR_DB
    step = max(1, len(samples) // 2000)  # ~2,000 points draw the shape; no more are needed
    fig = make_subplots(rows=2, cols=1, row_heights=[0.35, 0.65], vertical_spacing=0.2,
                        subplot_titles=("waveform", "log-mel (what the model reads)"))
    fig.add_scatter(x=np.arange(0, len(samples), step) / audio.RATE, y=samples[::step], mode="lines",
                    line=dict(width=1, color="#2563eb"), row=1, col=1, hovertemplate="%{x:.2f} s<extra></extra>")
    fig.add_heatmap(z=features.T, x=np.arange(audio.FRAMES) * audio.HOP / audio.RATE, colorscale="Viridis",
                    showscale=False, row=2, col=1, hovertemplate="%{x:.2f} s, band %{y}: %{z:.0f} dB<extra></extra>")
    fig.update_xaxes(title_text="seconds", row=2, col=1)
    fig.update_yaxes(title_text="mel band", row=2, col=1)
    fig.update_annotations(font_size=12)
    return fig.update_layout(template="plotly_white", height=height, margin=dict(l=45, r=10, t=30, b=40),
                             showlegend=False, title=dict(text=title, x=0, font=dict(size=13)))
