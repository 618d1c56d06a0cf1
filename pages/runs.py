"""Runs: every run with its status; one run's live view (loss, LR, unfreezing, throughput, ETA).

The selected run lives in the URL (`?run=<id>`), so a reload or a shared link shows the same run.
The live view is a fragment that re-reads the run store once a second while the run is active; the
training thread never touches Streamlit.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from pages import _steer as steer
from pages._engine_calls import runs_frame
from pages._format import ACTIVE, fmt_count, fmt_duration, fmt_time, fmt_value, status_badge
from pages._nav import use_app_navigation
from pages._plots import from_zero, plot
from pages._resources import data_version, figure_cache, manager, metrics_cache
from workbench import charts, charts_events
from workbench.config import TrainConfig
from workbench.errors import WorkbenchError
from workbench.runs import interventions
from workbench.runs.bundles import origin_text
from workbench.runs.manager import phase_summary, progress_now, training_age

use_app_navigation()

store = manager().store
st.title("Runs")
frame = runs_frame()
if frame.empty:
    st.info("No runs yet. Start one on the Train page; it keeps training when you close the tab.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/play_arrow:")
    with st.expander("Import runs someone shared (.zip)", expanded=True):
        from pages._bundles import bundle_panel

        bundle_panel(store, [])
    st.stop()


# -- which run: URL first, then this session's last choice, then the newest ----------------------
def _pick(ids: list[str]) -> str:
    wanted = st.query_params.get("run")
    if wanted:
        try:
            wanted = store.resolve_id(wanted)
        except WorkbenchError as exc:
            st.warning(f"The link's run is unknown here: {exc}")
            wanted = None
        else:
            if wanted not in ids:
                st.warning(f"The link's run is unknown here (deleted, or another runs folder): {wanted}")
    for candidate in (wanted, st.session_state.get("selected_run")):
        if candidate in ids:
            return candidate
    return ids[0]


def _on_pick() -> None:
    st.session_state["selected_run"] = st.session_state["runs_pick"]
    st.query_params["run"] = st.session_state["runs_pick"]


ids = frame["id"].tolist()
run_id = _pick(ids)
st.session_state["selected_run"] = run_id
st.session_state["runs_pick"] = run_id
if st.query_params.get("run") != run_id:
    st.query_params["run"] = run_id
# Labels without the status: a widget's value travels as its label, so a label that changes while a run trains
# (queued → running → completed) would drop the run from the choice (the status is in the badge and the table).
labels = dict(zip(frame["id"], frame["name"] + "  ·  " + frame["id"], strict=True))


@st.fragment(run_every=30 if frame["status"].isin(ACTIVE).any() else None)  # each run's own view is live
def runs_table() -> None:
    table = runs_frame()
    metric_cols = [c for c in ("test_accuracy", "test_mae", "best_val_loss") if c in table]
    view = table[["state", "name", "model", "dataset", "method", *metric_cols, "trainable_params", "wall_s",
                  "created", "id"]].copy()
    view["created"] = pd.to_datetime(view["created"], unit="s", utc=True).dt.tz_convert(None)
    st.dataframe(view, hide_index=True, height=min(320, 38 + 35 * len(view)), column_config={
        "state": st.column_config.TextColumn("status", width="medium"),
        "trainable_params": st.column_config.NumberColumn("trainable", format="compact"),
        "wall_s": st.column_config.NumberColumn("wall (s)", format="%.1f"),
        "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm"),
        **{c: st.column_config.NumberColumn(c.replace("_", " "), format="%.4f") for c in metric_cols}})


with st.expander(f"All runs ({len(frame)})", expanded=len(frame) > 1):
    runs_table()
st.selectbox("Run", ids, format_func=labels.get, key="runs_pick", on_change=_on_pick)

record = store.get_run(run_id)
cfg = record.config


def _stop() -> None:
    manager().stop(run_id)  # writes stop_requested: this rerun and every other tab show "stopping…"


stopping = record.status in ACTIVE and record.stop_requested is not None
head, actions = st.columns([3, 2], vertical_alignment="center")
with head:
    st.subheader(record.name)
    if stopping:
        st.badge("stopping…", color="orange", icon=":material/hourglass_top:")
    else:
        status_badge(record.status)
    st.caption(f"{cfg.get('method')} on {cfg.get('model')} · dataset {cfg.get('data')} · seed {cfg.get('seed')} · "
               f"created {fmt_time(record.created)} · id `{record.id}`")
    if origin_text(record):
        st.badge(origin_text(record), color="gray", icon=":material/move_to_inbox:")
with actions:
    a, b = st.columns(2)
    if record.status in ACTIVE:
        a.button("Stopping…" if stopping else "Stop", type="primary", icon=":material/stop:", width="stretch",
                 key="runs_stop", on_click=_stop, disabled=stopping,
                 help="The run ends after its current batch; its curves and weights so far are kept")
    else:
        a.download_button("Metrics CSV", store.metrics(run_id).to_csv(index=False).encode(),
                          file_name=f"{run_id}-metrics.csv", mime="text/csv", width="stretch",
                          icon=":material/download:", on_click="ignore", key="runs_csv")
    if b.button(f"Run again, seed {int(cfg.get('seed', 0)) + 1}", width="stretch", key="runs_again",
                help="Same config, next seed: repeat runs become a band on the Compare page"):
        try:
            again = TrainConfig.from_dict({**cfg, "seed": int(cfg.get("seed", 0)) + 1, "name": None})
            new_id = manager().start(again)
        except WorkbenchError as exc:
            st.error(str(exc))
        else:
            st.session_state["selected_run"] = new_id
            st.query_params["run"] = new_id
            st.rerun()



def _groups() -> list[str] | None:
    from workbench.models import layer_groups

    return layer_groups(cfg.get("model"))


steer.controls(record, store, manager(), _groups())
smoothing = st.slider("Smoothing of the train loss", 0.0, 0.99, 0.6, 0.01, key="runs_smoothing",
                      help="TensorBoard-style debiased exponential moving average; the raw curve stays faint")


# While a run trains, three fragments refresh at their own pace: the status (from the store's progress
# row, no metric read) every 2 s while the run starts, stops or is in its first 10 s of training, then
# every 5 s; the charts every 5 s, then 10 s; the table of all runs every 30 s; plus one full redraw when
# the first points arrive and one 10 s into training. Measured in Chromium (bench row 7a): a fragment
# run costs the browser ~45 ms of CPU whatever it shows, a chart redraw ~130 ms, an unchanged figure
# nothing (Streamlit leaves it as drawn), and on a shared machine that CPU comes out of the run. So a
# chart's figure changes only as often as its content does: the loss per chart refresh, LR and
# throughput every 30 s, the unfreezing timeline at each new stage. Figures are shared by every tab
# (FigureCache), built from downsampled series (300 points per curve while live).
LIVE = record.status in ACTIVE
LIVE_POINTS = 300  # points per curve while live (2 px apiece at the chart's width; 2000 once the run ended)
YOUNG_S = 10  # seconds of training after which every chart is redrawn once (then each at its own pace)


def _young(rec) -> bool:
    """Active and trained for less than YOUNG_S (its slower charts were drawn from its first points)."""
    age = training_age(rec, time.time())
    return rec.status in ACTIVE and (age is None or age < YOUNG_S)


YOUNG = _young(record)
STATUS_EVERY, LOSS_EVERY, SLOW_EVERY = 5, 10, 30  # seconds between redraws while live
STATUS_EVERY_EVENTFUL, LOSS_EVERY_YOUNG = 2, 5  # ... while it starts or is young; status 1 s once Stop was pressed


def _status_every(rec) -> float | None:
    """Seconds between status refreshes: quick while something is about to change, calm while it trains."""
    if rec.status not in ACTIVE:
        return None
    if rec.stop_requested:
        return 1
    return STATUS_EVERY_EVENTFUL if YOUNG or rec.status == "queued" else STATUS_EVERY


@st.fragment(run_every=_status_every(record))
def live_status(was: str, stop_seen: float | None, no_step_yet: bool, was_young: bool) -> None:
    rec = store.get_run(run_id)
    first_points = no_step_yet and (rec.progress or {}).get("step", 0) > 0
    grown_up = was_young and not _young(rec)
    if rec.status != was or rec.stop_requested != stop_seen or first_points or grown_up:
        st.rerun()  # ended, paused, Stop pressed elsewhere, the first points, or 10 s of training: redraw all once
    snap = progress_now(rec) if rec.progress else {}
    m = None if rec.status in ACTIVE else metrics_cache().run(run_id)
    train = m[m["key"] == "train/loss"] if m is not None else None
    step = snap.get("step") or (int(train["step"].max()) if train is not None and not train.empty else 0)
    total = snap.get("total_steps") or None
    epochs = snap.get("epochs") or cfg.get("epochs")
    epoch = snap.get("epoch", int(train["epoch"].max()) if train is not None and not train.empty else 0)
    cols = st.columns(6)
    cols[0].metric(f"Step (of {total:,})" if total else "Step", f"{step:,}")
    cols[1].metric("Epoch", f"{min(epoch + 1, epochs or 1)} / {epochs}" if step else "—")
    loss = snap.get("loss")
    if loss is None and train is not None and not train.empty:
        loss = train["value"].iloc[-1]
    cols[2].metric("Train loss", fmt_value(loss))
    if m is not None:
        speed = m.loc[m["key"] == "train/examples_per_s", "value"].tail(20).median()
    else:
        speed = snap.get("examples_per_s")
    cols[3].metric("Examples / s", fmt_count(speed) if speed is not None and speed == speed else "—",
                   help="the latest step while training; the median of the last 20 steps once it ended")
    if rec.status in ACTIVE:
        eta = snap.get("eta_s")
        shown = fmt_duration(eta) if eta is not None else ("queued" if rec.status == "queued" else "—")
        cols[4].metric("ETA", f"{shown} + pause" if rec.status == "paused" else shown,
                       help=f"phase: {snap.get('phase', rec.status)}; the ETA appears after the first steps "
                            "(a paused run: the time it still needs once it continues)")
    else:
        cols[4].metric("Wall time", fmt_duration(rec.wall_s))
    share = (f"{100 * rec.trainable_params / rec.total_params:.2f}% of {fmt_count(rec.total_params)}"
             if rec.trainable_params and rec.total_params else None)
    cols[5].metric("Trainable params", fmt_count(rec.trainable_params), help=share)
    phase = snap.get("phase") or rec.status
    if rec.status == "running" and rec.stop_requested:
        st.progress(min(step / total, 1.0) if total else 0.0, text="stopping after the current batch…")
    elif rec.status == "running" and phase == "training" and total:
        st.progress(min(step / total, 1.0), text=f"training · {100 * step / total:.0f}%")
    elif rec.status == "running":
        st.progress(min(step / total, 1.0) if total else 0.0, text=f"{phase}…")
    elif rec.status == "queued":
        ahead = manager().active().index(run_id) if run_id in manager().active() else None
        st.info("Queued: it starts when the run ahead of it finishes." if not ahead
                else f"Queued: {ahead} run(s) ahead of it; it starts when a worker is free.")
    if snap.get("phases"):
        st.caption("Phases: " + phase_summary(snap, time.time()))
    st.caption(f"Device: {rec.device or '—'}" + (f" · trainable: {share}" if share else "")
               + (f" · started {fmt_time(rec.started)}" if rec.started else ""))
    if rec.error:
        where = f" at step {rec.error_step}" if rec.error_step is not None else ""
        st.error(f"{rec.status.capitalize()}{where}: {rec.error}")
        trace = store.runs_dir / run_id / "error.txt"
        if trace.is_file():
            with st.expander("Traceback"):
                st.code(trace.read_text()[-6000:], language="text")
    final = {k: v for k, v in rec.final_metrics.items()
             if k.startswith(("test_", "best_val", "val_")) and isinstance(v, int | float)}
    if final:
        fc = st.columns(min(len(final), 6))
        for col, (k, v) in zip(fc, list(final.items())[:6], strict=False):
            col.metric(k.replace("_", " "), fmt_value(v))
    if "test_accuracy_before" in final and "test_accuracy" in final:  # the spoken-digit model on a voice
        before, after = final["test_accuracy_before"], final["test_accuracy"]
        st.info(f"Test accuracy before adaptation (the pretrained model as shipped, on this run's test recordings) "
                f"**{before:.3f}** → after **{after:.3f}** ({after - before:+.3f}).", icon=":material/record_voice_over:")


def _version(m: pd.DataFrame, every: float) -> tuple:
    """What a figure is keyed by: a time bucket while live (one build per interval for every tab)."""
    return ("live", int(time.time() // every), m.empty) if LIVE else data_version(m)


LOSS_NOW = LOSS_EVERY_YOUNG if YOUNG else LOSS_EVERY


@st.fragment(run_every=LOSS_NOW if LIVE else None)
def live_charts() -> None:
    """The four charts in one fragment. Each figure is keyed by when its content changes (the loss per
    LOSS_NOW, LR and throughput per SLOW_EVERY, the timeline per stage change): the browser redraws a
    chart only when its figure changed (an identical one is left as drawn), and one fragment run costs
    the browser less than one per chart."""
    m = metrics_cache().run(run_id)
    cache, points = figure_cache(), LIVE_POINTS if LIVE else 2000
    marks = charts_events.marks(interventions.history(store, run_id))  # (step, label) of each intervention

    def get(key: tuple, build):  # every chart marks the interventions (and is rebuilt when one is added)
        return cache.get((*key, marks), lambda: charts_events.mark(build(), marks))

    left, right = st.columns(2, gap="medium")
    with left:
        plot(get((run_id, "loss", smoothing, _version(m, LOSS_NOW)),
                       lambda: charts.loss_figure(m, smoothing=smoothing, title="Loss", max_points=points)),
             f"{run_id}-loss", key="runs_loss", live=LIVE)
    with right:
        plot(get((run_id, "lr", _version(m, SLOW_EVERY)), lambda: from_zero(charts.lr_figure(m, max_points=points))),
             f"{run_id}-lr", key="runs_lr", live=LIVE)
    left, right = st.columns(2, gap="medium")
    with left:
        stages = m[m["key"].str.startswith("trainable/")]
        if not stages.empty:
            total = (store.get_run(run_id).progress or {}).get("total_steps") or None
            tied = bool(cfg.get("tie_layers"))
            version = ("live", len(stages)) if LIVE else data_version(m)
            plot(get((run_id, "timeline", total, tied, version),
                           lambda: charts.timeline_figure(m, groups=_groups(), total_steps=total, tied=tied)),
                 f"{run_id}-timeline", key="runs_timeline", live=LIVE)
        else:
            st.markdown("**Trainable layer groups**")
            hier = cfg.get("hierarchical", "off")
            st.caption("No unfreezing recorded: every trainable group trains from the first step."
                       if hier == "off" else f"Hierarchical {hier}: the timeline appears with the first stage.")
    with right:
        plot(get((run_id, "throughput", _version(m, SLOW_EVERY)),
                       lambda: charts.throughput_figure(m, max_points=points)),
             f"{run_id}-throughput", key="runs_throughput", live=LIVE)


live_status(record.status, record.stop_requested, (record.progress or {}).get("step", 0) == 0, YOUNG)
if not LIVE:  # say when a toggle changed nothing: "plateau ≈ constant" is no finding if it never fired
    from workbench.run_notes import run_notes

    for note in run_notes(cfg, metrics_cache().run(run_id), _groups()):
        st.info(note, icon=":material/info:")
live_charts()
steer.history(store, run_id)
if not LIVE:
    from pages._explain import run_sections

    run_sections(record, store)
if LIVE:
    st.caption(f"Live: status every {STATUS_EVERY} seconds, the loss every {LOSS_NOW}, learning rate and throughput "
               f"every {SLOW_EVERY}, the unfreezing timeline at each new stage; "
               "charts become interactive when the run ends (the run trains in its own process, and a page that "
               "redraws less leaves it more of the CPU). What changed where, what it kept of its source task, its "
               "predictions and a try-it box appear when it ends.")

with st.expander("Share runs as a zip · import runs"):
    from pages._bundles import bundle_panel

    bundle_panel(store, [run_id])

with st.expander("Configuration"):
    shown = {k: v for k, v in cfg.items() if v not in (None, [], "")}
    st.dataframe(pd.DataFrame({"setting": list(shown), "value": [fmt_value(v) for v in shown.values()]}),
                 hide_index=True, width="stretch")
    st.caption(f"Artifacts: `{store.runs_dir / run_id}` · updated {time.strftime('%H:%M:%S', time.localtime(record.updated))}")
