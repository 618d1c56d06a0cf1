"""Home: what the workbench is for, where to go, and the latest runs."""

from __future__ import annotations

import streamlit as st

from pages._engine_calls import runs_frame
from pages._format import ACTIVE, fmt_duration, fmt_time
from pages._nav import use_app_navigation

use_app_navigation()

st.title("PEFT Workbench")
st.markdown("Fine-tune pretrained models with a fraction of their parameters, and **see** why it works: "
            "every loss curve, learning rate and unfrozen layer is recorded and drawn live. "
            "Three principles are built in — **parameter sharing** (tied LoRA, VeRA), **hierarchical "
            "fine-tuning** (bottom-up or top-down unfreezing) and **learning-rate adaptation** "
            "(plateau, warmup-cosine, slanted triangular, discriminative rates).")

links = [("pages/train.py", "Train", ":material/play_arrow:", "pick data, a model and a method; start a run, a class preset or a sweep"),
         ("pages/runs.py", "Runs", ":material/monitoring:", "live curves, learning rates, unfreezing, ETA"),
         ("pages/compare.py", "Compare", ":material/compare_arrows:", "overlay runs, diff configs, export tables; a sweep in parallel coordinates"),
         ("pages/learn.py", "Learn", ":material/school:", "the method explained beside live demos"),
         ("pages/data_models.py", "Data & Models", ":material/dataset:", "cards, licenses, your own CSV or model")]
cols = st.columns(len(links))
for col, (page, label, icon, about) in zip(cols, links, strict=True):
    with col.container(border=True, height="stretch"):
        st.page_link(page, label=label, icon=icon)
        st.caption(about)

st.subheader("Recent runs")


def _any_active() -> bool:
    frame = runs_frame()
    return bool(not frame.empty and frame["status"].isin(ACTIVE).any())


ACTIVE_NOW = _any_active()


@st.fragment(run_every=3 if ACTIVE_NOW else None)
def recent_runs(was_active: bool) -> None:
    """Statuses refresh while a run trains, and once more when the last one ends."""
    frame = runs_frame()
    if frame.empty:
        st.info("No runs yet. A first run that finishes in seconds on a laptop: Train → dataset "
                "`digits`, model `mnist-cnn`, method `lora`, then Start.")
        return
    if was_active and not frame["status"].isin(ACTIVE).any():
        st.rerun()  # the last run ended: stop polling
    a, b, c, d = st.columns(4)
    a.metric("Runs", len(frame))
    b.metric("Training or queued", int(frame["status"].isin(ACTIVE).sum()))
    c.metric("Completed", int((frame["status"] == "completed").sum()))
    d.metric("Failed or interrupted", int(frame["status"].isin(["failed", "interrupted"]).sum()))
    recent = frame.head(8)
    metric = next((m for m in ("test_accuracy", "test_mae") if m in recent), None)
    for row in recent.to_dict("records"):
        left, mid, right = st.columns([4, 3, 2], vertical_alignment="center")
        left.page_link("pages/runs.py", label=f"{row['state']}  {row['name']}", query_params={"run": row["id"]})
        mid.caption(f"{row['method']} · {row['model']} · {row['dataset']} · {fmt_time(row['created'])}")
        score = row.get(metric) if metric else None
        right.caption((f"{metric.replace('_', ' ')} {score:.3f} · " if isinstance(score, float) and score == score
                       else "") + f"{fmt_duration(row['wall_s'])}")
    st.page_link("pages/compare.py", label=f"Compare these {len(recent)} runs", icon=":material/compare_arrows:",
                 query_params={"runs": ",".join(recent["id"])})


recent_runs(ACTIVE_NOW)
