"""Checks that say, before anything trains, when a file or a split cannot mean what the user hopes.

Why here and not in the app: the same rules answer the app, the CLI and the notebooks, and they are
plain functions a test can call. Nothing here imports TensorFlow.

- `file_kind` recognises common files that are not CSV tables or Keras models by their first bytes
  (a PDF, an Excel workbook, an image...), so an upload error can say "this looks like a PDF"
  instead of a parser's "'P' expected after '\"'".
- `looks_binary` tells a binary file from a text file with a few stray NUL bytes (a crashed export,
  a bad copy): the loader strips those and says so, instead of refusing a good CSV as "binary".
- `split_warnings` flags validation/test splits too small for their scores to mean much: with 10
  test rows accuracy moves in steps of 10 %, and two runs "differing by 10 points" differ by one row.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping

#: Below this many rows a split's score is too coarse to compare runs (one row = more than 5 %).
MIN_EVAL_ROWS = 20
#: Below this many rows per class (on average) a class's share of a split is mostly chance.
MIN_ROWS_PER_CLASS = 5
#: A text file may hold this many stray NUL bytes, or this share of its bytes, and still be text.
MAX_STRAY_NULS, MAX_NUL_SHARE = 8, 0.01
#: Above this share of control characters (other than tab, CR, LF and NUL) bytes are not text.
MAX_CONTROL_SHARE = 0.01

_MAGIC = (
    (b"%PDF", "a PDF"),
    (b"\xd0\xcf\x11\xe0", "an old Office file (.xls or .doc)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x89HDF", "an HDF5 file (a legacy Keras .h5 model?)"),
    (b"{\\rtf", "an RTF document"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
)


def file_kind(data: bytes) -> str | None:
    """What a file looks like from its bytes ("a PDF", "a Keras model", ...); None for plain text.

    Gzip is left to the CSV loader (it reads .csv.gz); UTF-16 text with a byte-order mark is text.
    """
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    if data.startswith(b"\x1f\x8b") or data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return None
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "a web page (HTML)"
    if head.startswith(b"<?xml"):
        return "an XML file"
    if head.startswith(b"{") and head[1:].lstrip().startswith(b'"'):
        return "a JSON file"
    if looks_binary(data):
        return "a binary file"
    return None


def looks_binary(data: bytes) -> bool:
    """True for binary bytes; False for text, including text with a few stray NUL bytes.

    Why both tests: a UTF-8 CSV with 3 NULs is still a CSV (strip them), while a binary file has many
    NULs or, without them (compressed data), many other control bytes. All NULs of the file count;
    the control bytes are sampled from its first 64 KiB. Bytes below 0x20 are the same characters in
    UTF-8, Windows-1252 and Latin-1, so no decoding is needed. UTF-16 text (half NULs) is binary
    here: the loader decodes it by its byte-order mark before asking.
    """
    nuls = data.count(0)
    if nuls > max(MAX_STRAY_NULS, MAX_NUL_SHARE * len(data)):
        return True
    sample = data[:65536]
    control = sum(sample.count(b) for b in range(1, 32) if b not in (9, 10, 13))
    return control > MAX_CONTROL_SHARE * len(sample)


def _zip_kind(data: bytes) -> str:
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "a damaged or incomplete zip archive"
    if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
        return "a Keras model"
    if any(n.startswith("xl/") for n in names):
        return "an Excel workbook"
    if any(n.startswith("word/") for n in names):
        return "a Word document"
    if any(n.startswith("ppt/") for n in names):
        return "a PowerPoint file"
    if "mimetype" in names and any(n == "content.xml" for n in names):
        return "an OpenDocument file"
    return "a zip archive"


def split_warnings(split_sizes: Mapping[str, int], task: str, num_classes: int | None = None) -> list[str]:
    """Plain-words warnings for validation/test splits too small to mean anything (empty: fine).

    A classification score over n rows moves in steps of 100/n %, and with fewer than
    `MIN_ROWS_PER_CLASS` rows per class some classes are barely (or not) present; a regression error
    over a handful of rows is mostly which rows landed there. The numbers go into the message so the
    user sees how coarse the score is and what to change.
    """
    out: list[str] = []
    for split, label in (("val", "validation"), ("test", "test")):
        n = int(split_sizes.get(split, 0))
        fix = (f"raise the {label} share, add rows, or treat differences under {_pct(1 / n)} as noise"
               if n else f"raise the {label} share or add rows")
        if n == 0:
            out.append(f"The {label} split is empty: there is no {label} score at all; {fix}.")
        elif task == "classification" and n < MIN_EVAL_ROWS:
            out.append(f"{label.capitalize()} accuracy over {n} rows moves in steps of {_pct(1 / n)}: one row "
                       f"more or less right changes it by that much; {fix}.")
        elif task == "classification" and num_classes and n < MIN_ROWS_PER_CLASS * num_classes:
            out.append(f"The {label} split has {n} rows for {num_classes} classes (about {n / num_classes:.1f} "
                       f"per class): per-class results there are mostly chance; {fix}.")
        elif task != "classification" and n < MIN_EVAL_ROWS:
            out.append(f"The {label} error is measured on {n} rows only: it says more about which rows landed "
                       f"there than about the model; {fix}.")
    return out


def _pct(fraction: float) -> str:
    value = 100 * fraction
    return f"{value:.0f} %" if math.isclose(value, round(value)) or value >= 10 else f"{value:.1f} %"


__all__ = ["MIN_EVAL_ROWS", "MIN_ROWS_PER_CLASS", "file_kind", "looks_binary", "split_warnings"]
