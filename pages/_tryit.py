"""Try it: a sentence, a digit picture or feature values through a finished run's model, beside the
untouched base model with a linear probe (`workbench.explain.tryit`).

Nothing loads until Predict is pressed: loading builds two models (and, the first time for a run's
data settings, fits the probe), which a page that merely shows a run should not pay for. The loaded
`TryIt` is cached per run for every session (`st.cache_resource`); the last answer is kept per run in
the session, so a rerun of the page does not lose it.
"""

from __future__ import annotations

import streamlit as st

from pages._plots import plot
from workbench import charts_predictions as charts
from workbench.errors import WorkbenchError
from workbench.explain.tryit import BASE, FINE_TUNED, TryIt, image_to_input


@st.cache_resource(show_spinner="Loading the run's model and the base model (the first time only)…", max_entries=4)
def _tryit(run_dir: str) -> TryIt:
    return TryIt.from_run(run_dir)


def _input(run_id: str, record, store):
    """The widget for the run's kind of data; returns the raw input, or None when there is none yet."""
    modality = _modality(record.config)
    if modality == "text":
        text = st.text_area("Your text", key=f"tryit_text_{run_id}", height=90,
                            placeholder="Type a sentence, e.g. 'WINNER!! Claim your free prize now'")
        return text.strip() or None
    if modality == "audio":
        recorded = st.audio_input("Say one digit", key=f"tryit_audio_{run_id}")
        upload = recorded or st.file_uploader("…or upload a WAV", type=["wav"], key=f"tryit_wav_{run_id}")
        return upload.getvalue() if upload is not None else None
    if modality == "image":
        upload = st.file_uploader("A picture of one digit (PNG or JPG; dark ink on light paper, or light on dark)",
                                  type=["png", "jpg", "jpeg"], key=f"tryit_image_{run_id}")
        return upload.getvalue() if upload is not None else None
    tryit = _tryit(str(store.run_dir(run_id)))  # the feature names and their typical values come from the data
    cols = st.columns(min(5, len(tryit.feature_names)) or 1)
    return {name: cols[i % len(cols)].number_input(name, value=float(default), key=f"tryit_f_{run_id}_{name}",
                                                   format="%.4g")
            for i, (name, default) in enumerate(zip(tryit.feature_names, tryit.feature_defaults, strict=True))}


def _modality(config: dict) -> str:
    from workbench.data.manifest import get_dataset_card
    from workbench.data.recordings import is_audio_source

    if is_audio_source(str(config.get("data"))):  # a person's recordings
        return "audio"
    try:
        return get_dataset_card(str(config.get("data"))).modality
    except WorkbenchError:  # a user's CSV: text when a text column was named
        return "text" if config.get("text_column") else "tabular"


def render(run_id: str, store) -> None:
    """The input widget, a Predict button and both models' answer as bars."""
    record = store.get_run(run_id)
    if record is None or record.status != "completed":
        st.info("Try it works on a completed run: its fine-tuned weights are saved when it ends.")
        return
    st.caption(f"The **{FINE_TUNED}** model of this run beside the **{BASE}**: the pretrained model, frozen, "
               "with only a linear head fitted on the same training examples. Where they differ is what "
               "fine-tuning changed.")
    state_key = f"tryit_result_{run_id}"
    try:
        item = _input(run_id, record, store)
        pressed = st.button("Predict", type="primary", key=f"tryit_go_{run_id}", disabled=item is None,
                            icon=":material/play_arrow:")
        if pressed and item is not None:
            tryit = _tryit(str(store.run_dir(run_id)))
            with st.spinner("Predicting…"):
                frame = tryit.predict([item])
            seen = image_to_input(item, tryit.card)[0][..., 0] if tryit.modality == "image" else None
            st.session_state[state_key] = (frame, seen, tryit.note, _scores(tryit, record))
    except WorkbenchError as exc:
        st.error(str(exc))
        return
    if state_key not in st.session_state:
        return
    frame, seen, note, scores = st.session_state[state_key]
    if seen is not None:
        left, right = st.columns([1, 4], vertical_alignment="center")
        left.image((seen * 255).clip(0, 255).astype("uint8"), width=112,
                   caption="what the models see (28×28, as the training digits)")
        with right:
            plot(charts.probability_figure(frame), f"{run_id}-tryit", key=f"tryit_fig_{run_id}")
    else:
        plot(charts.probability_figure(frame), f"{run_id}-tryit", key=f"tryit_fig_{run_id}")
    if scores:
        st.caption(scores)
    if note:
        st.info(note)


def _scores(tryit: TryIt, record) -> str:
    """How good each model was on the test split, so one answer is read against the usual quality."""
    metric, key = ("accuracy", "test_accuracy") if tryit.task == "classification" else ("RMSE", "test_rmse")
    parts = []
    tuned = record.final_metrics.get(key)
    if isinstance(tuned, int | float):
        parts.append(f"{FINE_TUNED}: {tuned:.3f}")
    if tryit.probe is not None:
        parts.append(f"{BASE}: {tryit.probe.test_score:.3f}")
    return f"Test {metric}: " + " · ".join(parts) if parts else ""
