"""Data & Models: browse the registries with their cards and licenses; check your own CSV or .keras model."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages import _widgets as w
from pages._nav import use_app_navigation
from pages._uploads import uploaded_files
from workbench.data import list_datasets
from workbench.errors import WorkbenchError
from workbench.models import list_models

use_app_navigation()

st.title("Data & Models")
st.caption("Everything ships with the project and works offline. Each card says where the data or weights "
           "come from, under which license, and what the model was trained on.")
tab_data, tab_models, tab_upload, tab_voice = st.tabs(["Datasets", "Models", "Your files", "Your voice"])

with tab_data:
    try:
        cards = list_datasets()
    except WorkbenchError as exc:
        st.error(str(exc))
        cards = []
    table = pd.DataFrame([{"name": c.name, "title": c.title, "modality": c.modality, "task": c.task,
                           "rows": c.rows, "classes": len(c.class_names) if c.class_names else None,
                           "license": c.license} for c in cards])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "rows": st.column_config.NumberColumn(format="localized"),
        "classes": st.column_config.NumberColumn(help="empty for regression")})
    if cards:
        by_name = {c.name: c for c in cards}
        name = st.selectbox("Dataset card", list(by_name), key="dm_dataset",
                            format_func=lambda n: f"{by_name[n].title}  ·  {n}")
        w.dataset_facts(by_name[name].to_dict())
        try:
            w.show_dataset(w.dataset_summary(name), key="dm_dataset", license_line=False)
        except WorkbenchError as exc:
            st.error(str(exc))

with tab_models:
    models = list_models()
    st.dataframe(w.models_table(models), hide_index=True, width="stretch", column_config={
        "params": st.column_config.NumberColumn("backbone params", format="compact"),
        "pretrained": st.column_config.CheckboxColumn()})
    by_model = {c.name: c for c in models}
    name = st.selectbox("Model card", list(by_model), key="dm_model",
                        format_func=lambda n: f"{by_model[n].title}  ·  {n}")
    w.show_model(by_model[name])
    if by_model[name].reproduce:
        st.markdown(f"Reproduce the weights: `{by_model[name].reproduce}`")

with tab_upload:
    st.caption("Your uploads are listed for this browser session only: others using this server do not see "
               "them, and a file the checks refuse is not kept.")
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Check a CSV")
        st.caption("One text column or numeric feature columns, plus a label column. The engine cleans it "
                   "(strips, drops empty and duplicate rows, repairs encodings and delimiters) and says what "
                   "it changed; a file it cannot use is refused with the reason.")
        picked = w.csv_mapper("dm_csv")
        if picked is not None:
            path, options = picked
            summary = w.dataset_summary(path, w.csv_key(options))
            st.success(f"Usable: {summary['card']['modality']} {summary['card']['task']} on "
                       f"“{summary['card']['label_column']}”. Pick “CSV file” on the Train page to use it.")
            w.show_dataset(summary, key="dm_csv")
    with right:
        st.subheader("Check a Keras model")
        st.caption("A Keras 3 `.keras` file, loaded with safe_mode (Lambda layers are refused). It must take the "
                   "dataset's input shape and output one value per class (one for regression).")
        w.keras_checker("dm_keras")
        stored = uploaded_files("models")
        if stored:
            st.caption("Stored models: " + ", ".join(f"`{p.name}`" for p in stored))

with tab_voice:
    from pages._recordings import voice_panel

    voice_panel()
