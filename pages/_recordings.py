"""Your voice: record digits in the browser (or upload WAVs / a zip) into a personal dataset, then fine-tune.

The recordings of a browser session live in `<runs_dir>/uploads/<session token>/recordings/<dataset>/`
(`_uploads.session_token`: a class shares one server, and one student's voice is nobody else's list);
the engine (`workbench.data.recordings`) checks every file and keeps it as 8 kHz mono WAV. The Train
page's "My recordings" source trains on such a folder; Try it on the run's page takes a new recording.
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from pages._resources import manager
from pages._uploads import session_token
from workbench.data import recordings
from workbench.errors import WorkbenchError

DIGITS = [str(d) for d in range(10)]


def recordings_root(create: bool = False) -> Path:
    root = manager().store.runs_dir / "uploads" / session_token() / "recordings"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def personal_datasets() -> list[Path]:
    root = recordings_root()
    return sorted((p for p in root.iterdir() if p.is_dir() and any(p.glob("*.wav"))), key=lambda p: p.name) \
        if root.is_dir() else []


def fingerprint(folder: Path) -> str:
    """Changes whenever a recording is added or removed (the cached dataset summary is keyed by it)."""
    files = sorted(folder.glob("*.wav"))
    return f"{len(files)}-{max((p.stat().st_mtime_ns for p in files), default=0)}"


def voice_panel() -> None:
    st.caption("Record yourself saying digits (or upload WAVs, or a zip of them): they become a dataset of your "
               "own, for this browser session only. Then pick **My recordings** on the Train page and the "
               "spoken-digit model: it was pretrained on five other voices, and a few of yours teach it your voice.")
    name = st.text_input("Dataset name", "my-voice", key="voice_name", max_chars=40,
                         help="letters, digits, - and _ (one folder per name)").strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,39}", name):
        st.error("A dataset name is letters, digits, - and _ (e.g. my-voice): rename it.")
        return
    folder = recordings_root(create=True) / name
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Record**")
        label = st.selectbox("Digit you will say", DIGITS, key="voice_label")
        clip = st.audio_input("Say it (one digit per recording)", key=f"voice_clip_{label}")
        if clip is not None and st.button("Keep this recording", key="voice_keep", icon=":material/add:"):
            try:
                kept = recordings.add_recording(folder, label, clip.getvalue(), "your recording")
                st.success(f"Kept {kept.name}.")
            except WorkbenchError as exc:
                st.error(str(exc))
    with right:
        st.markdown("**Upload**")
        files = st.file_uploader("WAVs named like 3_me_1.wav (the label first), a zip of them, or labels.csv "
                                 "(file,label)", type=["wav", "zip", "csv"], accept_multiple_files=True,
                                 key="voice_files")
        if files and st.button("Add these files", key="voice_add", icon=":material/upload:"):
            kept, errors = recordings.add_files(folder, [(f.name, f.getvalue()) for f in files])
            if kept:
                st.success(f"Added {len(kept)} recording{'s' if len(kept) != 1 else ''}.")
            for line in errors:
                st.error(line)
    _summary(folder)


def _summary(folder: Path) -> None:
    files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if not files:
        st.info("No recordings yet. Aim for 5 per digit: that is what the results table adapts with.")
        return
    counts: dict[str, int] = {}
    for path in files:
        label = path.name.split("_")[0]
        counts[label] = counts.get(label, 0) + 1
    st.markdown(f"**{folder.name}**: {len(files)} recordings · " + " · ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    newest = max(files, key=lambda p: p.stat().st_mtime_ns)
    st.caption(f"Newest: {newest.name}")
    st.audio(newest.read_bytes(), format="audio/wav")
    if st.button("Delete this dataset", key="voice_delete", icon=":material/delete:"):
        for path in files:
            path.unlink(missing_ok=True)
        st.rerun()
