"""The engine's plain-words checks: what a non-CSV file looks like, and splits too small to mean much."""

from __future__ import annotations

import io
import zipfile

import pytest

from workbench.data.checks import MIN_EVAL_ROWS, file_kind, split_warnings


def _zip(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, "x")
    return buffer.getvalue()


@pytest.mark.parametrize(("data", "kind"), [
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "a PDF"),
    (_zip("[Content_Types].xml", "xl/workbook.xml"), "an Excel workbook"),
    (_zip("word/document.xml"), "a Word document"),
    (_zip("config.json", "metadata.json", "model.weights.h5"), "a Keras model"),
    (_zip("notes.txt"), "a zip archive"),
    (_zip("config.json", "model.weights.h5")[:40], "a damaged or incomplete zip archive"),
    (b"\x89PNG\r\n\x1a\n....", "a PNG image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office file (.xls or .doc)"),
    (b"  <!DOCTYPE html><html><body>", "a web page (HTML)"),
    (b'{"rows": [1, 2]}', "a JSON file"),
    (b"abc\x00\x01\x02def", "a binary file"),
])
def test_file_kind_names_what_a_file_is(data: bytes, kind: str) -> None:
    assert file_kind(data) == kind


@pytest.mark.parametrize("data", [b"text,label\nhello,a\n", "tëxt;label\n".encode("cp1252"),
                                  "text,label\n".encode("utf-16"), b"\x1f\x8b\x08\x00gzip"])
def test_file_kind_leaves_text_and_gzip_to_the_csv_loader(data: bytes) -> None:
    assert file_kind(data) is None


def test_small_splits_are_flagged_with_their_numbers() -> None:
    [test] = split_warnings({"train": 41, "val": 40, "test": 10}, "classification", 2)
    assert test.startswith("Test accuracy over 10 rows moves in steps of 10 %")
    both = split_warnings({"train": 41, "val": 7, "test": 3}, "classification", 2)
    assert [w.split(" over ")[0] for w in both] == ["Validation accuracy", "Test accuracy"]
    assert "steps of 14 %" in both[0] and "steps of 33 %" in both[1]


def test_few_rows_per_class_are_flagged_even_above_the_row_minimum() -> None:
    sizes = {"train": 500, "val": 30, "test": 100}
    [val] = split_warnings(sizes, "classification", 10)
    assert "30 rows for 10 classes (about 3.0 per class)" in val
    assert split_warnings(sizes, "classification", 2) == []


def test_regression_and_empty_splits() -> None:
    [val] = split_warnings({"train": 90, "val": 5, "test": 40}, "regression")
    assert "validation error is measured on 5 rows" in val
    [empty] = split_warnings({"train": 90, "val": 0, "test": 40}, "regression")
    assert "validation split is empty" in empty


def test_enough_rows_give_no_warning() -> None:
    sizes = {"train": 1000, "val": MIN_EVAL_ROWS, "test": 200}
    assert split_warnings(sizes, "classification", 2) == []
    assert split_warnings(sizes, "regression") == []
