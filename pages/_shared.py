"""Shared UI plumbing for every page: the RunManager, cached engine calls, formatting, charts.

Rules the pages follow: the RunManager (one per runs directory) is the only `st.cache_resource`
besides the metrics cache that reads the run store incrementally; `st.session_state` only holds UI
choices; every engine error is a `WorkbenchError` whose one-line message goes to `st.error`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages._nav import use_app_navigation  # noqa: F401  (re-exported: every page calls it first)
from workbench.errors import WorkbenchError
from workbench.runs import RunManager, RunStore, default_runs_dir

ACTIVE = ("queued", "running")
# Plain Unicode symbols (not emoji): they render on machines without an emoji font too.
STATUS_ICON = {"queued": "◷", "running": "▶", "completed": "✓", "stopped": "■", "failed": "✗",
               "interrupted": "⚠"}
STATUS_COLOR = {"queued": "gray", "running": "blue", "completed": "green", "stopped": "orange",
                "failed": "red", "interrupted": "orange"}
PNG_NOTE = "Every chart downloads as PNG from the camera icon in its toolbar (top right, on hover)."


def _cheap_keras_cleanup() -> None:
    """Keep Streamlit's per-run Keras cleanup, minus its full garbage collection.

    Once `keras` is imported (previews build models here), Streamlit calls
    `keras.backend.clear_session()` after every script run, fragment refreshes included, and by
    default that runs `gc.collect()`: measured, 35 % of the server's CPU while three tabs watched a
    live run. Nothing trains in this process (engine workers do), so the cleanup keeps its reset of
    Keras's global state and skips the collection; Python's own collector still runs as usual.
    """
    import keras

    original = keras.backend.clear_session
    if getattr(original, "workbench_cheap", False):
        return

    def clear_session(free_memory: bool = False) -> None:
        original(free_memory=free_memory)

    clear_session.workbench_cheap = True
    keras.backend.clear_session = clear_session


_cheap_keras_cleanup()


# -- shared resources --------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _manager_for(runs_dir: str) -> RunManager:
    """Runs train in engine worker processes (WORKBENCH_WORKERS of them, default 1: one run at a time
    on a small machine), started with the app; WORKBENCH_EXECUTOR=thread trains in this process."""
    executor = os.environ.get("WORKBENCH_EXECUTOR", "process")
    return RunManager.get(runs_dir, executor=executor, max_concurrent=max(1, int(os.environ.get("WORKBENCH_WORKERS", "1"))))


PAGE_NICE = 10  # how much lower than training a page's script run is scheduled (see `_page_priority`)


def manager() -> RunManager:
    """The process-wide RunManager of WORKBENCH_RUNS_DIR (default ./runs); stops the page on error."""
    try:
        found = _manager_for(str(default_runs_dir().resolve()))
    except WorkbenchError as exc:
        st.error(str(exc))
        st.stop()
    if found.executor == "process":  # (a thread executor would start its training threads from this one)
        _page_priority()
    return found


def _page_priority() -> None:
    """Schedule this script run (one thread) below the training runs: a page waits, a run does not.

    Linux nice values are per thread, and each script run gets a fresh thread from Streamlit's
    event loop (nice 0), so this lowers only the page being drawn now. It runs after the manager
    exists: the pool's supervisor threads, which start the engine workers, keep nice 0, and so do
    the workers (an unprivileged process cannot raise a priority back).
    """
    if not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, tid) < PAGE_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, PAGE_NICE)


class MetricsCache:
    """Metric frames per run, read incrementally: each refresh fetches only the newest steps.

    A live page polls every second; re-reading a 50k-step run each time would cost more than the
    chart. Rows of a step below the newest one are complete (the recorder flushes in step order),
    so only rows at or after the newest cached step are fetched again.
    """

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._frames: dict[str, pd.DataFrame] = {}
        self._lock = threading.Lock()

    def run(self, run_id: str) -> pd.DataFrame:
        with self._lock:
            cached = self._frames.get(run_id)
        if cached is None or cached.empty:
            frame = self.store.metrics(run_id)
        else:
            last = int(cached["step"].max())
            fresh = self.store.metrics(run_id, since_step=last - 1)
            frame = pd.concat([cached[cached["step"] < last], fresh], ignore_index=True)
        with self._lock:
            self._frames[run_id] = frame
        return frame

    def runs(self, run_ids: list[str]) -> pd.DataFrame:
        frames = [self.run(r) for r in run_ids]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame(columns=["run_id", "step", "epoch", "key", "value", "wall"])
        return pd.concat(frames, ignore_index=True)


@st.cache_resource(show_spinner=False)
def _metrics_for(runs_dir: str) -> MetricsCache:
    return MetricsCache(RunManager.get(runs_dir).store)


def metrics_cache() -> MetricsCache:
    manager()  # surfaces an unwritable runs dir as st.error first
    return _metrics_for(str(default_runs_dir().resolve()))


class FigureCache:
    """Engine figures memoised by what they show (run ids, data version, options).

    Building a Plotly figure costs 50–250 ms of Python, which the training thread feels (the GIL);
    a class of 30 students watching one live run shares one build per update instead of 30.
    Figures are never mutated after `build` returns them, so sessions can share them.
    """

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[tuple, go.Figure] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, key: tuple, build: Callable[[], go.Figure]) -> go.Figure:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        fig = build()
        with self._lock:
            self._items[key] = fig
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return fig


@st.cache_resource(show_spinner=False)
def figure_cache() -> FigureCache:
    return FigureCache()


def data_version(metrics: pd.DataFrame) -> tuple[int, int]:
    """What a figure of `metrics` depends on: row count and newest step."""
    return (len(metrics), int(metrics["step"].max()) if not metrics.empty else -1)


# -- cached engine calls -----------------------------------------------------------------------
@st.cache_data(show_spinner="Building the model to count its parameters…", max_entries=64)
def preview(config: dict[str, Any]):
    """`workbench.preview.preview` for a config dict (name and tags do not change it)."""
    from workbench.config import TrainConfig
    from workbench.preview import preview as engine_preview

    return engine_preview(TrainConfig.from_dict(config))


@st.cache_data(show_spinner="Building the model to read its layer shapes…", max_entries=16)
def lora_shapes(model: str) -> pd.DataFrame:
    """The (d_in, d_out) of every LoRA target layer of a registered model, grouped by layer name."""
    from workbench import data as wdata
    from workbench.models import BuildContext, build_task_model, get_model_card
    from workbench.peft.lora_layers import matrix_shape

    card = get_model_card(model)
    dataset = wdata.load(next(d.name for d in wdata.list_datasets() if d.modality == card.modality))
    ctx = BuildContext(task=dataset.card.task, num_classes=dataset.num_classes, x_train=dataset.x[:64],
                       y_train=dataset.y[:64])
    task_model = build_task_model(model, ctx, card.modality)
    rows = [(layer.name, *matrix_shape(layer)) for layer in task_model.lora_target_layers(None)]
    frame = pd.DataFrame(rows, columns=["layer", "d_in", "d_out"])
    return frame.groupby(["layer", "d_in", "d_out"], sort=False).size().rename("count").reset_index()


@st.cache_data(show_spinner=False)
def supports(method: str, **options: Any) -> bool:
    """Whether TrainConfig accepts `method` with `options` (asks the engine's own validation)."""
    from workbench.config import TrainConfig

    try:
        TrainConfig(method=method, **options)
    except WorkbenchError:
        return False
    return True


def method_names() -> list[str]:
    from workbench.peft import method_names as names

    return names()


def method_description(name: str) -> str:
    from workbench.peft import METHODS

    return METHODS[name].description


# -- formatting --------------------------------------------------------------------------------
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


# -- charts ------------------------------------------------------------------------------------
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


def runs_frame() -> pd.DataFrame:
    """All runs, newest first, with a status label column for tables."""
    frame = manager().store.runs_frame()
    if not frame.empty:
        frame.insert(0, "state", frame["status"].map(status_label))
    return frame
