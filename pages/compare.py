"""Compare: overlay runs, diff their configs, tabulate their metrics, plot quality vs parameters.

The selection lives in the URL (`?runs=id1,id2`, a sweep `?sweep=<id>`), so a teacher can share the exact comparison.
"""

from __future__ import annotations

import streamlit as st

from pages._engine_calls import runs_frame
from pages._format import ACTIVE, status_label
from pages._nav import use_app_navigation
from pages._plots import PNG_NOTE, legend_right, no_legend, plot, roomy_scatter
from pages._resources import data_version, figure_cache, manager, metrics_cache
from pages._sweep_view import sweep_section
from workbench import charts, charts_events
from workbench.run_notes import no_effect_notes
from workbench.run_tables import config_diff, metrics_table
from workbench.runs import interventions

use_app_navigation()

st.title("Compare")
sweep_section()  # a sweep's trials (`?sweep=<id>`): parallel coordinates, table, the best with more seeds
frame = runs_frame()
if frame.empty:
    st.info("No runs yet. Start a few on the Train page — the class presets start a matched pair in one click.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/play_arrow:")
    st.stop()

ids = frame["id"].tolist()
by_id = frame.set_index("id")


def _url_selection() -> list[str]:
    raw = st.query_params.get("runs", "")
    return [r for r in dict.fromkeys(p.strip() for p in raw.split(",")) if r in by_id.index]


def _on_select() -> None:
    chosen = st.session_state["compare_runs"]
    if chosen:
        st.query_params["runs"] = ",".join(chosen)
    elif "runs" in st.query_params:
        del st.query_params["runs"]


# -- filters and selection ---------------------------------------------------------------------
tags = sorted({t for c in frame["config"] for t in (c.get("tags") or [])})
cols = st.columns(5 if tags else 4)
filters = {
    "model": cols[0].multiselect("Model", sorted(frame["model"].dropna().unique()), key="compare_f_model"),
    "dataset": cols[1].multiselect("Dataset", sorted(frame["dataset"].dropna().unique()), key="compare_f_data"),
    "method": cols[2].multiselect("Method", sorted(frame["method"].dropna().unique()), key="compare_f_method"),
    "status": cols[3].multiselect("Status", sorted(frame["status"].unique()), key="compare_f_status"),
}
tag_filter = cols[4].multiselect("Tag", tags, key="compare_f_tag") if tags else []
mask = frame["id"].notna()
for column, wanted in filters.items():
    if wanted:
        mask &= frame[column].isin(wanted)
if tag_filter:
    mask &= frame["config"].map(lambda c: bool(set(c.get("tags") or []) & set(tag_filter)))

from_url = _url_selection()
if "runs" not in st.query_params and st.session_state.get("compare_last"):
    from_url = [r for r in st.session_state["compare_last"] if r in by_id.index]  # back from another page
    if from_url:
        st.query_params["runs"] = ",".join(from_url)
if st.session_state.get("compare_runs") != from_url:
    st.session_state["compare_runs"] = from_url  # the URL wins: a shared link or the Train page's preset
options = list(dict.fromkeys([*from_url, *frame.loc[mask, "id"]]))
# No status in the label: a multiselect's value travels as its labels, and a label that changed while the run
# trained (running → completed) dropped that run from the selection (and from the URL) at the flip.
label = lambda i: f"{by_id.at[i, 'name']} · {i[-6:]}"  # noqa: E731
a, b = st.columns([5, 1], vertical_alignment="bottom")
a.multiselect("Runs to compare", options, format_func=label, key="compare_runs", on_change=_on_select,
              placeholder="pick runs (filters above narrow the list)")
if b.button("All filtered", width="stretch", key="compare_all", help="select every run the filters match"):
    st.query_params["runs"] = ",".join(frame.loc[mask, "id"].head(20))
    st.rerun()
selected = st.session_state["compare_runs"]
st.session_state["compare_last"] = selected
if not selected:
    st.info("Pick two or more runs. The selection is kept in the page URL: copy it to share this comparison.")
    st.stop()
runs = frame[frame["id"].isin(selected)].set_index("id").loc[selected].reset_index()
clash = runs["name"].duplicated(keep=False)  # same auto-name: tell them apart by the id's random tail
runs.loc[clash, "name"] = runs.loc[clash, "name"] + " · " + runs.loc[clash, "id"].str[-6:]

def _groups_of(model: str) -> list[str] | None:
    from workbench.models import layer_groups  # (loaded when the notes need it, not with the page)

    return layer_groups(model)


# -- chart controls ----------------------------------------------------------------------------
active = runs["status"].isin(ACTIVE).any()
first = metrics_cache().runs(selected)
keys = [k for k in first["key"].unique()  # (the explain parts' series have views of their own below)
        if not k.startswith(("trainable/", "test/", "change/", "grad/", "cache/", "feed/"))]
order = ["train/loss", "val/loss", "val/accuracy", "val/mae", "train/lr", "train/examples_per_s"]
keys = sorted(keys, key=lambda k: (order.index(k) if k in order else len(order), k)) or ["train/loss"]
c1, c2, c3, c4 = st.columns([2, 2.4, 2, 1.2], vertical_alignment="bottom")
key = c1.selectbox("Metric", keys, key="compare_key")
x = c2.segmented_control("x axis", ["step", "epoch", "examples", "wall"], default="step", required=True,
                         key="compare_x", help="examples = step × batch size; wall = seconds since training began")
smoothing = c3.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="compare_smoothing")
bands = c4.toggle("Seed bands", True, key="compare_bands",
                  help="Runs that differ only in seed become one mean line with a min–max band")
st.caption(PNG_NOTE)


@st.fragment(run_every=1 if active else None)
def curves() -> None:
    if manager().store.statuses(selected) != dict(zip(runs["id"], runs["status"], strict=True)):
        st.rerun()  # a run started, ended or failed: redraw the whole page (statuses, tables) once
    metrics = metrics_cache().runs(selected)
    cache, version = figure_cache(), (tuple(runs["id"]), tuple(runs["name"]), data_version(metrics), x, bands)
    marks = charts_events.named_marks(interventions.history(manager().store, list(runs["id"])),
                                      dict(zip(runs["id"], runs["name"], strict=True))) if x == "step" else ()
    main = cache.get(("compare", key, smoothing, *version, marks), lambda: charts_events.mark(legend_right(
        charts.compare_figure(metrics, runs, key=key, x=x, smoothing=smoothing, band_by_seed=bands)), marks))
    plot(main, f"compare-{key}", key="compare_main")
    left, right = st.columns(2, gap="medium")
    val_metric = next((k for k in ("val/accuracy", "val/mae") if k in set(metrics["key"])), None)
    others = [k for k in ("val/loss", val_metric) if k and k != key]
    for col, other in zip((left, right), others, strict=False):
        with col:
            fig = cache.get(("compare-small", other, *version, marks), lambda o=other: charts_events.mark(no_legend(
                charts.compare_figure(metrics, runs, key=o, x=x, smoothing=0.0, band_by_seed=bands)), marks))
            plot(fig, f"compare-{other}", key=f"compare_{other}")
    if others:
        st.caption("Colours as in the chart above.")
    if active:
        st.caption("Some runs are still training: curves refresh every second; tables when a run ends.")


curves()

# -- tables and efficiency ---------------------------------------------------------------------
metrics = metrics_cache().runs(selected)
notes = no_effect_notes(runs, metrics, _groups_of)
if notes:
    with st.expander(f"Toggles that changed nothing ({len(notes)})", expanded=True):
        st.markdown("\n".join(f"- **{name}**: {note}" for name, note in notes))
table = metrics_table(runs, metrics)
diff = config_diff(runs, interventions.summaries(manager().store, list(runs["id"])))
tab_metrics, tab_diff, tab_eff = st.tabs(["Metrics table", "Config diff", "Efficiency"])
with tab_metrics:
    st.dataframe(table, width="stretch", column_config={
        "trainable_params": st.column_config.NumberColumn("trainable params", format="compact"),
        "trainable_pct": st.column_config.NumberColumn("trainable %", format="%.2f%%"),
        "wall_s": st.column_config.NumberColumn("wall (s)", format="%.1f"),
        **{c: st.column_config.NumberColumn(c.replace("_", " "), format="%.4f")
           for c in table.columns if c.startswith(("final_", "best_", "test_", "source_"))}})
    if "source_after" in table:
        st.caption("source before → after: the pretrained model's own task, probed before and after fine-tuning "
                   "(how much it kept); source removed: the same with the trained parameters taken out.")
    st.download_button("Download table as CSV", table.to_csv().encode(), file_name="peft-workbench-compare.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore", key="compare_csv")
with tab_diff:
    if diff.empty:
        st.info("The selected runs share every setting." if len(selected) > 1 else "Pick a second run to diff.")
    else:
        st.caption("Only the settings that differ between the selected runs.")
        st.dataframe(diff.astype(str), width="stretch")
with tab_eff:
    numeric = [c for c in table.columns if c.startswith(("test_", "final_val_", "best_val"))
               and table[c].notna().any()]
    if not numeric:
        st.info("Efficiency needs a finished evaluation: it appears when a run has validation or test metrics.")
    else:
        default = next((c for c in ("test_accuracy", "final_val_accuracy", "test_mae", "best_val_loss")
                        if c in numeric), numeric[0])
        metric = st.selectbox("Quality metric", numeric, index=numeric.index(default), key="compare_eff")
        fig = roomy_scatter(charts.efficiency_figure(table.reset_index(), metric=metric))
        plot(fig, f"efficiency-{metric}", key="compare_eff_fig")
        st.caption("x: trainable parameters (log) · y: quality · bubble area: wall time · colour: method.")

st.caption("Status: " + " · ".join(f"{status_label(s)} {n}" for s, n in runs["status"].value_counts().items())
           + f" · {len(manager().active())} run(s) active in this app.")

from pages._explain import compare_sections  # noqa: E402 - (after the tables and the status: the slower parts last)

compare_sections(runs, manager().store)
