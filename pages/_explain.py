"""The "explain this run" sections of the Runs and Compare pages: one place that lays out the parts.

Each part renders itself (`pages/_change_map.py`, `_retention.py`, `_predictions.py`, `_tryit.py`,
`_seed_groups.py`); this module only decides where they go. They read files and rows a finished
run left behind, so they are drawn once when the run has ended, never while it trains: a page that
redraws less leaves the run more of the CPU.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages import _change_map, _predictions, _retention, _seed_groups, _tryit
from workbench.explain.retention import retention_line


def run_sections(record, store) -> None:
    """Runs page, a run that has ended: what changed, what it kept of the source task, its predictions, try it."""
    line = retention_line(record.final_metrics)
    st.subheader("Explain this run")
    if line:
        st.markdown(f"**{line}**")
    changed, kept, predicted, trying = st.tabs(["What changed", "Source kept", "Predictions", "Try it"])
    with changed:
        _change_map.render_run(record.id, store)
    with kept:
        _retention.render_run(record, store)
    with predicted:
        _predictions.render_run(record.id, store)
    with trying:
        if record.status == "completed":
            _tryit.render(record.id, store)
        else:
            st.info(f"Try it needs a completed run; this one is {record.status}.")


def compare_sections(runs: pd.DataFrame, store) -> None:
    """Compare page: seed groups with the significance call, then two runs' change maps and examples."""
    st.subheader("Is the difference real?")
    _seed_groups.render(runs, store)
    ended = runs[~runs["status"].isin(("queued", "running"))]
    if len(ended) < 2:
        st.caption("The change maps and the example diff appear when two of the selected runs have ended.")
        return
    label = dict(zip(ended["id"], ended["name"], strict=True))
    left, right = st.columns(2)
    first = left.selectbox("Run A", list(label), format_func=label.get, key="explain_a")
    others = [i for i in label if i != first]
    row = ended.set_index("id")
    same_split = [i for i in others if (row.at[i, "dataset"], row.at[i, "seed"]) == (row.at[first, "dataset"],
                                                                                    row.at[first, "seed"])]
    others = same_split + [i for i in others if i not in same_split]  # the same test examples first: they diff
    second = right.selectbox("Run B", others, format_func=label.get, key="explain_b",
                             help="Runs on the same data with the same seed share their test examples, so they "
                                  "can be compared example by example; they are listed first")
    changed, examples = st.tabs(["What changed where", "Examples that flipped"])
    with changed:
        _change_map.render_compare([first, second], store)
    with examples:
        _predictions.render_compare(first, second, store)
