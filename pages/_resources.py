"""Process-wide resources every page shares: the RunManager, the metric and figure caches, the page's
scheduling priority, and a cheaper Keras cleanup.

Why a module of its own: these are the app's only `st.cache_resource` objects (one RunManager per runs
directory, its incremental metrics cache, the shared figure cache), built once per server process and
shared by every session; `st.session_state` only holds UI choices. Importing this module also installs
the cheaper per-run Keras cleanup (see `_cheap_keras_cleanup`), so every page gets it. Every engine error
is a `WorkbenchError` whose one-line message goes to `st.error`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from workbench.errors import WorkbenchError
from workbench.runs import RunManager, RunStore, default_runs_dir


def _cheap_keras_cleanup() -> None:
    """Keep Streamlit's per-run Keras cleanup, minus its full garbage collection.

    Once `keras` is imported (previews build models in this process), Streamlit calls
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
