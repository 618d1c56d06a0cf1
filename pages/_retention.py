"""Runs page, "Source kept": how much of its pretraining task a finished run still does.

Thin: the numbers are the run's summary (`workbench.explain.retention` wrote them), the curve is its
`source/score` rows; this module only lays them out and says why a run has none.
"""

from __future__ import annotations

import streamlit as st

from pages._plots import plot
from workbench.explain.retention import KEY, removal_line, retention_figure, retention_line


def _card_sentence(model: str | None) -> str | None:
    from workbench.models import MODELS, get_model_card

    return get_model_card(model).source_probe if model in MODELS else None


def _why_none(record) -> str:
    from workbench.models.source_probes import PROBE_TEXT

    cfg = record.config or {}
    model = cfg.get("model") or "this model"
    if record.status == "stopped":
        return "Stopped runs skip the closing probes (stop means stop): no retention to show."
    if cfg.get("from_scratch"):
        return f"This run trained {model} from scratch: there is no pretrained source task to keep."
    if model not in PROBE_TEXT:
        return f"{model} has no pretrained source task (no source probe): there is nothing it could forget."
    return "This run has no source-task scores (it ended before the probes ran, or predates them)."


def render_run(record, store) -> None:
    """The "source kept" line, the removal check, and the probe curve when it has more than two points."""
    final = record.final_metrics or {}
    if final.get("retention_error"):
        st.warning(f"The source probe failed: {final['retention_error']}")
    line = retention_line(final)
    if line is None:
        st.info(_why_none(record), icon=":material/info:")
        return
    st.markdown(f"**{line}**")
    removal = removal_line(final, (record.config or {}).get("method"))
    if removal:
        st.markdown(removal)
        st.caption("The trained parameters taken out again: the pretrained weights left in the model, probed "
                   "as a fresh pretrained backbone. \"= base\" means fine-tuning never touched them.")
    else:
        st.caption("This method changed the pretrained weights themselves (or tied its blocks): there is no "
                   "added part whose removal would give the pretrained model back.")
    frame = store.metrics(record.id, keys=[KEY])
    if len(frame) > 2:
        metric = final.get("source_metric", "source score")
        fig = retention_figure(frame, metric=metric, before=final.get("source_before"))
        plot(fig, f"{record.id}-source-kept", key=f"retention_{record.id}")
    else:
        st.caption("Probed before and after training; epoch-end points are added while the probes cost at most "
                   "1 % of the run's time, so short runs show these two.")
    sentence = _card_sentence((record.config or {}).get("model"))
    if sentence:
        st.caption(sentence)
