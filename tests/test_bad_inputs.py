"""The bad-input catalogue: whatever a user feeds the CLI, one clear line (exit 2) or a reported repair.

Data cases go through `workbench check-data` (the same loader `train` uses, without training), model
and config cases through `workbench train`. Every refusal is one line naming the problem and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest

from workbench.cli import main


def csv(tmp_path, name, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


ROWS = "".join(f"message number {i} is {'great' if i % 2 else 'awful'},{'pos' if i % 2 else 'neg'}\n" for i in range(40))
GOOD = "text,label\n" + ROWS

# (case, file name, content, extra flags, expected exit, text that must appear)
DATA_CASES = [
    ("empty file", "empty.csv", "", [], 2, "empty"),
    ("header only", "header.csv", "text,label\n", [], 2, "no data rows"),
    ("binary", "binary.csv", bytes(range(256)) * 4, [], 2, "binary"),
    ("latin-1 text", "latin1.csv", ("text,label\n" + ROWS + "café crème,pos\n").encode("latin-1"), [], 0, "latin-1"),
    ("semicolon delimiter", "semi.csv", GOOD.replace(",", ";"), [], 0, "delimiter"),
    ("missing label column", "nolabel.csv", GOOD.replace("label", "target"), [], 2, "not found"),
    ("misnamed label column", "misnamed.csv", GOOD.replace("label", "Label"), [], 2, "not found"),
    ("blank labels", "blank.csv", GOOD + "no label here,\nanother one,  \n", [], 0, "blank label"),
    ("single class", "single.csv", "text,label\n" + "".join(f"row {i},a\n" for i in range(10)), [], 2, "at least 2 classes"),
    ("one row per class", "onerow.csv", "text,label\nfirst,a\nsecond,b\nthird,c\n", [], 2, "at least 2 rows"),
    ("500 classes x 2 rows (train would refuse the split)", "wide.csv",
     "text,label\n" + "".join(f"sample {i} {j},c{i}\n" for i in range(500) for j in range(2)), [], 2,
     "validation split is empty"),
    ("tiny splits are noted", "tiny.csv", GOOD, [], 0, "moves in steps of 17 %"),
    ("duplicate rows", "dups.csv", GOOD + ROWS[:200], [], 0, "duplicates"),
    ("extremely long text", "long.csv", GOOD + "x" * 50_000 + ",pos\n", [], 0, "truncated"),
    ("numeric target with strings", "numstr.csv", "text,score\n" + "".join(f"t{i},{i}.5\n" for i in range(30)) + "bad,high\n",
     ["--task", "regression", "--label-column", "score"], 2, "numeric"),
    ("text column missing", "notext.csv", GOOD, ["--text-column", "body"], 2, "not found"),
]


@pytest.mark.parametrize("case, name, content, flags, code, message", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_catalogue(capsys, tmp_path, case, name, content, flags, code, message):
    path = csv(tmp_path, name, content)
    args = {"--text-column": "text", "--label-column": "label"}
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        args[flag] = value
    got = main(["check-data", path, *[x for kv in args.items() for x in kv]])
    out, err = capsys.readouterr()
    text = (out + err).lower()
    assert got == code and message.lower() in text, (case, out, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "traceback" not in text


def test_oversized_upload_is_refused(tmp_path):
    from workbench.data import DataError, load_csv

    with pytest.raises(DataError, match="larger"):
        load_csv(csv(tmp_path, "big.csv", GOOD * 50), text_column="text", label_column="label", max_bytes=10_000)


def _model_files(tmp_path):
    def save(model, name):
        path = tmp_path / name
        model.save(path)
        return str(path)

    def cnn(shape=(28, 28, 1), classes=10):
        inputs = keras.Input(shape)
        return keras.Model(inputs, keras.layers.Dense(classes)(keras.layers.Flatten()(inputs)))

    junk = tmp_path / "junk.keras"
    junk.write_text("hello")
    good = save(cnn(), "good.keras")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(Path(good).read_bytes()[:300])
    inputs = keras.Input((28, 28, 1))
    lam = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Lambda(lambda t: t)(inputs))))
    return {"not keras": str(junk), "truncated": str(truncated), "lambda": save(lam, "lambda.keras"),
            "input shape": save(cnn(shape=(8, 8, 2)), "two_channels.keras"), "classes": save(cnn(classes=3), "three.keras"),
            "pickle": csv(tmp_path, "model.pkl", b"\x80\x04K\x01.")}


MODEL_CASES = [("not keras", "Not a Keras model file"), ("truncated", "damaged or truncated"), ("lambda", "Lambda"),
               ("input shape", "input shape"), ("classes", "outputs 3 values"), ("pickle", "Not a Keras model file")]


@pytest.mark.parametrize("case, message", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_model_catalogue(capsys, runs_dir, tmp_path, case, message):
    path = _model_files(tmp_path)[case]
    code = main(["train", "--model", path, "--data", "digits", "--method", "full"])
    _, err = capsys.readouterr()
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


CONFIG_CASES = [
    (["--rank", "0"], "rank must be"), (["--rank", "-3"], "rank must be"), (["--lr", "0"], "lr must be"),
    (["--lr", "-1"], "lr must be"), (["--lr", "nan"], "lr must be"), (["--epochs", "0"], "epochs must be"),
    (["--batch-size", "5000"], "larger than the"), (["--method", "qlora"], "Unknown method"),
    (["--method", "linear", "--share", "tied"], "share='tied' works with method"),
    (["--method", "full", "--hierarchical", "top-down", "--stage-steps", "10000"], "do not fit"),
    (["--data", "imagenet"], "imagenet"), (["--mixed-precision", "fp8"], "mixed_precision"),
    (["--strategy", "tpu"], "strategy must be"), (["--name", "x" * 200], "name must be"),
]


@pytest.mark.parametrize("flags, message", CONFIG_CASES, ids=[" ".join(c[0])[:30] for c in CONFIG_CASES])
def test_config_catalogue(capsys, runs_dir, flags, message):
    code = main(["train", "--model", "mlp", "--data", "diabetes", "--method", "lora", "--epochs", "2", *flags])
    _, err = capsys.readouterr()
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_repaired_csv_trains_end_to_end(capsys, runs_dir, tmp_path):
    path = csv(tmp_path, "mixed.csv", ("text,label\n" + ROWS * 3 + "café,pos\n,neg\n").encode("latin-1"))
    code = main(["train", "--model", "tiny-bert", "--data", path, "--text-column", "text", "--label-column", "label",
                 "--method", "linear", "--epochs", "1", "--batch-size", "16", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["status"] == "completed"
    assert len(DATA_CASES) + len(MODEL_CASES) + len(CONFIG_CASES) + 1 >= 25


# -- the same catalogue through the browser's path: an `st.error`, never an exception ----------------
# In the app the user picks the label column from the file's own header, so "missing/misnamed label
# column" cannot happen there; every other refusal must show as one `st.error` line.
UI_DATA_CASES = [c for c in DATA_CASES if c[3] == [] and c[4] == 2 and "label column" not in c[0]]
UI_MODEL_CASES = [c for c in MODEL_CASES if c[0] in ("not keras", "truncated", "lambda")]


@pytest.fixture
def app_runs_dir(tmp_path, monkeypatch):
    import streamlit as st

    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(tmp_path / "runs"))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield tmp_path / "runs"
    st.cache_resource.clear()
    st.cache_data.clear()


def data_models_page():
    from test_app import open_page

    return open_page("pages/data_models.py")


@pytest.mark.parametrize("case, name, content, flags, code, message", UI_DATA_CASES, ids=[c[0] for c in UI_DATA_CASES])
def test_data_catalogue_in_the_app(app_runs_dir, case, name, content, flags, code, message):
    at = data_models_page()
    at.file_uploader(key="dm_csv_file").upload(name, content if isinstance(content, bytes) else content.encode(),
                                               "text/csv")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.error and all(len(e.value.splitlines()) == 1 for e in at.error), (case, [e.value for e in at.error])


@pytest.mark.parametrize("case, message", UI_MODEL_CASES, ids=[c[0] for c in UI_MODEL_CASES])
def test_model_catalogue_in_the_app(app_runs_dir, tmp_path, case, message):
    path = Path(_model_files(tmp_path)[case])
    at = data_models_page()
    at.file_uploader(key="dm_keras_file").upload(path.name, path.read_bytes(), "application/octet-stream")
    at.run()
    assert not at.exception and any(message in e.value for e in at.error), [e.value for e in at.error]
