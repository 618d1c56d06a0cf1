"""The Runs page's "Share runs as a zip": download finished runs as one bundle, import someone's bundle.

Why thin: the bundle's format and every check of an imported zip live in `workbench.runs.bundles`, which
the CLI shares. The zip is built only when Download is pressed (Streamlit calls `data` then), so a page
that reruns every few seconds never packs megabytes nobody asked for. An uploaded file is imported once:
its `file_id` is remembered in `st.session_state`, and later reruns show the same report again.
"""

from __future__ import annotations

import io
import time
from typing import Any

import streamlit as st

from workbench.errors import WorkbenchError
from workbench.runs.bundle_import import import_bundle
from workbench.runs.bundles import export_bundle
from workbench.runs.store import ACTIVE

_DONE = "bundle_imported"  # {"file_id": ..., "ok": bool, "text": ...} of the last uploaded bundle


def bundle_panel(store: Any, selected: list[str]) -> None:
    """Choose finished runs and download them as a zip; import a bundle into this store."""
    finished = {r.id: f"{r.name} · {r.id}" for r in store.list_runs() if r.status not in ACTIVE}
    if finished:
        chosen = st.multiselect("Runs to share", list(finished), default=[i for i in selected if i in finished],
                                format_func=lambda i: finished.get(i, i), key="bundle_runs")
        st.download_button(f"Download {len(chosen)} run(s) as a zip", data=lambda: _zip(store, list(chosen)),
                           file_name=f"runs-{time.strftime('%Y%m%d-%H%M')}.zip", mime="application/zip",
                           disabled=not chosen, on_click="ignore", key="bundle_download")
    else:
        st.caption("No finished run to share yet.")
    uploaded = st.file_uploader("Import runs (.zip)", type=["zip"], key="bundle_upload")
    if uploaded is None:
        return
    done = st.session_state.get(_DONE)
    if not done or done.get("file_id") != uploaded.file_id:
        try:
            report = import_bundle(store, uploaded, name=uploaded.name)
            done = {"file_id": uploaded.file_id, "ok": True, "text": report.text() or "The bundle holds no runs."}
        except WorkbenchError as exc:
            done = {"file_id": uploaded.file_id, "ok": False, "text": str(exc)}
        st.session_state[_DONE] = done
        if done["ok"] and "imported" in done["text"]:
            st.rerun()  # the page's run lists above were drawn before the import
    (st.success if done["ok"] else st.error)(done["text"].replace("\n", "  \n"))


def _zip(store: Any, run_ids: list[str]) -> bytes:
    """The bundle's bytes, built in memory when the download starts."""
    buffer = io.BytesIO()
    export_bundle(store, run_ids, buffer)
    return buffer.getvalue()
