"""Compare's sweep section: pick a sweep (`?sweep=<id>`), watch its trials, start its best configuration again.

A sweep's trials are runs tagged `sweep:<id>`; `workbench.sweeps.sweep_frame` gives one row per trial.
The section draws a status line, the parallel-coordinates view (`workbench.charts_sweep`), the metric
per trial and the table of trials best first, and offers "the best configuration with N more seeds".
While the sweep runs it refreshes every few seconds (a fragment); when the sweep ends, once more in full.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pages._plots import no_legend, plot
from pages._resources import figure_cache, manager
from workbench import charts_sweep
from workbench.errors import WorkbenchError
from workbench.sweeps.values import planned_runs

REFRESH_S = 5
STATES = ("complete", "running", "pruned", "failed", "stopped")


def _on_pick() -> None:
    chosen = st.session_state["compare_sweep"]
    if chosen:
        st.query_params["sweep"] = chosen
    elif "sweep" in st.query_params:
        del st.query_params["sweep"]


def pick_sweep() -> Any:
    """The sweep picker (URL `sweep=<id>`); returns the chosen SweepRecord or None. Draws nothing without sweeps."""
    from workbench.sweeps import list_sweeps

    sweeps = {s.id: s for s in list_sweeps(manager().store)}
    if not sweeps:
        return None
    wanted = st.query_params.get("sweep")
    if wanted is None and st.session_state.get("compare_sweep_last") in sweeps:  # back from another page
        wanted = st.query_params["sweep"] = st.session_state["compare_sweep_last"]
    if wanted in sweeps and st.session_state.get("compare_sweep") != wanted:
        st.session_state["compare_sweep"] = wanted  # the URL wins: a shared link or the Train page's link
    elif st.session_state.get("compare_sweep") not in (None, *sweeps):
        st.session_state["compare_sweep"] = None
    # No status in the label: a selectbox's value travels as its label, so a label that changed when the
    # sweep ended would not match the chosen one any more.
    label = lambda i: f"{sweeps[i].name or 'sweep'} · {i[-6:]}"  # noqa: E731
    st.selectbox("Sweep", list(sweeps), index=None, key="compare_sweep", on_change=_on_pick, format_func=label,
                 placeholder=f"{len(sweeps)} sweep(s): pick one to see its trials")
    chosen = st.session_state.get("compare_sweep")
    st.session_state["compare_sweep_last"] = chosen
    return sweeps.get(chosen) if chosen else None


def status_line(record: Any, frame: pd.DataFrame) -> str:
    counts = frame["state"].value_counts() if not frame.empty else pd.Series(dtype=int)
    planned = planned_runs(record.spec)
    parts = [f"{int(counts[s])} {s}" for s in STATES if counts.get(s, 0)]
    of = f" of {planned}" if planned else ""
    head = f"**{record.status}** · {len(frame)} trial{'s' if len(frame) != 1 else ''}{of} started"
    return head + (": " + " · ".join(parts) if parts else "")


def _table(frame: pd.DataFrame, params: list[str], minimize: bool) -> pd.DataFrame:
    names = {}
    ids = [r for r in frame["run_id"].dropna()]
    if ids:
        runs = manager().store.runs_frame(ids)
        if not runs.empty:
            names = dict(zip(runs["id"], runs["name"], strict=True))
    table = frame.assign(run=frame["run_id"].map(lambda r: names.get(r, r)))
    # Complete trials first, by the metric: a pruned trial's value is from an earlier epoch, not comparable.
    table = table.assign(_out=table["state"] != "complete").sort_values(
        ["_out", "value"], ascending=[True, minimize], na_position="last", kind="stable").drop(columns="_out")
    table["open"] = "/runs?run=" + table["run_id"].fillna("")
    columns = ["trial", "state", *[p for p in params if p in table], "value", "epochs_done", "run", "open"]
    table = table[[c for c in columns if c in table] + ["run_id"]]
    return table.assign(**{p: table[p].map(charts_sweep.format_value) for p in params if p in table
                           and not pd.api.types.is_numeric_dtype(table[p])})


def _best_with_seeds(record: Any, frame: pd.DataFrame) -> None:
    from workbench.sweeps import best_config, start_best_with_seeds

    done = frame["state"].eq("complete") & frame["value"].notna() if not frame.empty else pd.Series(dtype=bool)
    n = int(st.number_input("More seeds", 1, 10, 3, key="sweep_more_seeds",
                           help="the best trial's settings, trained again with this many new seeds"))
    if st.button(f"Start the best configuration with {n} more seed{'s' if n > 1 else ''}", width="stretch",
                 key="sweep_best_start", disabled=not done.any(), icon=":material/replay:"):
        try:
            seed = int(best_config(manager().store, record.id).get("seed") or 0)
            used = {int(s) for s in frame["seed"].dropna()} if "seed" in frame else set()
            seeds, s = [], seed + 1
            while len(seeds) < n:
                if s not in used:
                    seeds.append(s)
                s += 1
            ids = start_best_with_seeds(manager(), record.id, seeds)
        except WorkbenchError as exc:
            st.error(str(exc))
        else:
            best = record.best_run_id or frame.loc[done].iloc[0]["run_id"]
            st.session_state["sweep_best_runs"] = [best, *ids]
    started = st.session_state.get("sweep_best_runs")
    if started:
        st.success(f"Started {len(started) - 1} run(s) of the best configuration (seeds after the best trial's).")
        st.page_link("pages/compare.py", label="Compare them with the best trial", icon=":material/compare_arrows:",
                     query_params={"runs": ",".join(started)})


def sweep_section() -> None:
    """The picker and, for a chosen sweep, its live section."""
    from workbench.sweeps import get_sweep, stop_sweep, sweep_frame

    record = pick_sweep()
    if record is None:
        return
    spec, store = record.spec, manager().store
    params = list(spec.get("params") or {})
    metric = spec.get("metric") or "val_accuracy"
    direction = spec.get("direction")
    minimize = direction == "minimize" if direction else charts_sweep.lower_is_better(metric)
    running = record.status == "running"

    @st.fragment(run_every=REFRESH_S if running else None)
    def live() -> None:
        now = get_sweep(store, record.id)
        if now is not None and now.status != record.status:
            st.rerun()  # the sweep ended (or was stopped): redraw once in full, and stop refreshing
        frame = sweep_frame(store, record.id)
        st.markdown(status_line(now or record, frame) + f" · metric **{metric}** ({'lower' if minimize else 'higher'}"
                    " is better)" + (f" · refreshes every {REFRESH_S} s" if running else ""))
        if record.error:
            st.error(record.error)
        version = (record.id, len(frame)) if frame.empty else (
            record.id, len(frame), tuple(frame["state"]), tuple(frame["value"].fillna(-1e300)))
        cache = figure_cache()
        fig = cache.get(("sweep-parcoords", *version), lambda: charts_sweep.parallel_coordinates(
            frame, spec.get("params") or params, metric, direction=direction, title=f"Sweep {record.name or record.id[-6:]}: "
            f"{metric} by setting"))
        plot(fig, f"sweep-{record.id}", key="sweep_parcoords")
        st.caption("One line per trial; drag along an axis to filter. Blue lines scored best, orange worst; light grey: "
                   "still running; grey: pruned, failed or stopped; '—': no value (yet).")
        table = _table(frame, params, minimize) if not frame.empty else frame
        st.dataframe(table, hide_index=True, width="stretch", height=min(420, 38 + 35 * max(len(table), 1)),
                     column_config={"value": st.column_config.NumberColumn(metric, format="%.4f"),
                                    "epochs_done": st.column_config.NumberColumn("epochs"),
                                    "open": st.column_config.LinkColumn("run page", display_text="open"),
                                    "run_id": None},
                     key="sweep_table")
        left, right = st.columns([3, 2], gap="large", vertical_alignment="center")
        with left:
            trend = cache.get(("sweep-trials", *version), lambda: charts_sweep.trial_values(
                frame, metric, direction=direction))
            plot(no_legend(trend) if len(trend.data) < 2 else trend, f"sweep-trials-{record.id}", key="sweep_trials")
        with right:
            if not frame.empty:
                _best_with_seeds(record, frame)
                if st.button("Overlay its runs below", key="sweep_overlay", width="stretch", icon=":material/stacked_line_chart:",
                             help="put the sweep's runs (best first, at most 20) into the run selection"):
                    st.query_params["runs"] = ",".join(table["run_id"].dropna().head(20))
                    st.rerun()
            if running and st.button("Stop sweep", key="sweep_stop", width="stretch", icon=":material/stop_circle:",
                                     help="stops its running trials and starts no new ones"):
                stop_sweep(manager(), record.id)
                st.rerun()

    with st.container(border=True):
        live()
