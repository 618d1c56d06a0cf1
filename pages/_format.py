"""How the pages write numbers, durations, times, metric values and run statuses.

Why a module of its own: every page shows the same quantities, and they must read the same
everywhere ("1.23M" parameters, "2h 05m", "—" for a missing value, one icon and colour per status).
Plain functions (strings in, strings out) except `status_badge`, which draws.
"""

from __future__ import annotations

import math
import time
from typing import Any

import streamlit as st

ACTIVE = ("queued", "running", "paused")  # the statuses of a run not finished yet
# Plain Unicode symbols (not emoji): they render on machines without an emoji font too.
STATUS_ICON = {"queued": "◷", "running": "▶", "paused": "⏸", "completed": "✓", "stopped": "■", "failed": "✗",
               "interrupted": "⚠"}
STATUS_COLOR = {"queued": "gray", "running": "blue", "paused": "violet", "completed": "green", "stopped": "orange",
                "failed": "red", "interrupted": "orange"}


def fmt_count(n: float | None) -> str:
    """1_234_567 -> '1.23M'; None -> '—'."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "—"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{int(n):,}"


def fmt_duration(seconds: float | None) -> str:
    """'45s', '1m 20s', '2h 05m' (the engine's format: `workbench.runs.estimate.duration_text`); None -> '—'."""
    from workbench.runs.estimate import duration_text

    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    return duration_text(seconds)


def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "—"


def fmt_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):  # 4 significant digits; 3 below 0.001, so "0.000412" fits a metric's width
        return f"{v:.3g}" if 0 < abs(v) < 1e-3 else f"{v:.4g}"
    return str(v)


def status_label(status: str) -> str:
    return f"{STATUS_ICON.get(status, '')} {status}"


def status_badge(status: str) -> None:
    st.badge(status, color=STATUS_COLOR.get(status, "gray"))
