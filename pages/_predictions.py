"""Page sections for a run's test predictions (Runs page) and two runs' example-level diff (Compare).

Thin: the tables come from `workbench.explain.predictions`, the figures from
`workbench.charts_predictions`; this module picks widgets and layout. Stored predictions are read
once per file version and shared by every session (they are never changed after the run).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pandas as pd
import streamlit as st

from pages._plots import plot
from workbench import charts_predictions as charts
from workbench.errors import WorkbenchError
from workbench.explain import predictions as pred

GRID_LIMIT = 40  # images per grid: a screenful at 72 px
TABLE_LIMIT = 200


@lru_cache(maxsize=32)
def _read(path: str, mtime_ns: int) -> pred.Predictions:
    return pred.load_predictions(Path(path).parent)


def load(run_id: str, store) -> pred.Predictions | None:
    """The run's predictions, or None after saying on the page why there are none."""
    path = store.run_dir(run_id) / pred.FILE
    if not path.is_file():
        record = store.get_run(run_id)
        status = record.status if record is not None else "unknown"
        st.info("Test predictions appear when the run completes." if status in ("queued", "running") else
                f"No test predictions stored for this run ({status}): a stopped or failed run has no test "
                "evaluation, and runs from before this feature kept none. Run it again to see them.")
        return None
    try:
        return _read(str(path), path.stat().st_mtime_ns)
    except (WorkbenchError, OSError, KeyError, ValueError) as exc:
        st.warning(f"The stored predictions cannot be read: {exc}")
        return None


def _table(frame: pd.DataFrame, key: str) -> None:
    config = {"example": st.column_config.TextColumn("example", width="large"),
              **{c: st.column_config.NumberColumn(c.replace("_", " "), format="%.2f")
                 for c in ("confidence", "conf_a", "conf_b") if c in frame},
              **{c: st.column_config.NumberColumn(c.replace("_", " "), format="%.4g")
                 for c in ("true", "predicted", "residual", "pred_a", "pred_b") if c in frame
                 and pd.api.types.is_float_dtype(frame[c])}}
    st.dataframe(frame, hide_index=True, width="stretch", column_config=config, key=key)


def _escape(text: str) -> str:
    """A message shown as itself, not as Markdown ($ for LaTeX, * for bold...)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|$<>~])", r"\\\1", text)


def _sentences(heads: list[str], texts: list[str]) -> None:
    """Texts in full (a table cell would cut them), each under its one-line verdict, in a scroll box."""
    with st.container(height=min(480, 60 + 70 * len(heads))):
        for head, text in list(zip(heads, texts, strict=True))[:TABLE_LIMIT]:
            st.markdown(f"**{_escape(head)}**  \n{_escape(text)}")


def _grid(p: pred.Predictions, positions, captions: list[str]) -> None:
    st.image([p.images[int(i)] for i in positions][:GRID_LIMIT], caption=captions[:GRID_LIMIT], width=72)
    if len(captions) > GRID_LIMIT:
        st.caption(f"First {GRID_LIMIT} of {len(captions)} shown.")


# --------------------------------------------------------------------------- one run

def render_run(run_id: str, store) -> None:
    """Confusion matrix + per-class table and a browser of the mistakes (classification), or the
    residual plot and the largest errors (regression)."""
    p = load(run_id, store)
    if p is None:
        return
    if p.task == "regression":
        _render_regression(run_id, p)
        return
    cols = st.columns(3)
    cols[0].metric("Test accuracy", f"{pred.accuracy(p):.3f}")
    cols[1].metric("Macro F1", f"{pred.f1_macro(p):.3f}", help="F1 per class, averaged: every class counts the same")
    cols[2].metric("Mistakes", f"{int((~p.correct).sum())} of {len(p)}")
    left, right = st.columns([3, 2], gap="medium")
    with left:
        plot(charts.confusion_figure(pred.confusion(p)), f"{run_id}-confusion", key=f"pred_conf_{run_id}")
    with right:
        st.markdown("**Per class**")
        table = pred.per_class(p)
        st.dataframe(table, hide_index=True, width="stretch", key=f"pred_table_{run_id}", column_config={
            **{c: st.column_config.NumberColumn(c, format="%.2f", width="small") for c in ("precision", "recall", "f1")},
            "support": st.column_config.NumberColumn("n", width="small", help="test examples of this class")})
        st.caption("Rows: the true class; columns: what the model said. Precision: of the examples it called "
                   "this class, the share that were; recall: of this class, the share it found.")
    _mistakes(run_id, p)


def _mistakes(run_id: str, p: pred.Predictions) -> None:
    st.markdown("**Misclassified test examples**, most confident mistakes first")
    wrong = pred.misclassified(p, limit=None)
    if wrong.empty:
        st.success("No mistakes on the test split.")
        return
    counts = wrong["true"].value_counts()
    options = ["all classes", *[c for c in p.class_names if c in counts.index]]
    choice = st.selectbox("True class", options, key=f"pred_filter_{run_id}",
                          format_func=lambda c: c if c == options[0] else f"{c} ({counts[c]} wrong)")
    if choice != options[0]:
        wrong = wrong[wrong["true"] == choice]
    if p.images is not None:
        _grid(p, wrong["position"], [f"{t} → {q} ({c:.0%})" for t, q, c in
                                     zip(wrong["true"], wrong["predicted"], wrong["confidence"], strict=True)])
        st.caption("Each image: true class → predicted class (the model's confidence in its answer).")
    elif p.texts is not None:
        _sentences([f"{t} → {q} ({c:.0%})" for t, q, c in zip(wrong["true"], wrong["predicted"], wrong["confidence"],
                                                               strict=True)], wrong["example"].tolist())
        st.caption("Each text: true class → predicted class (the model's confidence in its answer).")
    else:
        _table(wrong.head(TABLE_LIMIT), key=f"pred_wrong_{run_id}")


def _render_regression(run_id: str, p: pred.Predictions) -> None:
    errors = pred.regression_errors(p)
    cols = st.columns(3)
    cols[0].metric("Test MAE", f"{errors['mae']:.4g}")
    cols[1].metric("Test RMSE", f"{errors['rmse']:.4g}", help="root mean squared error, in the target's units")
    cols[2].metric("Test examples", f"{len(p)}")
    plot(charts.residual_figure(pred.residuals(p)), f"{run_id}-residuals", key=f"pred_resid_{run_id}")
    st.markdown("**Largest errors**")
    _table(pred.largest_errors(p, limit=20), key=f"pred_worst_{run_id}")


# --------------------------------------------------------------------------- two runs

def render_compare(run_a: str, run_b: str, store) -> None:
    """Which test examples one run gets right and the other wrong, and how their confusions differ."""
    p_a, p_b = load(run_a, store), load(run_b, store)
    if p_a is None or p_b is None:
        return
    rec_a, rec_b = store.get_run(run_a), store.get_run(run_b)
    name_a = rec_a.name if rec_a is not None else run_a
    name_b = rec_b.name if rec_b is not None else run_b
    try:
        diff = pred.example_diff(p_a, p_b)
    except pred.DifferentExamples as exc:
        st.warning(str(exc), icon=":material/compare_arrows:")
        return
    st.caption(f"**A** = {name_a} · **B** = {name_b}, on the same {len(p_a)} test examples.")
    key = f"predcmp_{run_a}_{run_b}"
    if p_a.task == "regression":
        wins = diff["better"].value_counts()
        cols = st.columns(3)
        cols[0].metric("A closer", int(wins.get("A", 0)))
        cols[1].metric("B closer", int(wins.get("B", 0)))
        rmse_a, rmse_b = pred.regression_errors(p_a)["rmse"], pred.regression_errors(p_b)["rmse"]
        cols[2].metric("RMSE of B", f"{rmse_b:.4g}", delta=f"{rmse_b - rmse_a:+.4g} vs A", delta_color="inverse")
        st.markdown("**Where the two runs' errors differ most**")
        _table(diff.head(20), key=f"{key}_table")
        return
    only_a, only_b = diff[diff["right"] == "A"], diff[diff["right"] == "B"]
    cols = st.columns(4)
    cols[0].metric("Only A right", len(only_a))
    cols[1].metric("Only B right", len(only_b))
    cols[2].metric("Both wrong", int((~p_a.correct & ~p_b.correct[pred.match(p_a, p_b)[1]]).sum()))
    acc_a, acc_b = pred.accuracy(p_a), pred.accuracy(p_b)
    cols[3].metric("Accuracy of B", f"{acc_b:.3f}", delta=f"{acc_b - acc_a:+.3f} vs A" if acc_a != acc_b else None)
    cdiff = pred.confusion_difference(p_a, p_b)
    if not cdiff.to_numpy().any():
        st.info("The two runs predict the same class for every test example.")
    else:
        if only_a.empty and only_b.empty:
            st.info("The two runs are right and wrong on the same test examples (some mistakes differ).")
        plot(charts.confusion_difference_figure(cdiff), f"confusion-diff-{run_a}-{run_b}", key=f"{key}_conf")
        st.caption("Red: B puts more test examples in that cell than A; blue: fewer. A better B is red on the "
                   "diagonal and blue off it.")
    for label, part in (("Only A right", only_a), ("Only B right", only_b)) if len(diff) else ():
        st.markdown(f"**{label}** ({len(part)})")
        if part.empty:
            st.caption("None.")
        elif p_a.images is not None:
            _grid(p_a, part["position"], [f"{t}: A {a} · B {b}" for t, a, b in
                                          zip(part["true"], part["pred_a"], part["pred_b"], strict=True)])
            st.caption("Each image: true class: A's answer · B's answer.")
        elif p_a.texts is not None:
            _sentences([f"true {t}: A {a} ({ca:.0%}) · B {b} ({cb:.0%})" for t, a, ca, b, cb in
                        zip(part["true"], part["pred_a"], part["conf_a"], part["pred_b"], part["conf_b"], strict=True)],
                       part["example"].tolist())
        else:
            _table(part.drop(columns="right").head(TABLE_LIMIT), key=f"{key}_{label[5]}")
