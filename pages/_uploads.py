"""Uploaded CSV files and .keras models: checked in plain words, kept per browser session.

Why per session: a class of 30 shares one server, and one student's data (or a mistaken upload) must
not show up in everyone's "reuse an earlier upload" list. Each browser session gets a random token
(never user text) in `st.session_state`; its files live under `<runs_dir>/uploads/<token>/<kind>/`.

Why a pending folder: a file is only kept once it has been accepted (the CSV loads with some column
mapping, the model loads in safe mode). Until then it waits in `<kind>/.pending/`, which is never
listed; a rejected file is deleted there, so it is neither kept on disk nor offered for reuse.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from typing import Any

import streamlit as st

from pages._resources import manager
from workbench.data.checks import file_kind
from workbench.errors import WorkbenchError, received

UPLOAD_SUFFIX = {"datasets": ".csv", "models": ".keras"}
_SESSION_KEY = "upload_session"
_TOKEN = re.compile(r"^[0-9a-f]{16}$")
_PENDING = ".pending"


def session_token() -> str:
    """This browser session's random upload folder name (created on first use)."""
    token = st.session_state.get(_SESSION_KEY)
    if not isinstance(token, str) or not _TOKEN.match(token):
        token = st.session_state[_SESSION_KEY] = secrets.token_hex(8)
    return token


def uploads_dir(kind: str, *, create: bool = True) -> Path:
    """`<runs_dir>/uploads/<session token>/<kind>/` (created unless `create=False`: listing a
    session that never uploaded leaves no empty folder behind)."""
    if kind not in UPLOAD_SUFFIX:
        raise WorkbenchError(f"Unknown upload kind: use one of {', '.join(UPLOAD_SUFFIX)}. {received(kind=kind)}")
    folder = (manager().store.runs_dir / "uploads" / session_token() / kind).resolve()
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def refusal(uploaded: Any, kind: str) -> str | None:
    """Why this upload cannot be what `kind` needs, in plain words (None: worth a closer look).

    Judged from the bytes, not the file name: a PDF renamed to .csv is still a PDF.
    """
    data = uploaded.getvalue()
    name = str(uploaded.name)
    if not data or (len(data) < 65536 and not data.strip()):  # (a page rerun must not copy 50 MB)
        return f"This file is empty: upload the saved file again. {received(file=name)}"
    found = file_kind(data)
    if kind == "datasets" and found is not None:
        fix = "save the sheet as CSV (File › Save as › CSV)" if "Excel" in found or "Office" in found else \
            "export the table as CSV (a header row, one row per example)"
        return f"This file is not a CSV table (it looks like {found}): {fix}. {received(file=name)}"
    if kind == "models" and found not in ("a Keras model", "a damaged or incomplete zip archive"):
        what = found or "a text file, e.g. a CSV table"
        return (f"Not a Keras model file (it looks like {what}): save your model with "
                f"model.save('name.keras') and upload that file. {received(file=name)}")
    return None


_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def plain(message: str) -> str:
    """An engine message with the CSV parser's own words replaced by what they mean for the file."""
    found = _FIELDS.search(message)
    if found is None:
        return message
    expected, line, saw = found.groups()
    return (f"Line {line} of the file has {saw} values but the header names {expected} columns: put quotes "
            f"around values that contain the separator (\"a, b\") or fix that line. {received(line=int(line))}")


def save_upload(uploaded: Any, kind: str) -> Path:
    """Store an upload as `<slug>-<sha256[:12]><suffix>`: the accepted copy if there is one, else pending.

    The user's file name only contributes a slug of [a-z0-9-]; the content hash makes the name
    unique and stable (uploading the same file twice reuses it). Call `accept` or `discard` next.
    """
    suffix = UPLOAD_SUFFIX[kind]
    data = uploaded.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:12]
    stem = re.sub(r"[^a-z0-9]+", "-", Path(str(uploaded.name)).stem.lower()).strip("-")[:40] or "upload"
    folder = uploads_dir(kind)
    accepted = (folder / f"{stem}-{digest}{suffix}").resolve()
    if accepted.parent != folder:  # cannot happen with the slug above; refuse rather than trust it
        raise WorkbenchError("Refused an upload whose name would leave the uploads folder.")
    if accepted.exists():
        return accepted
    pending = folder / _PENDING / accepted.name
    pending.parent.mkdir(exist_ok=True)
    if not pending.exists():
        tmp = pending.with_suffix(pending.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(pending)
    return pending


def is_pending(path: str | Path) -> bool:
    return Path(path).parent.name == _PENDING


def accept(path: Path) -> Path:
    """Keep a checked upload: move it out of the pending folder (a no-op for an accepted one)."""
    if not is_pending(path):
        return path
    final = path.parent.parent / path.name
    path.replace(final)
    return final


def discard(path: Path) -> None:
    """Forget a rejected upload (only pending files: an accepted one may back earlier runs)."""
    if is_pending(path):
        path.unlink(missing_ok=True)


def uploaded_files(kind: str) -> list[Path]:
    """This session's accepted uploads of `kind`, newest first."""
    return sorted(uploads_dir(kind, create=False).glob(f"*{UPLOAD_SUFFIX[kind]}"), key=lambda p: p.stat().st_mtime,
                  reverse=True)


__all__ = ["UPLOAD_SUFFIX", "accept", "discard", "is_pending", "plain", "refusal", "save_upload", "session_token",
           "uploaded_files", "uploads_dir"]
