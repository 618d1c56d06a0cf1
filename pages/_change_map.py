"""The change map on the Runs and Compare pages: which layer groups fine-tuning moved, when, how much.

Thin: it reads what the run left behind (the `change/…` and `grad/…` rows of the run store and the run's
`changes.json`), asks `workbench.charts_changes` for the figures and draws them. Drawn for runs that
have ended (`pages/_explain.py` decides where), so nothing here refreshes.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from pages._plots import plot
from workbench.charts_changes import change_bars, change_heatmap, change_maps_side_by_side, spectra_figure

SHOW = {"Relative change": "change", "Gradient norm": "grad"}
CAPTIONS = {
    "change": "Colour: how far each layer group's weights moved from where they started, ‖W_t − W₀‖ / ‖W₀‖ "
              "(white = unchanged; adapters and a soft prompt: the size of their contribution on a fixed batch "
              "of training examples). Rows: bottom group at the bottom, the head on top.",
    "grad": "Colour: the gradient norm of each layer group's trainable weights, i.e. how hard the loss pulls on "
            "it (0: frozen at that point, or nothing to train): the training batch just before the record point "
            "(adapters, prompts and JAX runs: a fixed batch of training examples).",
}


def _changes_json(store, run_id: str) -> dict | None:
    path = store.runs_dir / run_id / "changes.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _frame(store, run_id: str, doc: dict | None) -> pd.DataFrame:
    """The run's change-map rows (and `val/loss`, which marks the epoch ends): only those keys when the
    groups are known, so a long run's per-step rows are never read for this."""
    groups = (doc or {}).get("groups") or _card_groups(store, run_id)
    if groups:
        keys = [f"{kind}/{g}" for g in groups for kind in ("change", "grad")] + ["val/loss"]
        return store.metrics(run_id, keys=keys)
    frame = store.metrics(run_id)
    return frame[frame["key"].str.match(r"^(change|grad)/[^/]+$") | (frame["key"] == "val/loss")]


def _card_groups(store, run_id: str) -> list[str] | None:
    from workbench.models import layer_groups

    record = store.get_run(run_id)
    return layer_groups((record.config if record is not None else {}).get("model"))


def _has_map(frame: pd.DataFrame) -> bool:
    return not frame.empty and frame["key"].str.startswith("change/").any()


def _pick(key: str) -> str:
    choice = st.segmented_control("Show", list(SHOW), default="Relative change", required=True, key=key)
    return SHOW[choice or "Relative change"]


def render_run(run_id: str, store, *, key: str = "change_map") -> None:
    """One run: the change map over time (or the gradient norms), the per-weight change at the end and,
    for low-rank methods, each update's singular values."""
    doc = _changes_json(store, run_id)
    frame = _frame(store, run_id, doc)
    record = store.get_run(run_id)
    error = (record.final_metrics or {}).get("changes_error") if record is not None else None
    if error:  # recording stopped at its first error; the run itself went on
        st.warning(f"The change map stopped recording: {error}")
    if not _has_map(frame):
        st.info("No change map for this run: it is recorded from the first record point of a run on, so a "
                "run stopped in its first steps, one from before this version, or one with WORKBENCH_EXPLAIN=0 "
                "has none.")
        return
    metric = _pick(f"{key}_show")
    plot(change_heatmap(frame, metric=metric), f"{run_id}-{metric}-map", key=f"{key}_heatmap")
    st.caption(CAPTIONS[metric])
    if doc is None:
        st.caption("The end-of-run details (per weight, spectra) are written when a run completes.")
        return
    if doc.get("spectra"):
        left, right = st.columns(2, gap="medium")
        with left:
            plot(change_bars(doc), f"{run_id}-change-bars", key=f"{key}_bars")
        with right:
            plot(spectra_figure(doc), f"{run_id}-spectra", key=f"{key}_spectra")
        st.caption("Right: the singular values of each low-rank update ΔW (relative to its largest); its effective "
                   "rank is how many of them hold 90 % of ΔW's energy.")
    else:
        plot(change_bars(doc), f"{run_id}-change-bars", key=f"{key}_bars")


def render_compare(run_ids: list[str], store, *, key: str = "compare_change_map") -> None:
    """Several runs' change maps side by side on one colour scale: same colour, same relative change."""
    docs = [_changes_json(store, r) for r in run_ids]
    frames = [_frame(store, r, d) for r, d in zip(run_ids, docs, strict=True)]
    if not any(_has_map(f) for f in frames):
        st.info("None of these runs has a change map (runs from before this version, or stopped in their first steps).")
        return
    names = []
    for run_id in run_ids:
        record = store.get_run(run_id)
        name = record.name if record is not None else run_id
        names.append(f"{name} · {run_id[-6:]}" if name in names else name)
    metric = _pick(f"{key}_show")
    plot(change_maps_side_by_side(frames, names, metric=metric), f"compare-{metric}-maps", key=f"{key}_maps")
    st.caption(CAPTIONS[metric] + " The maps share one colour scale.")
    ends = [d.get("final", {}) if d else {} for d in docs]
    if any(ends):
        table = pd.DataFrame(ends, index=names).T
        table.index.name = "layer group"
        st.dataframe(table, width="stretch", column_config={n: st.column_config.NumberColumn(n, format="%.4f")
                                                            for n in names})
