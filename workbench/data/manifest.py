"""The registry of shipped datasets: one `DatasetCard` per entry of ``sample_data/manifest.json``.

Why a manifest instead of code: the app, the CLI (``workbench datasets --json``) and the loader all
need the same facts (file, columns, classes, license, citation), and ``scripts/make_sample_data.py``
writes them next to the files it builds, so the numbers shown to users cannot drift from the data.

Several entries may be *views* on one file. A view may carry:

* ``filter``: keep only some rows of the file, applied before anything else. Either
  ``{"column": "score", "min_abs": 0.5}`` (keep ``|score| >= 0.5``) or
  ``{"column": "label", "in": [5, 6, 7, 8, 9]}`` (keep rows whose value is listed).
* ``derive``: make the label column from another column. Only ``{"label_from_sign": "score"}``
  exists: label = ``class_names[1]`` when score > 0, else ``class_names[0]``.

Class ids are always the position of the raw label (as a string) in ``class_names``; that is the
label map, so the ``mnist-5k-unseen`` view (class names "5".."9") gets ids 0..4 without another field.
Image entries add ``source_shape`` (pixels per row/column in the file), ``pixel_max`` (divide by it
to reach [0, 1]) and ``image_pad`` (zero border added after resizing, see `loading`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import DataError
from workbench.paths import sample_data_dir

MODALITIES = ("text", "image", "tabular", "audio")
TASKS = ("classification", "regression")
_RANGE = re.compile(r"^([A-Za-z_]+)(\d+)\.\.\1?(\d+)$")


@dataclass(frozen=True)
class DatasetCard:
    """Everything known about a dataset before loading it: what the app shows and the loader needs."""

    name: str
    title: str
    modality: str
    task: str
    file: str
    input_columns: tuple[str, ...]
    label_column: str
    class_names: tuple[str, ...] | None
    rows: int
    source: str
    license: str
    citation: str
    description: str
    image_shape: tuple[int, int, int] | None = None
    source_shape: tuple[int, int] | None = None
    pixel_max: float | None = None
    image_pad: int = 0
    features_file: str | None = None  # audio: the uint8 features file, rows by `feature_row` (`data.audio`)
    feature_shape: tuple[int, ...] | None = None  # audio: one example's model input
    audio_dir: str | None = None  # audio: sample recordings to play (a few of the dataset's own WAVs)
    filter: dict[str, Any] | None = field(default=None, hash=False)
    derive: dict[str, Any] | None = field(default=None, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy (tuples become lists), used by ``workbench datasets --json``."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @property
    def columns(self) -> list[str]:
        """`input_columns` with range shorthands like ``"p0..p783"`` expanded to real column names."""
        return expand_columns(self.input_columns)


def expand_columns(columns: tuple[str, ...] | list[str]) -> list[str]:
    """Expand ``"p0..p783"`` into ``["p0", ..., "p783"]``; other names pass through unchanged.

    Why: listing 784 pixel names in the manifest and in every `to_dict()` would drown the useful fields.
    """
    out: list[str] = []
    for col in columns:
        m = _RANGE.match(col)
        if m:
            prefix, lo, hi = m.group(1), int(m.group(2)), int(m.group(3))
            out.extend(f"{prefix}{i}" for i in range(lo, hi + 1))
        else:
            out.append(col)
    return out


def _error(message: str) -> Exception:
    return DataError(message)


def _card_from_entry(entry: dict[str, Any]) -> DatasetCard:
    known = {f.name for f in dataclasses.fields(DatasetCard)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise _error(f"Manifest entry {entry.get('name')!r} has unknown fields; rebuild it with "
                     f"scripts/make_sample_data.py. Received: {unknown}")
    values = dict(entry)
    for key in ("input_columns", "class_names", "image_shape", "source_shape", "feature_shape"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    card = DatasetCard(**values)
    if card.modality not in MODALITIES or card.task not in TASKS:
        raise _error(f"Manifest entry {card.name!r} has an unknown modality or task. "
                     f"Received: modality={card.modality!r}, task={card.task!r}")
    if (card.task == "classification") != (card.class_names is not None):
        raise _error(f"Manifest entry {card.name!r}: class_names must be given exactly for classification.")
    return card


@lru_cache(maxsize=8)
def _read_manifest(path: str, mtime_ns: int) -> tuple[DatasetCard, ...]:
    """Parsed once per file version (mtime is part of the key so a rebuilt manifest is picked up)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise _error(f"Cannot read the dataset manifest; run scripts/make_sample_data.py. Received: {exc}") from None
    return tuple(_card_from_entry(entry) for entry in data.get("datasets", []))


def list_datasets() -> list[DatasetCard]:
    """All registered datasets, in manifest order."""
    path = sample_data_dir() / "manifest.json"
    if not path.is_file():
        raise _error(f"No dataset manifest at {path}; set WORKBENCH_SAMPLE_DATA or run "
                     f"scripts/make_sample_data.py.")
    return list(_read_manifest(str(path), path.stat().st_mtime_ns))


def get_dataset_card(name: str) -> DatasetCard:
    """The card registered as `name`; an unknown name is a `DataError` that lists the known ones."""
    cards = list_datasets()
    for card in cards:
        if card.name == name:
            return card
    known = ", ".join(c.name for c in cards)
    raise _error(f"Unknown dataset {name!r}; use one of: {known} (or a path to a .csv file).")


def apply_view(df: pd.DataFrame, card: DatasetCard) -> pd.DataFrame:
    """Apply the card's ``filter`` then ``derive`` rules (module docstring) to the file's rows."""
    rule = card.filter or {}
    if "min_abs" in rule:
        df = df[df[rule["column"]].abs() >= rule["min_abs"]]
    if "in" in rule:
        df = df[df[rule["column"]].isin(rule["in"])]
    if card.derive and "label_from_sign" in card.derive:
        neg, pos = card.class_names or ("negative", "positive")
        df = df.assign(**{card.label_column: np.where(df[card.derive["label_from_sign"]] > 0, pos, neg)})
    return df
