"""PEFT Workbench, the browser app: `streamlit run app.py` (or `make app`).

Pages live in `pages/`; each is a thin layer over the engine in `workbench/` (widgets → TrainConfig →
RunManager / run store → `workbench.charts`). Training runs in background threads owned by the
process-wide RunManager, so closing or reloading a tab never stops a run.
"""

from pathlib import Path

import streamlit as st

from pages._nav import mark_app_navigation

# The favicon ships with the app (a material icon would be fetched from the internet).
st.set_page_config(layout="wide", page_title="PEFT Workbench",
                   page_icon=str(Path(__file__).resolve().parent / "assets" / "favicon.png"))
# Streamlit's own "Stop" (it stops a page's script, not a training run) would sit beside the app's
# Stop buttons and be mistaken for them; `client.toolbarMode = "minimal"` already hides Deploy.
st.html("<style>[data-testid='stStatusWidget'] button {display: none;}</style>")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/play_arrow:", url_path="train"),
    st.Page("pages/runs.py", title="Runs", icon=":material/monitoring:", url_path="runs"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:", url_path="learn"),
    st.Page("pages/data_models.py", title="Data & Models", icon=":material/dataset:", url_path="data"),
]

page = st.navigation(PAGES)
mark_app_navigation()
page.run()
