"""Turn a registered dataset or a user's CSV into numpy arrays, cleaning it the same way every time.

Why one cleaning procedure for both: a model trained in the app, the CLI or a notebook must see the
same rows, and a user must be told what was changed. Cleaning strips whitespace, drops rows with an
empty input, drops rows with a blank/NaN label and drops exact duplicates (identical in the input
and label columns, which would otherwise leak between train and test); the counts go into a
`CleaningReport`. Problems we can repair (latin-1 encoding, ';' or tab delimiter, UTF-16, gzip) are
repaired and reported; problems we cannot (no label column, one class, text in a numeric target...)
raise `DataError` with one line saying what is wrong and what to do.

Images come out as float32 (N, 28, 28, 1) in [0, 1]. Smaller images (the 8x8 ``digits``) are
upsampled bilinearly (half-pixel centres, like ``tf.image.resize``) to the card's content box and
zero-padded, so 8x8 becomes 20x20 inside a 4-pixel border, the framing MNIST digits have.
Tabular features stay raw float32: standardizing is the model's job (a Normalization layer adapted
on the training split), so no test statistics leak into it.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data.augment import resize_images
from workbench.data.checks import looks_binary
from workbench.data.manifest import DatasetCard, apply_view, get_dataset_card, list_datasets
from workbench.errors import DataError
from workbench.paths import sample_data_dir

NA_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none", "#n/a"})
_DELIMITERS = {";": "';'", "\t": "tab", "|": "'|'"}


MAX_TEXT_CHARS = 10_000


@dataclass
class CleaningReport:
    """What cleaning did to the rows, so the app can show it instead of changing data silently."""

    rows_in: int = 0
    rows_out: int = 0
    dropped_empty: int = 0
    dropped_nan_label: int = 0
    dropped_duplicates: int = 0
    repaired: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)  # a user CSV's columns that feed nothing

    def summary(self) -> str:
        """One readable line, e.g. '4512 of 4837 rows kept; dropped 325 exact duplicates'."""
        drops = [f"{n} {what}" for n, what in [(self.dropped_empty, "with empty input"),
                                               (self.dropped_nan_label, "with blank label"),
                                               (self.dropped_duplicates, "exact duplicates")] if n]
        parts = [f"{self.rows_out} of {self.rows_in} rows kept"]
        if drops:
            parts.append("dropped " + ", ".join(drops))
        if self.ignored_columns:
            n = len(self.ignored_columns)
            parts.append(f"ignored {n} column{'s' if n > 1 else ''}: {_examples(self.ignored_columns, 5)}")
        if self.repaired:
            parts.append("repaired: " + ", ".join(self.repaired))
        return "; ".join(parts)


@dataclass
class Dataset:
    """Arrays ready for a model plus the card that describes them and the cleaning report.

    `native` keeps images at the file's own resolution (N, h, w, 1) in [0, 1] when the loader
    resized them (digits: 8x8), so a model built for that size gets the real pixels rather than the
    upsampled ones shrunk back (`workbench.data.shapes`). `notes` are one-line facts about how the
    data reaches the model (a shape transform, a coarse split...) that a run records and shows.
    """

    card: DatasetCard
    x: np.ndarray
    y: np.ndarray
    report: CleaningReport
    native: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int | None:
        return len(self.card.class_names) if self.card.class_names is not None else None

    def __len__(self) -> int:
        return len(self.y)


def _examples(values: pd.Series | list, k: int = 3) -> str:
    unique = list(dict.fromkeys(values))
    more = f" (+{len(unique) - k} more)" if len(unique) > k else ""
    return ", ".join(repr(str(v))[:40] for v in unique[:k]) + more


# --------------------------------------------------------------------------- cleaning (shared)

def _is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _clean(df: pd.DataFrame, inputs: list[str], label: str, modality: str,
           report: CleaningReport) -> pd.DataFrame:
    """Strip, drop empty inputs, drop blank labels, drop exact duplicates; count each step."""
    df = df[[*inputs, label]].copy()
    report.rows_in = len(df)
    empty = np.zeros(len(df), dtype=bool)
    for col in df.columns:
        if not _is_numeric(df[col]):
            df[col] = df[col].fillna("").astype(str).str.strip()
    for col in inputs:
        s = df[col]
        if _is_numeric(s):
            empty |= s.isna().to_numpy()
        else:  # a text may be "NA"; a missing number may be written "NA"
            blank = s.eq("") if modality == "text" else s.str.lower().isin(NA_TOKENS)
            empty |= blank.to_numpy()
    lab = df[label]
    no_label = lab.isna() if _is_numeric(lab) else lab.str.lower().isin(NA_TOKENS)
    no_label = no_label.to_numpy() & ~empty
    report.dropped_empty, report.dropped_nan_label = int(empty.sum()), int(no_label.sum())
    df = df[~(empty | no_label)]
    dup = df.duplicated().to_numpy()
    report.dropped_duplicates = int(dup.sum())
    df = df[~dup]
    report.rows_out = len(df)
    if df.empty:
        raise DataError(f"No usable rows left after cleaning; check the input and label columns. "
                        f"Received: {report.summary()}")
    return df


def _numeric(s: pd.Series, what: str, fix: str) -> np.ndarray:
    if _is_numeric(s):
        return s.to_numpy(dtype=np.float64)
    num = pd.to_numeric(s, errors="coerce")
    bad = s[num.isna()]
    if len(bad):
        raise DataError(f"{what} holds non-numeric values; {fix}. Received: {_examples(bad)}")
    return num.to_numpy(dtype=np.float64)


def _label_strings(s: pd.Series) -> pd.Series:
    """Labels as strings; integral numbers print without '.0' so 5 and 5.0 are the class '5'."""
    if _is_numeric(s):
        v = s.to_numpy(dtype=np.float64)
        if np.all(v == np.round(v)):
            return pd.Series(v.astype(np.int64), index=s.index).astype(str)
    return s.astype(str)


def _to_images(values: np.ndarray, card: DatasetCard) -> tuple[np.ndarray, np.ndarray | None]:
    """(images at the card's shape, native images or None when the two are the same)."""
    h, w = card.source_shape or card.image_shape[:2]
    imgs = np.clip(values.reshape(-1, h, w).astype(np.float32) / np.float32(card.pixel_max or 1.0), 0.0, 1.0)
    resized = (h, w) != tuple(card.image_shape[:2]) or card.image_pad
    x = resize_images(imgs, card.image_shape[:2], pad=card.image_pad)[..., None]
    return x, (imgs[..., None] if resized else None)


def _arrays(df: pd.DataFrame, card: DatasetCard,
            columns: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(x, y, native images or None) for the cleaned rows."""
    native = None
    if card.modality == "text":
        x = np.array(df[columns[0]].tolist(), dtype=object)
    elif card.modality == "audio":
        from workbench.data.audio import model_input, shipped_features

        x = model_input(shipped_features(card)[df[columns[0]].to_numpy(dtype=np.int64)])
    else:
        feats = np.column_stack([_numeric(df[c], f"Feature column {c!r}",
                                          "pick numeric feature columns or use text_column") for c in columns])
        if card.modality == "image":
            x, native = _to_images(feats, card)
        else:
            x = feats.astype(np.float32)
    lab = df[card.label_column]
    if card.task == "regression":
        y = _numeric(lab, f"Label column {card.label_column!r}",
                     "regression needs a numeric target (or pass task='classification')")
        if not np.isfinite(y).all():
            raise DataError(f"Label column {card.label_column!r} holds infinite values; remove those rows.")
        return x, y.astype(np.float32), native
    index = {name: i for i, name in enumerate(card.class_names)}
    strings = _label_strings(lab)
    ids = strings.map(index)
    if ids.isna().any():
        raise DataError(f"Dataset {card.name!r} has labels outside its class names {list(card.class_names)}; "
                        f"rebuild sample_data. Received: {_examples(strings[ids.isna()])}")
    return x, ids.to_numpy(dtype=np.int64), native


# --------------------------------------------------------------------------- registered datasets

@lru_cache(maxsize=8)
def _read_file(path: str, mtime_ns: int) -> pd.DataFrame:
    # Only truly empty cells are missing: an SMS that says "NA" is still a message.
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


@lru_cache(maxsize=16)
def _load_registered(name: str, data_dir: str) -> Dataset:
    card = get_dataset_card(name)
    path = Path(data_dir) / card.file
    if not path.is_file():
        raise DataError(f"Dataset file for {name!r} is missing; run scripts/make_sample_data.py. Received: {path}")
    df = apply_view(_read_file(str(path), path.stat().st_mtime_ns), card)
    report = CleaningReport()
    columns = card.columns
    df = _clean(df, columns, card.label_column, card.modality, report)
    x, y, native = _arrays(df, card, columns)
    for array in (x, y, native):  # shared by every caller of the cache: copy before changing
        if array is not None:
            array.flags.writeable = False
    return Dataset(card=card, x=x, y=y, report=report, native=native)


def load_dataset(name: str) -> Dataset:
    """A registered dataset; parsed once per process, arrays are read-only (copy to modify)."""
    cached = _load_registered(name, str(sample_data_dir()))
    report = dataclasses.replace(cached.report, repaired=list(cached.report.repaired))
    return Dataset(card=cached.card, x=cached.x, y=cached.y, report=report, native=cached.native)


# --------------------------------------------------------------------------- user CSV files

def _decode(raw: bytes, report: CleaningReport) -> str:
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        report.repaired.append("decoded file as UTF-16")
        return raw.decode("utf-16")
    nuls = raw.count(0)
    if nuls:  # a few stray NULs (a crashed export) do not make a CSV binary: strip them, say so
        if looks_binary(raw):
            raise DataError(f"File looks binary, not a CSV; export it as CSV text (comma-separated, UTF-8). "
                            f"Received: {nuls:,} NUL bytes in {len(raw):,}")
        raw = raw.replace(b"\x00", b"")
        report.repaired.append(f"removed {nuls} NUL byte{'s' if nuls > 1 else ''}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text, codec = raw.decode("cp1252"), "latin-1 (Windows-1252)"
    except UnicodeDecodeError:
        text, codec = raw.decode("latin-1"), "latin-1 (ISO-8859-1)"
    report.repaired.append(f"decoded file as {codec} because it is not valid UTF-8")
    return text


def _read_text(path: Path, max_bytes: int, report: CleaningReport) -> str:
    if not path.is_file():
        what = ("is a folder: give a .csv file inside it" if path.is_dir()
                else "is not a regular file (a device or a pipe): give a .csv file" if path.exists()
                else "not found; check the path")
        raise DataError(f"CSV file {what}. Received: {str(path)!r}")
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(f"File is larger than the {max_bytes:,}-byte limit; use a sample of it or raise "
                        f"max_bytes. Received: {size:,} bytes")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(max_bytes + 1)
        except (OSError, EOFError) as exc:
            raise DataError(f"File starts like gzip but cannot be decompressed; re-export it. Received: {exc}") from None
        if len(raw) > max_bytes:
            raise DataError(f"Decompressed file is larger than the {max_bytes:,}-byte limit; use a sample of it.")
    if raw[:4] == b"PK\x03\x04":
        raise DataError("File is a zip archive (an Excel workbook?), not a CSV; save it as CSV (UTF-8) first.")
    if not raw.strip():
        raise DataError(f"File is empty; it needs a header row and data rows. Received: {size} bytes")
    text = _decode(raw, report)
    sample = text[:65536]
    control = sum(ch < " " and ch not in "\t\r\n" for ch in sample)
    if control > 0.01 * len(sample):
        raise DataError("File looks binary, not a CSV; export it as CSV text (comma-separated, UTF-8).")
    return text


def _parse(text: str, report: CleaningReport) -> pd.DataFrame:
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    widths = {d: len(next(csv.reader([first], delimiter=d))) for d in [",", *_DELIMITERS]}
    sep = ","
    if widths[","] == 1:
        best = max(_DELIMITERS, key=widths.__getitem__)
        if widths[best] > 1:
            sep = best
            report.repaired.append(f"read {_DELIMITERS[best]} as the delimiter (the header has no commas)")
    try:  # header=None: a row longer than the header is an error instead of a silent index column
        df = pd.read_csv(io.StringIO(text), sep=sep, header=None, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError("File has no header row; the first line must name the columns.") from None
    except pd.errors.ParserError as exc:
        msg = " ".join(str(exc).split())
        raise DataError(f"Cannot parse the CSV; quote fields that contain the delimiter {sep!r}. "
                        f"Received: {msg}") from None
    header = [str(c).strip() or f"Unnamed: {i}" for i, c in enumerate(df.iloc[0])]
    if len(set(header)) < len(header):
        raise DataError(f"Column names must be unique; rename the repeated ones. Received: columns {header}")
    df = df.iloc[1:].reset_index(drop=True)
    df.columns = header
    if df.empty:
        raise DataError(f"File has a header but no data rows; add rows below it. Received: columns {list(df.columns)}")
    return df


def load_csv(path: str | Path, *, text_column: str | None = None, feature_columns: list[str] | None = None,
             label_column: str | None, task: str | None = None, name: str | None = None,
             max_bytes: int = 50_000_000) -> Dataset:
    """A user's CSV: exactly one of `text_column` / `feature_columns`, plus `label_column`.

    `task=None` infers it: a numeric label with more than 20 distinct values is regression, anything
    else classification (class names sorted, numerically when the labels are numbers).
    """
    path = Path(path)
    report = CleaningReport()
    df = _parse(_read_text(path, max_bytes, report), report)
    available = f"Received: columns {list(df.columns)}"
    if (text_column is None) == (not feature_columns):
        raise DataError(f"Give exactly one of text_column or feature_columns. {available}")
    if label_column is None or label_column not in df.columns:
        raise DataError(f"Label column {label_column!r} not found; pass label_column as one of the columns. "
                        f"{available}")
    inputs = [text_column] if text_column is not None else list(feature_columns or [])
    missing = [c for c in inputs if c not in df.columns]
    if missing:
        raise DataError(f"Input column(s) {missing} not found; pick from the file's columns. {available}")
    if label_column in inputs:
        raise DataError(f"Label column {label_column!r} is also an input column; choose different columns.")
    if task not in (None, "classification", "regression"):
        raise DataError(f"task must be 'classification', 'regression' or None (infer). Received: task={task!r}")
    modality = "text" if text_column is not None else "tabular"
    report.ignored_columns = [c for c in df.columns if c not in inputs and c != label_column]
    df = _clean(df, inputs, label_column, modality, report)
    if modality == "text":
        too_long = df[text_column].str.len() > MAX_TEXT_CHARS
        if too_long.any():  # tokenizers cut at max_seq_len anyway; keep memory bounded
            df.loc[too_long, text_column] = df.loc[too_long, text_column].str.slice(0, MAX_TEXT_CHARS)
            report.repaired.append(f"truncated {int(too_long.sum())} texts longer than {MAX_TEXT_CHARS:,} characters")
    labels = df[label_column]
    numbers = pd.to_numeric(labels, errors="coerce")
    if task is None:
        task = "regression" if numbers.notna().all() and numbers.nunique() > 20 else "classification"
    class_names = None
    if task == "classification":
        counts = labels.value_counts()
        if len(counts) < 2:
            raise DataError(f"Classification needs at least 2 classes in {label_column!r}; check the label "
                            f"column. Received: only {_examples(counts.index)}")
        small = counts[counts < 2]
        if len(small):
            raise DataError(f"Every class needs at least 2 rows to split into train and test; add rows or drop "
                            f"these classes (or use task='regression'). Received: {len(small)} class(es) with 1 "
                            f"row: {_examples(small.index)}")
        names = list(counts.index)
        as_num = pd.to_numeric(pd.Series(names), errors="coerce")
        key = (lambda n: (float(n), n)) if as_num.notna().all() else str
        class_names = tuple(sorted(names, key=key))
    stem = path.name.removesuffix(".gz").removesuffix(".csv")
    card = DatasetCard(
        name=name or stem, title=name or path.name, modality=modality, task=task, file=str(path),
        input_columns=tuple(inputs), label_column=label_column, class_names=class_names,
        rows=report.rows_in, source=f"user file {path.name}", license="user-provided", citation="",
        description=f"User CSV {path.name}: {modality} {task} on {label_column!r}.")
    x, y, _ = _arrays(df, card, inputs)
    return Dataset(card=card, x=x, y=y, report=report)


def load(name_or_path: str | Path, **csv_kwargs: object) -> Dataset:
    """A .csv/.csv.gz path goes to `load_csv`, a folder or zip of WAVs to `recordings.load_folder`, a
    registered name to `load_dataset`.

    A registered name wins over a same-named file in the working directory; CSV options that are
    None are ignored for registered datasets (config objects pass them through unset).
    """
    text = str(name_or_path)
    registered = {c.name for c in list_datasets()}
    from workbench.data.recordings import is_audio_source, load_folder

    if text not in registered and is_audio_source(text):  # a folder or zip of WAVs
        return load_folder(text)
    if text.lower().endswith((".csv", ".csv.gz")) or (text not in registered and Path(text).exists()):
        csv_kwargs.setdefault("label_column", None)
        return load_csv(text, **csv_kwargs)  # type: ignore[arg-type]
    extra = {k: v for k, v in csv_kwargs.items() if v is not None}
    if extra and text in registered:
        raise DataError(f"Column options only apply to CSV files, not to the registered dataset {text!r}; "
                        f"drop them. Received: {sorted(extra)}")
    return load_dataset(text)

