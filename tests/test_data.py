"""Behaviour of workbench.data: shipped datasets, user CSV cleaning/refusals, splits, augmentation."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest

from workbench.data import (
    DataError,
    augment_images,
    augment_token_ids,
    get_dataset_card,
    list_datasets,
    load,
    load_csv,
    load_dataset,
    sample_data_dir,
    split_dataset,
)

NAMES = [c.name for c in list_datasets()]


# --------------------------------------------------------------------------- shipped datasets

def test_registry_has_the_promised_datasets_with_licenses():
    assert set(NAMES) >= {"vader-sentiment", "vader-sentiment-score", "sms-spam", "mnist-5k",
                          "mnist-5k-seen", "mnist-5k-unseen", "digits", "diabetes"}
    for card in list_datasets():
        assert card.license and card.citation and card.source and card.description
        assert (sample_data_dir() / card.file).stat().st_size < 5_000_000
        assert json.loads(json.dumps(card.to_dict()))["name"] == card.name


def test_shipped_files_match_manifest_checksums():
    manifest = json.loads((sample_data_dir() / "manifest.json").read_text())
    for rel, meta in manifest["files"].items():
        assert hashlib.sha256((sample_data_dir() / rel).read_bytes()).hexdigest() == meta["sha256"], rel


@pytest.mark.parametrize("name", NAMES)
def test_every_dataset_loads_with_manifest_rows_dtypes_and_classes(name):
    card = get_dataset_card(name)
    ds = load_dataset(name)
    assert ds.report.rows_in == card.rows
    assert len(ds.x) == len(ds.y) == ds.report.rows_out > 0.9 * card.rows
    if card.modality == "text":
        assert ds.x.ndim == 1 and ds.x.dtype == object and all(isinstance(t, str) and t for t in ds.x[:50])
    elif card.modality == "image":
        assert ds.x.shape[1:] == (28, 28, 1) == card.image_shape and ds.x.dtype == np.float32
        assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0 and ds.x.max() > 0.9
    elif card.modality == "audio":  # log-mel pictures in [0, 1], each clip's peak at 1
        assert ds.x.shape[1:] == card.feature_shape and ds.x.dtype == np.float32
        assert ds.x.min() >= 0.0 and np.allclose(ds.x.max(axis=(1, 2, 3)), 1.0)
    else:
        assert ds.x.dtype == np.float32 and ds.x.shape[1] == len(card.input_columns)
    if card.task == "classification":
        assert ds.y.dtype == np.int64 and ds.num_classes == len(card.class_names)
        assert set(np.unique(ds.y)) == set(range(ds.num_classes))
    else:
        assert ds.y.dtype == np.float32 and ds.num_classes is None and card.class_names is None


def test_views_filter_and_remap():
    unseen, full = load_dataset("mnist-5k-unseen"), load_dataset("mnist-5k")
    assert unseen.num_classes == 5 and unseen.card.class_names == ("5", "6", "7", "8", "9")
    assert sorted(np.unique(unseen.y)) == [0, 1, 2, 3, 4]
    # the first unseen image is the first full-set image of digit >= 5, with its label shifted by 5
    first = int(np.flatnonzero(full.y >= 5)[0])
    np.testing.assert_array_equal(unseen.x[0], full.x[first])
    assert unseen.y[0] == full.y[first] - 5
    assert set(np.unique(load_dataset("mnist-5k-seen").y)) == {0, 1, 2, 3, 4}
    score, cls = load_dataset("vader-sentiment-score"), get_dataset_card("vader-sentiment")
    assert score.y.min() < -3.5 and score.y.max() > 3.5
    assert cls.rows == int((np.abs(score.y) >= 0.5).sum())


def test_sample_data_dir_override_and_load_dispatch(tmp_path, monkeypatch):
    (tmp_path / "datasets").mkdir()
    _write(tmp_path / "datasets" / "t.csv", "text,score\ngreat,2.5\nawful,-3\nmeh,0.1\nnice,1.2\nbad,-1\n")
    entry = {"name": "tiny", "title": "Tiny", "modality": "text", "task": "classification",
             "file": "datasets/t.csv", "input_columns": ["text"], "label_column": "label",
             "class_names": ["negative", "positive"], "rows": 4, "source": "test", "license": "CC0",
             "citation": "-", "description": "-", "filter": {"column": "score", "min_abs": 0.5},
             "derive": {"label_from_sign": "score"}}
    (tmp_path / "manifest.json").write_text(json.dumps({"datasets": [entry]}))
    monkeypatch.setenv("WORKBENCH_SAMPLE_DATA", str(tmp_path))
    ds = load("tiny", text_column=None, label_column=None)  # unset CSV options are ignored
    assert ds.x.tolist() == ["great", "awful", "nice", "bad"] and ds.y.tolist() == [1, 0, 1, 0]
    with pytest.raises(DataError, match="tiny"):
        get_dataset_card("sms-spam")
    with pytest.raises(DataError, match="only apply to CSV"):
        load("tiny", label_column="text")


def test_cached_arrays_are_read_only_and_unknown_name_lists_known():
    ds = load_dataset("diabetes")
    with pytest.raises(ValueError):
        ds.x[0, 0] = 1.0
    with pytest.raises(DataError, match="sms-spam") as err:
        load("no-such-dataset")
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- user CSV files

def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_latin1_file_is_repaired_and_reported(tmp_path):
    p = _write(tmp_path / "fr.csv", "text,label\ncafé crème,pos\nthé glacé,neg\nbon café,pos\nmauvais thé,neg\n",
               "latin-1")
    ds = load(str(p), text_column="text", label_column="label")
    assert "café crème" in ds.x.tolist() and ds.card.class_names == ("neg", "pos")
    assert "latin-1" in ds.report.summary()


def test_duplicates_blank_labels_empty_texts_whitespace_are_dropped_and_counted(tmp_path):
    p = _write(tmp_path / "d.csv", "text,label\n good ,a\ngood,a\nbad,b\nbad, \n  ,a\nworse,b\nfine,a\nugly,NaN\n")
    ds = load_csv(p, text_column="text", label_column="label")
    r = ds.report
    assert (r.rows_in, r.dropped_empty, r.dropped_nan_label, r.dropped_duplicates) == (8, 1, 2, 1)
    assert r.rows_out == len(ds.y) == 4 and sorted(ds.x.tolist()) == ["bad", "fine", "good", "worse"]
    assert "duplicate" in r.summary() and "\n" not in r.summary()


def test_semicolon_delimiter_is_detected_and_reported(tmp_path):
    p = _write(tmp_path / "s.csv", "a;b;y\n1;2;x\n3;4;z\n5;6;x\n7;8;z\n")
    ds = load_csv(p, feature_columns=["a", "b"], label_column="y")
    assert ds.x.shape == (4, 2) and ds.x.dtype == np.float32 and "delimiter" in ds.report.summary()


def test_task_inference_and_numeric_class_order(tmp_path):
    rows = "\n".join(f"{i},{i * 1.5}" for i in range(40))
    reg = load_csv(_write(tmp_path / "r.csv", "x,y\n" + rows), feature_columns=["x"], label_column="y")
    assert reg.card.task == "regression" and reg.y.dtype == np.float32
    rows = "\n".join(f"{i},{[2, 10, 1][i % 3]}" for i in range(30))
    cls = load_csv(_write(tmp_path / "c.csv", "x,y\n" + rows), feature_columns=["x"], label_column="y")
    assert cls.card.task == "classification" and cls.card.class_names == ("1", "2", "10")


@pytest.mark.parametrize(
    ("content", "kwargs", "match"),
    [
        ("text,label\nhi,a\nyo,b\n", {"label_column": "target"}, r"'text', 'label'"),
        ("text,label\nhi,a\nyo,a\nhey,a\n", {}, "at least 2 classes"),
        ("text,label\nhi,a\nyo,a\nhey,b\n", {}, "at least 2 rows"),
        ("text,label\nhi,1.5\nyo,abc\n", {"task": "regression"}, "non-numeric.*'abc'"),
        ("text,label\n", {}, "header but no data"),
        ("", {}, "empty"),
        ("   \n\n", {}, "empty"),
        ("text,label\nhi,a\nyo,b\n", {"text_column": None}, "exactly one of"),
        ("text,label\n1,a\nyo,b\n2,a\n3,b\n", {"text_column": None, "feature_columns": ["text"]}, "'yo'"),
        ("text,label\nhi,a,x\nyo,b\n", {}, "Expected 2 fields"),
    ],
)
def test_bad_user_csvs_are_refused_with_one_line(tmp_path, content, kwargs, match):
    p = _write(tmp_path / "bad.csv", content)
    args = {"text_column": "text", "label_column": "label", **kwargs}
    with pytest.raises(DataError, match=match) as err:
        load_csv(p, **args)
    assert "\n" not in str(err.value)


def test_binary_missing_and_oversize_files_are_refused(tmp_path):
    png = tmp_path / "img.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match="binary"):
        load_csv(png, text_column="text", label_column="label")
    with pytest.raises(DataError, match="not found"):
        load_csv(tmp_path / "missing.csv", text_column="text", label_column="label")
    big = _write(tmp_path / "big.csv", "text,label\n" + "hello,a\nbye,b\n" * 100)
    with pytest.raises(DataError, match="limit"):
        load_csv(big, text_column="text", label_column="label", max_bytes=100)


def test_gzip_csv_loads(tmp_path):
    p = tmp_path / "t.csv.gz"
    p.write_bytes(gzip.compress(b"text,label\nhi,a\nyo,b\nhey,a\nsup,b\n"))
    assert len(load(str(p), text_column="text", label_column="label").y) == 4


# --------------------------------------------------------------------------- splits

def test_split_is_stratified_disjoint_and_seeded():
    ds = load_dataset("sms-spam")
    s = split_dataset(ds, seed=3)
    idx = s.indices
    assert sum(s.sizes().values()) == len(ds.y)
    assert not (set(idx["train"]) & set(idx["val"]) or set(idx["train"]) & set(idx["test"])
                or set(idx["val"]) & set(idx["test"]))
    spam = ds.y.mean()
    for y in (s.y_train, s.y_val, s.y_test):
        assert abs(y.mean() - spam) < 0.01
    again, other = split_dataset(ds, seed=3), split_dataset(ds, seed=4)
    np.testing.assert_array_equal(s.indices["test"], again.indices["test"])
    np.testing.assert_array_equal(s.x_train, again.x_train)
    assert not np.array_equal(s.indices["test"], other.indices["test"])


def test_every_split_gets_every_class_even_tiny_ones(tmp_path):
    rows = ["text,label"] + [f"a{i},big" for i in range(50)] + [f"b{i},small" for i in range(3)]
    ds = load_csv(_write(tmp_path / "t.csv", "\n".join(rows)), text_column="text", label_column="label")
    s = split_dataset(ds, seed=0)
    for y in (s.y_train, s.y_val, s.y_test):
        assert set(y) == {0, 1}


def test_limit_per_class_trims_only_training():
    ds = load_dataset("mnist-5k-unseen")
    full, few = split_dataset(ds, seed=1), split_dataset(ds, seed=1, limit_per_class=5)
    assert np.bincount(few.y_train).tolist() == [5] * 5
    np.testing.assert_array_equal(full.indices["val"], few.indices["val"])
    np.testing.assert_array_equal(full.y_test, few.y_test)


def test_max_rows_subsamples_stratified_and_regression_split():
    s = split_dataset(load_dataset("digits"), seed=0, max_rows=200)
    assert sum(s.sizes().values()) == 200 and set(s.y_test) == set(range(10))
    r = split_dataset(load_dataset("diabetes"), seed=0)
    assert r.sizes() == {"train": 310, "val": 66, "test": 66}
    with pytest.raises(DataError, match="classification"):
        split_dataset(load_dataset("diabetes"), limit_per_class=3)


# --------------------------------------------------------------------------- augmentation

def test_token_augmentation_keeps_shape_cls_sep_and_padding():
    rng = np.random.default_rng(0)
    ids = np.zeros((4, 16), dtype=np.int32)
    mask = np.zeros((4, 16), dtype=np.int32)
    for b, n in enumerate([12, 16, 3, 8]):
        ids[b, :n] = [101, *range(1000 + 10 * b, 1000 + 10 * b + n - 2), 102]
        mask[b, :n] = 1
    out, new_mask = augment_token_ids(ids, mask, rng, drop_prob=0.3, swap_prob=0.3, return_mask=True)
    assert out.shape == ids.shape and out.dtype == ids.dtype and not np.array_equal(out, ids)
    assert (out[:, 0] == 101).all()
    for b in range(4):
        n = int(new_mask[b].sum())
        assert out[b, n - 1] == 102 and (out[b, n:] == 0).all() and (new_mask[b, :n] == 1).all()
        assert set(out[b, 1:n - 1]) <= set(ids[b, 1:int(mask[b].sum()) - 1]) and n >= 3
    np.testing.assert_array_equal(out[2], ids[2])  # CLS x SEP: nothing safe to change
    same = augment_token_ids(ids, mask, np.random.default_rng(0), drop_prob=0.3, swap_prob=0.3)
    np.testing.assert_array_equal(out, same)


def test_image_augmentation_stays_in_range_and_changes_images():
    x = load_dataset("mnist-5k").x[:32]
    out = augment_images(x, np.random.default_rng(0), max_shift=2, noise_std=0.1)
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and not np.allclose(out, x)
    shifted = augment_images(x, np.random.default_rng(1), max_shift=3, noise_std=0.0)
    assert abs(shifted.sum() - x.sum()) / x.sum() < 0.05  # shifts move ink, rarely cut it
