"""Data at the edges: stray NUL bytes, degenerate splits, shape transforms, and the report a run keeps."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import prepared

from workbench.config import TrainConfig
from workbench.data import DataError, load_csv, load_dataset, split_dataset
from workbench.data.augment import resize_images
from workbench.data.checks import looks_binary
from workbench.data.shapes import fit_to_model
from workbench.errors import ModelError, WorkbenchError
from workbench.models.bert import seq_len_note
from workbench.train.trainer import load_data


def _table_csv(path, rows: int = 60, nuls: int = 0, features: int = 4) -> str:
    """A tabular classification CSV with an unused `id` column and `nuls` NUL bytes inside its values."""
    rng = np.random.default_rng(0)
    lines = ["id," + ",".join(f"f{j}" for j in range(features)) + ",label"]
    for i in range(rows):
        values = ",".join(f"{v:.3f}" for v in rng.normal(size=features))
        lines.append(f"{i},{values},{'ab'[i % 2]}")
    data = ("\n".join(lines) + "\n").encode()
    for k in range(nuls):  # inside a label, spread over the file, where a crashed export might leave them
        at = data.index(b"\n", 200 + 37 * k) - 1
        data = data[:at] + b"\x00" + data[at:]
    path.write_bytes(data)
    return str(path)


# --------------------------------------------------------------------------- NUL bytes

def test_stray_nul_bytes_are_removed_and_reported(tmp_path):
    clean = load_csv(_table_csv(tmp_path / "clean.csv"), feature_columns=["f0", "f1", "f2", "f3"],
                     label_column="label")
    dirty = load_csv(_table_csv(tmp_path / "dirty.csv", nuls=3), feature_columns=["f0", "f1", "f2", "f3"],
                     label_column="label")
    assert "removed 3 NUL bytes" in dirty.report.repaired
    assert "repaired: removed 3 NUL bytes" in dirty.report.summary()
    np.testing.assert_array_equal(dirty.x, clean.x)  # the values read the same without them
    assert "ignored 1 column: 'id'" in dirty.report.summary()


def test_binary_files_are_still_refused():
    assert looks_binary(bytes(range(256)) * 64)  # many NULs and control bytes
    assert looks_binary(b"a,b\n" + b"\x00" * 40 + b"1,2\n")  # NULs are not a small share
    assert looks_binary(b"a,b\n" + bytes(range(1, 9)) * 30)  # no NUL, but control bytes: compressed data
    assert not looks_binary(b"text,label\n" + b"hello,a\n" * 50 + b"\x00\x00")
    assert not looks_binary("tëxt;label\n".encode("cp1252") * 20)


def test_a_binary_csv_names_its_nul_count(tmp_path):
    path = tmp_path / "blob.csv"
    path.write_bytes(b"text,label\n" + b"\x00\x01\x02\x03" * 500)
    with pytest.raises(DataError, match=r"looks binary.*Received: 500 NUL bytes in 2,011"):
        load_csv(path, text_column="text", label_column="label")


# --------------------------------------------------------------------------- degenerate splits

def _many_classes_csv(path, classes: int, per_class: int) -> str:
    rows = ["text,label"] + [f"example {k} number {j},c{k}" for k in range(classes) for j in range(per_class)]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_500_classes_of_2_rows_are_refused_with_the_numbers(tmp_path):
    ds = load_csv(_many_classes_csv(tmp_path / "wide.csv", 500, 2), text_column="text", label_column="label")
    with pytest.raises(DataError) as err:
        split_dataset(ds, seed=0)
    message = str(err.value)
    assert "validation split is empty" in message and "500 of 500 classes have fewer than 3 rows" in message
    assert message.endswith("Received: 1000 rows, split train=500, val=0, test=500") and "\n" not in message


def test_max_rows_1_is_refused_by_load_data():
    config = TrainConfig(model="mnist-cnn", data="digits", method="full", max_rows=1, batch_size=1)
    with pytest.raises(WorkbenchError) as err:
        load_data(config)
    assert str(err.value) == ("--max-rows 1 leaves 1 training example of 1 class: classification needs at least "
                              "2 classes; use --max-rows 30 or more. Received: max_rows=1, split train=1, val=0, "
                              "test=0")


@pytest.mark.parametrize("data, max_rows, message", [
    ("digits", 12, "leaves 10 training, 0 validation and 2 test rows: the validation split is empty; "
                   "use --max-rows 30 or more"),
    ("diabetes", 2, "leaves 1 training, 0 validation and 1 test rows: the validation split is empty; "
                    "use --max-rows 20 or more"),
])
def test_max_rows_that_empty_a_split_are_refused(data, max_rows, message):
    with pytest.raises(DataError, match=message):
        split_dataset(load_dataset(data), seed=0, max_rows=max_rows)
    smallest = int(message.split("--max-rows ")[1].split()[0])
    sizes = split_dataset(load_dataset(data), seed=0, max_rows=smallest).sizes()
    assert min(sizes.values()) >= 1  # the suggested value does work


def test_coarse_splits_become_data_notes():
    dataset, split = load_data(TrainConfig(model="mnist-cnn", data="digits", method="full", max_rows=60,
                                           batch_size=8))
    assert split.sizes()["val"] == 10
    assert any(note.startswith("Validation accuracy over 10 rows moves in steps of 10 %") for note in dataset.notes)
    assert load_data(TrainConfig(model="mnist-cnn", data="digits", method="full"))[0].notes == []


# --------------------------------------------------------------------------- shapes and resizing

def test_shrinking_averages_areas_and_enlarging_stays_bilinear():
    rng = np.random.default_rng(1)
    images = rng.random((3, 28, 28)).astype(np.float32)
    half = resize_images(images, (14, 14))
    np.testing.assert_allclose(half, images.reshape(3, 14, 2, 14, 2).mean(axis=(2, 4)), atol=1e-6)
    same = resize_images(images, (28, 28))
    np.testing.assert_array_equal(same, images)
    double = resize_images(images[:, :2, :2], (4, 4))
    assert double[0, 0, 0] == images[0, 0, 0] and double[0, 1, 1] == pytest.approx(
        0.5625 * images[0, 0, 0] + 0.1875 * (images[0, 0, 1] + images[0, 1, 0]) + 0.0625 * images[0, 1, 1])


def test_native_digits_are_the_file_pixels():
    ds = load_dataset("digits")
    assert ds.native.shape == (1797, 8, 8, 1) and ds.native.max() == 1.0
    fitted, note = fit_to_model(ds, (8, 8, 1), "m.keras")
    np.testing.assert_array_equal(fitted.x, ds.native)
    assert note in fitted.notes and "8×8 natively" in note and ds.notes == []
    assert load_dataset("mnist-5k").native is None  # shown at its own size: nothing else to keep


def test_table_reshapes_only_when_the_layout_is_obvious(tmp_path):
    ds = load_csv(_table_csv(tmp_path / "t.csv", features=64), feature_columns=[f"f{j}" for j in range(64)],
                  label_column="label")
    image, note = fit_to_model(ds, (8, 8, 1), "m.keras")
    assert image.x.shape == (60, 8, 8, 1) and "64 feature columns" in note
    np.testing.assert_array_equal(image.x[5, 1, :, 0], ds.x[5, 8:16])  # row by row
    assert fit_to_model(ds, (None, 1), "m.keras")[0].x.shape == (60, 64, 1)
    same, none = fit_to_model(ds, (64,), "m.keras")
    assert same is ds and none is None
    with pytest.raises(ModelError, match=r"input shape \(4, 16\) does not fit .* shape=\(64,\) \(or \(64, 1\), "
                                         r"\(8, 8, 1\)\)\. Received: model='m.keras'"):
        fit_to_model(ds, (4, 16), "m.keras")


def test_a_huge_resize_is_refused_with_its_size():
    with pytest.raises(ModelError, match=r"5,000 examples of mnist-5k .* \(224, 224, 3\) needs 2.8 GiB"):
        fit_to_model(load_dataset("mnist-5k"), (224, 224, 3), "big.keras")


def test_seq_len_clamp_note():
    assert seq_len_note("tiny-bert", 512, 128) == "max_seq_len 512 is more than tiny-bert's 128 positions: using 128"
    assert seq_len_note("tiny-bert", 128, 128) is None


def test_tiny_bert_records_its_clamp_as_a_note():
    prep = prepared(TrainConfig(model="tiny-bert", data="sms-spam", method="linear", max_rows=60, batch_size=8,
                                max_seq_len=256))
    assert prep.inputs["train"]["token_ids"].shape[1] == 128
    assert "max_seq_len 256 is more than tiny-bert's 128 positions: using 128" in prep.notes


# --------------------------------------------------------------------------- the run keeps the report

def test_a_completed_run_keeps_its_data_report_and_notes(runs_dir, tmp_path):
    from workbench.runs import RunManager
    from workbench.runs.store import RunStore

    path = _table_csv(tmp_path / "dirty.csv", rows=90, nuls=3)
    manager = RunManager(runs_dir)
    run_id = manager.start(TrainConfig(model="mlp", data=path, feature_columns=["f0", "f1", "f2", "f3"],
                                       label_column="label", method="full", epochs=1, batch_size=16,
                                       export_model=False))
    assert manager.wait(run_id, timeout=120) == "completed"
    final = RunStore(runs_dir).get_run(run_id).final_metrics  # as read back from the store
    assert final["data_report"] == ("90 of 90 rows kept; ignored 1 column: 'id'; repaired: removed 3 NUL bytes")
    assert any("Validation accuracy over 14 rows" in note for note in final["data_notes"])
    assert isinstance(final["test_accuracy"], float)
    frame = RunStore(runs_dir).runs_frame([run_id])  # the tables keep numbers only
    assert "data_report" not in frame.columns and "test_accuracy" in frame.columns
