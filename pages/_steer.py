"""The Runs page's controls for one run: pause / continue, steer (LR, unfreeze, freeze, stop after this
epoch), resume from the checkpoint, run again with changes; and the list of what was asked and done.

Every control writes a request through the run manager (`RunManager.steer`, `RunManager.resume`): the
run applies it at its next step and records the step, which the charts mark. Thin: no logic here.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from pages._format import ACTIVE, fmt_duration
from workbench.errors import WorkbenchError
from workbench.runs import interventions
from workbench.runs.store import RESUMABLE
from workbench.train import checkpoint
from workbench.train.steering import pause_limit_s


def _ask(mgr, run_id: str, kind: str, **args) -> None:
    try:
        item = mgr.steer(run_id, kind, source="app", **args)
    except WorkbenchError as exc:
        st.session_state["steer_error"] = str(exc)
    else:
        st.session_state["steer_sent"] = f"Sent: {item.label()}. It applies at the run's next step."


def controls(record, store, mgr, groups: list[str] | None) -> None:
    """Pause/continue and steering for an active run; Resume and "Run again with changes" for an ended one."""
    for key, show in (("steer_error", st.error), ("steer_sent", st.success)):
        if key in st.session_state:
            show(st.session_state.pop(key))
    if record.status in ACTIVE:
        _active_controls(record, store, mgr, groups or [])
    else:
        _ended_controls(record, store, mgr)


def _active_controls(record, store, mgr, groups: list[str]) -> None:
    run_id, paused = record.id, record.status == "paused"
    waiting = interventions.pending(store, run_id)
    asked_pause = any(i.kind == "pause" for i in waiting)
    a, b, c = st.columns(3)
    if paused:
        a.button("Continue", type="primary", icon=":material/play_arrow:", width="stretch", key="steer_unpause",
                 on_click=_ask, args=(mgr, run_id, "unpause"), disabled=any(i.kind == "unpause" for i in waiting))
    else:
        a.button("Pausing…" if asked_pause else "Pause", icon=":material/pause:", width="stretch", key="steer_pause",
                 on_click=_ask, args=(mgr, run_id, "pause"), disabled=asked_pause or record.stop_requested is not None,
                 help="The run waits between two steps; its model and optimizer stay in memory")
    b.button("Stop after this epoch", icon=":material/last_page:", width="stretch", key="steer_stop_epoch",
             on_click=_ask, args=(mgr, run_id, "stop_epoch"),
             help="Training ends when the current epoch ends; the run is evaluated and explained as usual")
    if paused:
        since = interventions.paused_since(store, run_id)
        queued = len(store.list_runs(statuses=["queued"]))
        c.caption(f"Paused {fmt_duration(time.time() - since) if since else ''}. A paused run keeps its worker: "
                  f"if it stays paused {fmt_duration(pause_limit_s())} while another run waits for one, it stops "
                  f"at its last epoch checkpoint so that run can start; Resume continues it. "
                  f"{queued} run(s) waiting now.")
    with st.expander("Steer this run: learning rate, unfreeze, freeze", expanded=paused):
        l1, l2, l3, l4 = st.columns([1.2, 1, 1.4, 1], vertical_alignment="bottom")
        how = l1.segmented_control("Learning rate", ["scale", "set"], default="scale", required=True, key="steer_how")
        value = (l2.select_slider("by", [0.1, 0.2, 0.5, 2.0, 5.0], value=0.1, key="steer_scale") if how == "scale"
                 else l2.number_input("to", 1e-7, 0.99, 1e-4, format="%g", key="steer_set"))
        group = l3.selectbox("for", ["every group", *groups], key="steer_lr_group")
        l4.button("Apply", key="steer_lr", width="stretch", on_click=_ask, args=(mgr, run_id, "lr"),
                  kwargs={how: float(value), "group": None if group == "every group" else group})
        u1, u2, f1, f2 = st.columns([1.4, 1, 1.4, 1], vertical_alignment="bottom")
        target = u1.selectbox("Unfreeze", ["the next stage", *groups], key="steer_unfreeze_group")
        u2.button("Unfreeze now", key="steer_unfreeze", width="stretch", on_click=_ask,
                  args=(mgr, run_id, "unfreeze"), kwargs={"group": None if target == "the next stage" else target})
        frozen = f1.selectbox("Freeze", groups or ["head"], key="steer_freeze_group")
        f2.button("Freeze now", key="steer_freeze", width="stretch", on_click=_ask, args=(mgr, run_id, "freeze"),
                  kwargs={"group": frozen})
        st.caption("Each change applies at the run's next step and is marked on every chart at that step. "
                   "A change the run cannot make (a group LR on a run with one optimizer) is listed as refused.")


def _ended_controls(record, store, mgr) -> None:
    a, b = st.columns(2)
    saved = checkpoint.describe(store.runs_dir / record.id) if record.status in RESUMABLE else None
    if saved is not None and a.button(f"Resume from epoch {saved['epoch']} (step {saved['step']})", type="primary",
                                      icon=":material/resume:", width="stretch", key="steer_resume",
                                      help="Continue this run from its last epoch checkpoint: the same run and "
                                           "curve, the steps after the checkpoint trained again"):
        try:
            mgr.resume(record.id)
        except WorkbenchError as exc:
            st.error(str(exc))
        else:
            st.rerun()
    if b.button("Run again with changes", icon=":material/edit:", width="stretch", key="steer_fork",
                help="Open the Train form filled with this run's settings"):
        from pages._train_form import fork
        from workbench.models import get_model_card

        try:
            modality = get_model_card(record.config["model"]).modality
        except Exception:  # noqa: BLE001 - a user's model file: the form asks for it
            modality = "image"
        left = fork(record.config, modality)
        st.session_state["train_fork_note"] = (f"The form holds the settings of run {record.name}: change what you "
                                               "want and start." + (" Not carried over: " + "; ".join(left)
                                                                    if left else ""))
        st.switch_page("pages/train.py")


def history(store, run_id: str) -> None:
    """What was asked of the run and what it did, in order."""
    items = interventions.history(store, run_id)
    if not items:
        return
    st.markdown("**Interventions**")
    st.dataframe(pd.DataFrame({
        "#": [i.seq for i in items], "asked": [i.label() for i in items], "by": [i.source for i in items],
        "at step": [i.step for i in items], "what it did": [i.outcome or "waiting for the next step" for i in items],
    }), hide_index=True, width="stretch")
