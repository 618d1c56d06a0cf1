"""Runs: every run with its status; one run's live view (loss, LR, unfreezing, throughput, ETA).

The selected run lives in the URL (`?run=<id>`), so a reload or a shared link shows the same run.
The live view is a fragment that re-reads the run store once a second while the run is active; the
training thread never touches Streamlit.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from pages._shared import (
    ACTIVE,
    data_version,
    figure_cache,
    fmt_count,
    fmt_duration,
    fmt_time,
    fmt_value,
    from_zero,
    manager,
    metrics_cache,
    plot,
    runs_frame,
    status_badge,
)
from workbench import charts
from workbench.config import TrainConfig
from workbench.errors import WorkbenchError

store = manager().store
st.title("Runs")
frame = runs_frame()
if frame.empty:
    st.info("No runs yet. Start one on the Train page; it keeps training when you close the tab.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/play_arrow:")
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
labels = dict(zip(frame["id"], frame["state"] + "  ·  " + frame["name"] + "  ·  " + frame["id"], strict=True))


@st.fragment(run_every=2 if frame["status"].isin(ACTIVE).any() else None)
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
head, actions = st.columns([3, 2], vertical_alignment="center")
with head:
    st.subheader(record.name)
    status_badge(record.status)
    st.caption(f"{cfg.get('method')} on {cfg.get('model')} · dataset {cfg.get('data')} · seed {cfg.get('seed')} · "
               f"created {fmt_time(record.created)} · id `{record.id}`")
with actions:
    a, b = st.columns(2)
    if record.status in ACTIVE:
        if a.button("Stop", type="primary", icon=":material/stop:", width="stretch", key="runs_stop"):
            manager().stop(run_id)
            st.toast("Stopping after the current batch…")
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

smoothing = st.slider("Smoothing of the train loss", 0.0, 0.99, 0.6, 0.01, key="runs_smoothing",
                      help="TensorBoard-style debiased exponential moving average; the raw curve stays faint")


def _groups() -> list[str] | None:
    from workbench.models import MODELS, get_model_card

    model = cfg.get("model", "")
    return list(get_model_card(model).layer_groups) if model in MODELS else None


@st.fragment(run_every=1 if record.status in ACTIVE else None)
def live_view(was_active: bool) -> None:
    rec = store.get_run(run_id)
    if was_active and rec.status not in ACTIVE:
        st.rerun()  # the run just ended: redraw the header (no Stop button) and stop polling
    snap = manager().snapshot(run_id) or {}
    m = metrics_cache().run(run_id)
    train = m[m["key"] == "train/loss"]
    step = snap.get("step") or (int(train["step"].max()) if not train.empty else 0)
    total = snap.get("total_steps") or None
    epochs = snap.get("epochs") or cfg.get("epochs")
    epoch = snap.get("epoch", int(train["epoch"].max()) if not train.empty else 0)
    speed = m.loc[m["key"] == "train/examples_per_s", "value"]
    cols = st.columns(6)
    cols[0].metric("Step", f"{step:,}" + (f" / {total:,}" if total else ""))
    cols[1].metric("Epoch", f"{min(epoch + 1, epochs or 1)} / {epochs}" if step else "—")
    cols[2].metric("Train loss", fmt_value(snap.get("loss") if snap.get("loss") is not None
                                           else (train["value"].iloc[-1] if not train.empty else None)))
    cols[3].metric("Examples / s", fmt_count(speed.tail(20).median()) if not speed.empty else "—",
                   help="median of the last 20 steps")
    if rec.status in ACTIVE:
        cols[4].metric("ETA", fmt_duration(snap.get("eta_s")) if rec.status == "running" else "queued",
                       help=f"phase: {snap.get('phase', rec.status)}")
    else:
        cols[4].metric("Wall time", fmt_duration(rec.wall_s))
    share = (f"{100 * rec.trainable_params / rec.total_params:.2f}% of {fmt_count(rec.total_params)}"
             if rec.trainable_params and rec.total_params else None)
    cols[5].metric("Trainable params", fmt_count(rec.trainable_params), help=share)
    if rec.status == "running" and total:
        st.progress(min(step / total, 1.0), text=f"{snap.get('phase', 'training')} · {100 * step / total:.0f}%")
    elif rec.status == "queued":
        st.info("Queued: it starts when the run ahead of it finishes.")
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

    # The loss follows every refresh; the slower-changing charts rebuild at most every 5 s while a
    # run trains (building figures competes with the training thread for the GIL).
    cache, version = figure_cache(), data_version(m)
    slow = ("live", int(time.time() // 5), m.empty) if rec.status in ACTIVE else version
    left, right = st.columns(2, gap="medium")
    with left:
        fig = cache.get((run_id, "loss", smoothing, version),
                        lambda: charts.loss_figure(m, smoothing=smoothing, title="Loss"))
        plot(fig, f"{run_id}-loss", key="runs_loss")
    with right:
        plot(cache.get((run_id, "lr", slow), lambda: from_zero(charts.lr_figure(m))), f"{run_id}-lr", key="runs_lr")
    left, right = st.columns(2, gap="medium")
    with left:
        if m["key"].str.startswith("trainable/").any():
            fig = cache.get((run_id, "timeline", total, slow),
                            lambda: charts.timeline_figure(m, groups=_groups(), total_steps=total))
            plot(fig, f"{run_id}-timeline", key="runs_timeline")
        else:
            st.markdown("**Trainable layer groups**")
            hier = cfg.get("hierarchical", "off")
            st.caption("No unfreezing recorded: every trainable group trains from the first step."
                       if hier == "off" else f"Hierarchical {hier}: the timeline appears with the first stage.")
    with right:
        plot(cache.get((run_id, "throughput", slow), lambda: charts.throughput_figure(m)), f"{run_id}-throughput",
             key="runs_throughput")
    if rec.status in ACTIVE:
        st.caption("Live: metrics and loss refresh every second; learning rate, unfreezing and throughput every "
                   "5 seconds (drawing competes with the training thread for the CPU).")


live_view(record.status in ACTIVE)

with st.expander("Configuration"):
    shown = {k: v for k, v in cfg.items() if v not in (None, [], "")}
    st.dataframe(pd.DataFrame({"setting": list(shown), "value": [fmt_value(v) for v in shown.values()]}),
                 hide_index=True, width="stretch")
    st.caption(f"Artifacts: `{store.runs_dir / run_id}` · updated {time.strftime('%H:%M:%S', time.localtime(record.updated))}")
