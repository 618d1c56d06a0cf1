"""Reusable page sections: dataset and model cards, the CSV column mapper, the .keras checker."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages import _uploads as uploads
from pages._format import fmt_count
from pages._plots import plot
from workbench.errors import WorkbenchError, received

CHART_HEIGHT = 260


# -- datasets ----------------------------------------------------------------------------------
@st.cache_data(show_spinner="Loading the dataset…", max_entries=32)
def dataset_summary(source: str, csv_options: tuple[tuple[str, Any], ...] = (), version: str = "") -> dict[str, Any]:
    """What the pages show about a dataset: card, cleaning report, a sample, the label distribution.
    `version`: part of the cache key only (a recordings folder's fingerprint: it grows while you record)."""
    from workbench import data as wdata

    ds = wdata.load(source, **dict(csv_options))
    wdata.split_dataset(ds)  # data a run could not split (too few rows per class) is refused here already
    card, n = ds.card, len(ds)
    names = list(card.class_names) if card.class_names is not None else None
    labels = [names[int(i)] for i in ds.y[:8]] if names else [float(v) for v in ds.y[:8]]
    out: dict[str, Any] = {"card": card.to_dict(), "rows": n, "report": ds.report.summary(), "images": None}
    if card.modality == "image":
        out["images"] = [(np.asarray(img[..., 0]) * 255).clip(0, 255).astype("uint8") for img in ds.x[:16]]
        out["image_labels"] = [names[int(i)] if names else str(i) for i in ds.y[:16]]
        out["sample"] = None
    elif card.modality == "text":
        out["sample"] = pd.DataFrame({"text": [str(t) for t in ds.x[:8]], card.label_column: labels})
    elif card.modality == "audio":
        from workbench.data.audio import sample_recordings

        out["sample"] = None
        out["recordings"] = sample_recordings(card)
    else:
        sample = pd.DataFrame(np.asarray(ds.x[:8]), columns=card.columns[: ds.x.shape[1]])
        out["sample"] = sample.assign(**{card.label_column: labels})
    if names:
        counts = np.bincount(np.asarray(ds.y, dtype=int), minlength=len(names))
        out["counts"] = pd.Series(counts, index=names, name="rows")
        out["target"] = None
    else:
        out["counts"] = None
        out["target"] = np.asarray(ds.y, dtype=float)
    return out


def label_figure(summary: dict[str, Any]) -> go.Figure:
    """Class balance (bars) or the regression target's distribution (histogram)."""
    fig = go.Figure()
    if summary["counts"] is not None:
        counts = summary["counts"]
        fig.add_bar(x=[str(c) for c in counts.index], y=counts.to_numpy(), marker_color="#2563eb",
                    text=[f"{100 * v / max(counts.sum(), 1):.0f}%" for v in counts], textposition="outside",
                    hovertemplate="%{x}: %{y:,} rows<extra></extra>")
        title, x_title = "Class balance", summary["card"]["label_column"]
    else:
        fig.add_histogram(x=summary["target"], marker_color="#2563eb", nbinsx=30)
        title, x_title = "Target distribution", summary["card"]["label_column"]
    fig.update_layout(template="plotly_white", height=CHART_HEIGHT, title=dict(text=title, x=0),
                      margin=dict(l=50, r=10, t=50, b=40), showlegend=False, bargap=0.2)
    fig.update_xaxes(title_text=x_title, type="category" if summary["counts"] is not None else "-")
    return fig.update_yaxes(title_text="rows")


def show_dataset_facts(summary: dict[str, Any], *, license_line: bool = True) -> None:
    """Size, task and cleaning report of one dataset (numbers as metrics, words as badges)."""
    card = summary["card"]
    classes = len(card["class_names"]) if card.get("class_names") else None
    a, b = st.columns(2)
    a.metric("Rows after cleaning", f"{summary['rows']:,}", help=summary["report"])
    b.metric("Classes" if classes else "Target", classes if classes else card["label_column"])
    with st.container(horizontal=True):
        st.badge(card["modality"], color="violet")
        st.badge(card["task"], color="blue")
    st.caption(f"Cleaning: {summary['report']}" + (f"  \nLicense: {card['license']}" if license_line else ""))


def show_dataset_sample(summary: dict[str, Any], *, key: str) -> None:
    """A few rows (or images) beside the class balance / target distribution."""
    card = summary["card"]
    left, right = st.columns([3, 2], gap="medium")
    with left:
        st.markdown("**Sample**")
        if summary["images"] is not None:
            st.image(summary["images"], width=56, caption=summary["image_labels"])
        elif summary.get("recordings") is not None:
            show_recordings(summary["recordings"], key=key)
        else:
            sample = summary["sample"]
            config = {"text": st.column_config.TextColumn(width="large")} if "text" in sample else None
            st.dataframe(sample, hide_index=True, width="stretch", column_config=config,
                         height=min(320, 38 + 35 * len(sample)))
    with right:
        plot(label_figure(summary), f"{card['name']}-labels", key=f"{key}_labels")


def show_recordings(recordings: list, *, key: str) -> None:
    """Each sample recording: a player, its label, its waveform and log-mel picture."""
    from workbench.charts_audio import recording_figure

    if not recordings:
        st.caption("No recordings to play for this dataset.")
        return
    for column, (label, name, wav) in zip(st.columns(2), recordings[:2], strict=False):
        with column:
            st.caption(f"**{label}** · {name}")
            st.audio(wav, format="audio/wav")
            plot(recording_figure(wav), f"{key}-{name}", key=f"{key}_rec_{name}")


def show_dataset(summary: dict[str, Any], *, key: str, license_line: bool = True) -> None:
    show_dataset_facts(summary, license_line=license_line)
    show_dataset_sample(summary, key=key)


def dataset_facts(card: dict[str, Any]) -> None:
    """Provenance lines of a dataset card."""
    st.markdown(f"**{card['title']}** — {card['description']}")
    st.caption(f"Source: {card['source']}  \nLicense: {card['license']}"
               + (f"  \nCitation: {card['citation']}" if card.get("citation") else ""))


# -- models ------------------------------------------------------------------------------------
def show_model(card: Any) -> None:
    """A model card: size, provenance, what it was trained on, its layer groups."""
    a, b = st.columns(2)
    a.metric("Backbone parameters", fmt_count(card.params) if card.params else "—",
             help="Without the new task head; the head is sized by the dataset.")
    b.metric("Layer groups", len(card.layer_groups), help="the unit of hierarchical unfreezing and discriminative LR")
    with st.container(horizontal=True):
        st.badge(card.modality, color="violet")
        st.badge("pretrained" if card.pretrained else "random init", color="green" if card.pretrained else "orange")
    st.markdown(f"**{card.title}** — {card.description}")
    st.caption(f"Architecture: {card.architecture}  \nSource: {card.source}  \n"
               f"Trained on: {card.source_task}  \nScore there: {card.source_metric}  \nLicense: {card.license}")
    st.markdown("Layer groups (bottom → top): " + " → ".join(f"`{g}`" for g in card.layer_groups))
    if card.lora_targets:
        st.caption("LoRA adapts: " + ", ".join(f"`{t}`" for t in card.lora_targets))


def models_table(cards: list[Any]) -> pd.DataFrame:
    return pd.DataFrame([{"name": c.name, "title": c.title, "modality": c.modality, "params": c.params or None,
                          "pretrained": c.pretrained, "source task": c.source_task, "license": c.license}
                         for c in cards])


# -- the CSV column mapper ---------------------------------------------------------------------
def _head(path: Path) -> pd.DataFrame:
    """The first rows as pandas reads them, for the mapping widgets (the engine validates the whole file).

    The delimiter is chosen as the engine chooses it (',' unless the header has none, then ';', tab
    or '|'): pandas' own sniffer happily splits a one-column file on a letter.
    """
    with path.open(encoding="utf-8", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    widths = {d: len(next(csv.reader([first], delimiter=d), [])) for d in (",", ";", "\t", "|")}
    sep = "," if widths[","] > 1 else max(widths, key=widths.__getitem__)
    head = pd.read_csv(path, nrows=50, sep=sep, dtype=str, encoding_errors="replace")
    head.columns = [str(c) for c in head.columns]
    return head


def _numeric(column: pd.Series) -> bool:
    return bool(pd.to_numeric(column.dropna(), errors="coerce").notna().all())


def keep_valid(key: str, options: list[Any]) -> None:
    """Forget a remembered widget value that is no longer among its options (the options changed)."""
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]


def csv_file(key: str) -> Path | None:
    """A freshly uploaded CSV (kept for this browser session once it is accepted) or an earlier one.

    The uploader takes any file (no `type=` filter): a filter makes the browser refuse a wrong file
    with a tooltip only, while here every refusal is visible text that says what the file is.
    """
    uploaded = st.file_uploader("CSV file (header row; up to 50 MB)", key=f"{key}_file")
    if uploaded is not None:
        refused = uploads.refusal(uploaded, "datasets")
        if refused:
            st.error(refused)
            return None
        try:
            return uploads.save_upload(uploaded, "datasets")
        except (WorkbenchError, OSError) as exc:
            st.error(f"Cannot store the upload ({exc}): try again, or tell the person running the server. "
                     f"{received(file=str(uploaded.name))}")
            return None
    earlier = [p.name for p in uploads.uploaded_files("datasets")]
    if not earlier:
        return None
    keep_valid(f"{key}_earlier", earlier)
    name = st.selectbox("…or reuse an earlier upload", earlier, index=None, placeholder="earlier uploads",
                        key=f"{key}_earlier", persist_state="session")
    return uploads.uploads_dir("datasets") / name if name else None


def _unreadable(path: Path, exc: Exception) -> str:
    """A plain-words reason for a file pandas cannot even split into columns (no parser jargon)."""
    if uploads.plain(str(exc)) != str(exc):  # "Expected 2 fields in line 3, saw 3": name the line
        return uploads.plain(str(exc)).replace(" Received:", f" Received: file={path.name!r},", 1)
    why = "its lines do not split into the same columns"
    return (f"This file could not be read as a table ({why}): save it as CSV with a header row, one row per "
            f"example and values separated by commas. {received(file=path.name)}")


def csv_mapper(key: str) -> tuple[str, dict[str, Any]] | None:
    """Pick a CSV, map its columns, validate it with the engine. Returns (path, csv options) or None.

    A new upload is kept (and offered for reuse) only once the engine accepts it with some mapping;
    until then a refusal deletes it, and the uploader, which still holds it, stores it again on the
    next change of mapping.
    """
    path = csv_file(key)
    if path is None:
        return None
    try:
        head = _head(path)
        columns = list(head.columns)
    except (ValueError, UnicodeDecodeError, OSError, csv.Error) as exc:  # empty, binary, no delimiter
        uploads.discard(path)
        st.error(_unreadable(path, exc))
        return None
    if len(columns) < 2:
        uploads.discard(path)
        st.error(f"The file needs at least two columns (an input and a label). Received: columns {columns}")
        return None
    keep = {"persist_state": "session"}
    key = f"{key}_{path.stem[-12:]}"  # widgets per file: their options are that file's columns
    all_numeric = all(_numeric(head[c]) for c in columns[:-1])  # the default label is the last column
    kind = st.radio("Inputs", ["one text column", "numeric feature columns"], index=1 if all_numeric else 0,
                    horizontal=True, key=f"{key}_kind", **keep)
    keep_valid(f"{key}_label", columns)
    label = st.selectbox("Label column", columns, index=len(columns) - 1, key=f"{key}_label", **keep)
    others = [c for c in columns if c != label]
    options: dict[str, Any] = {"label_column": label}
    if kind == "one text column":
        keep_valid(f"{key}_text", others)
        texts = [c for c in others if not _numeric(head[c])] or others
        options["text_column"] = st.selectbox("Text column", others, index=others.index(texts[0]),
                                              key=f"{key}_text", **keep)
    else:
        if any(c not in others for c in st.session_state.get(f"{key}_features", [])):
            del st.session_state[f"{key}_features"]
        options["feature_columns"] = st.multiselect("Feature columns", others, default=others,
                                                    key=f"{key}_features", **keep)
    task = st.segmented_control("Task", ["infer", "classification", "regression"], default="infer",
                                key=f"{key}_task", **keep)
    if task in ("classification", "regression"):
        options["task"] = task
    try:
        dataset_summary(str(path), csv_key(options))
    except WorkbenchError as exc:
        uploads.discard(path)
        st.error(uploads.plain(str(exc)))
        return None
    return str(uploads.accept(path)), options


def csv_key(options: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Hashable form of CSV options for `dataset_summary`."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


def keras_checker(key: str) -> Path | None:
    """Upload a .keras model and load it in safe mode; show what it is or why it cannot be used.

    Any file is taken (see `csv_file`); a model that does not load is deleted, not offered later.
    """
    uploaded = st.file_uploader("Keras 3 model (.keras)", key=f"{key}_file")
    if uploaded is None:
        return None
    from workbench.models.user import load_user_model

    refused = uploads.refusal(uploaded, "models")
    if refused:
        st.error(refused)
        return None
    path = None
    try:
        path = uploads.save_upload(uploaded, "models")
        model = load_user_model(path)
    except WorkbenchError as exc:
        if path is not None:
            uploads.discard(path)
        st.error(str(exc))
        return None
    path = uploads.accept(path)
    weighted = [layer for layer in model.layers if layer.weights]
    a, b, c = st.columns(3)
    a.metric("Parameters", fmt_count(model.count_params()))
    b.metric("Input shape", str(tuple(model.inputs[0].shape[1:])) if model.inputs else "—")
    c.metric("Outputs", str(model.outputs[0].shape[-1]) if model.outputs else "—")
    st.success(f"Loaded safely. Layer groups: {', '.join(layer.name for layer in weighted[:-1])} and the head "
               f"({weighted[-1].name if weighted else '—'}). It is now offered on the Train page for image and "
               "tabular datasets whose shape it fits.")
    return path
