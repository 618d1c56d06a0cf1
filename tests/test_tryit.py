"""Try it: a finished run's model on new inputs (from its directory alone) beside the base + probe."""

from __future__ import annotations

import io
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from tests.conftest import small_image_config
from tests.helpers import prepared, train_here
from workbench import data as wdata
from workbench.config import TrainConfig
from workbench.errors import WorkbenchError
from workbench.explain import predictions as pred
from workbench.explain import tryit as tryit_module
from workbench.explain.tryit import BASE, FINE_TUNED, TryIt, fit_probe, image_to_input
from workbench.train import features
from workbench.train.trainer import load_run_model, prepare


def _expected(run_dir: Path, raw_inputs) -> np.ndarray:
    """`model.predict` on the same encoded input, from an independently reloaded model."""
    again = load_run_model(run_dir)
    out = again.task_model.model.predict(again.task_model.encode(raw_inputs), verbose=0)
    return pred.probabilities(keras.ops.convert_to_numpy(out), from_logits=again.task_model.from_logits)


def test_image_run_predicts_as_the_model_does_and_as_stored(store) -> None:
    prep = prepared(small_image_config(limit_per_class=5))
    run_id, _ = train_here(prep, store)
    run_dir = store.run_dir(run_id)
    tryit = TryIt.from_run(run_dir)
    images = prep.split.x_test[:4]
    got = tryit.outputs(list(images))
    assert np.allclose(got[FINE_TUNED], _expected(run_dir, images), atol=1e-5)
    stored = pred.load_predictions(run_dir)  # made by the model in training, before it was saved
    assert np.allclose(got[FINE_TUNED], stored.probs[:4].astype(np.float32), atol=2e-3)
    frame = tryit.predict(list(images))
    assert set(frame["model"]) == {FINE_TUNED, BASE} and len(frame) == 2 * 4 * 10
    assert np.allclose(frame.groupby(["model", "example"])["probability"].sum(), 1.0)

    # the base: the untouched pretrained backbone, frozen, with a linear probe on its features
    probe_file = run_dir / tryit_module.PROBE_FILE
    assert probe_file.is_file() and 0.3 < tryit.probe.test_score <= 1.0
    base = prepare(prep.config.switch_method("linear"))
    extractor = features.split_at_head(base.task_model.model, base.task_model.groups["head"]).extractor
    feats = keras.ops.convert_to_numpy(extractor.predict(images, verbose=0))
    assert np.allclose(got[BASE], pred.probabilities(tryit.probe(feats), from_logits=True), atol=1e-5)


def test_the_probe_is_fitted_once_per_data_settings(store, monkeypatch) -> None:
    run_id, _ = train_here(prepared(small_image_config(limit_per_class=5, method="bitfit")), store)
    first = TryIt.from_run(store.run_dir(run_id))
    monkeypatch.setattr(tryit_module, "fit_probe", lambda *a, **k: pytest.fail("the cached probe was refitted"))
    again = TryIt.from_run(store.run_dir(run_id))
    assert np.array_equal(first.probe.weights, again.probe.weights)
    assert tryit_module.probe_key(first.config) != tryit_module.probe_key(first.config.switch_method("lora", seed=3))


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> tuple:
    """(store, run id) of a tiny tiny-bert run on 120 SMS messages."""
    from workbench.runs import RunStore

    store = RunStore(tmp_path_factory.mktemp("runs"))
    config = TrainConfig(model="tiny-bert", data="sms-spam", method="lora", epochs=1, batch_size=16, max_rows=120,
                         max_seq_len=32)
    run_id, summary = train_here(prepared(config), store)
    store.update_run(run_id, status="completed", final_metrics=summary)  # as the RunManager records it
    return store, run_id


def test_text_run_predicts_as_the_model_does(text_run) -> None:
    store, run_id = text_run
    tryit = TryIt.from_run(store.run_dir(run_id))
    texts = ["WINNER!! Claim your free prize now, call 08001234", "see you at lunch tomorrow?"]
    got = tryit.outputs(texts)
    assert np.allclose(got[FINE_TUNED], _expected(store.run_dir(run_id), np.array(texts, dtype=object)), atol=1e-5)
    answer = tryit.probabilities(texts[0])
    assert set(answer) == {FINE_TUNED, BASE} and set(answer[FINE_TUNED]) == {"ham", "spam"}
    assert answer[BASE]["spam"] == pytest.approx(float(got[BASE][0, 1]), abs=1e-6)


def test_tabular_regression_takes_feature_values(store) -> None:
    run_id, _ = train_here(prepared(TrainConfig(model="mlp", data="diabetes", method="full", epochs=1,
                                                batch_size=32)), store)
    tryit = TryIt.from_run(store.run_dir(run_id))
    assert tryit.feature_names[:3] == ["age", "sex", "bmi"] and len(tryit.feature_defaults) == 10
    row = dict(zip(tryit.feature_names, tryit.feature_defaults, strict=True))
    answer = tryit.probabilities(row)
    direct = tryit.task_model.model.predict(np.array([tryit.feature_defaults], np.float32), verbose=0)
    assert answer[FINE_TUNED]["value"] == pytest.approx(float(direct[0, 0]), rel=1e-5)
    assert 25 < answer[BASE]["value"] < 346  # a ridge probe stays within the target's range at the median
    with pytest.raises(WorkbenchError, match="Give 10 feature values"):
        tryit.predict([[1.0, 2.0]])


def test_a_run_without_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="no saved config"):
        TryIt.from_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(small_image_config().to_dict()))
    with pytest.raises(WorkbenchError, match="saved no weights"):
        TryIt.from_run(tmp_path)


# -- uploaded pictures -------------------------------------------------------------------------------
def _png(pixels: np.ndarray, size: int = 140, fmt: str = "PNG") -> bytes:
    image = Image.fromarray(pixels.astype(np.uint8)).resize((size, size), Image.NEAREST).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["digits", "mnist-5k"])
def test_a_photo_of_a_training_digit_becomes_that_training_image(name: str) -> None:
    ds = wdata.load(name)
    source = ds.native if ds.native is not None else ds.x
    close = []
    for i in range(20):
        paper = 255 - source[i, ..., 0] * 255  # dark ink on light paper, enlarged: what a phone sees
        x, native = image_to_input(_png(paper, fmt="JPEG" if i % 2 else "PNG"), ds.card)
        assert x.shape == (28, 28, 1) and x.min() >= 0 and x.max() <= 1
        assert (native is not None) == (name == "digits")
        close.append(np.corrcoef(x.ravel(), ds.x[i].ravel())[0, 1])
    assert np.median(close) > 0.95


def test_light_strokes_on_dark_and_a_blank_picture() -> None:
    card = wdata.load("digits").card
    digit = np.zeros((8, 8))
    digit[1:7, 3:5] = 255  # a "1", already white on black
    x, _ = image_to_input(_png(digit), card)
    assert x[..., 0][4:24, 4:24].mean() > x[..., 0].mean()  # ink inside the 20×20 box, a black border
    assert x[..., 0][:4].max() == 0
    with pytest.raises(WorkbenchError, match="looks blank"):
        image_to_input(_png(np.full((8, 8), 200)), card)
    with pytest.raises(WorkbenchError, match="Cannot read the image"):
        image_to_input(b"not an image", card)


def test_fit_probe_separates_and_regresses() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * [1, 10, 0.1, 1, 1] + [0, 50, 3, 0, 0]
    y = (x[:, 0] + x[:, 1] / 10 > 5).astype(int)
    w, b = fit_probe(x, y, "classification", 2)
    assert np.mean((x @ w + b).argmax(axis=1) == y) > 0.97
    target = 3 * x[:, 0] - 0.5 * x[:, 1] + 7
    w, b = fit_probe(x, target, "regression", l2=1e-8)
    assert np.allclose(x @ w + b, target[:, None], atol=1e-4)


# -- the page ----------------------------------------------------------------------------------------
def _page(run_id: str, runs_dir: str) -> None:
    from pages import _tryit
    from workbench.runs import RunStore

    _tryit.render(run_id, RunStore(runs_dir))


def test_the_page_predicts_a_typed_sentence_with_both_models(text_run) -> None:
    from streamlit.testing.v1 import AppTest

    store, run_id = text_run
    at = AppTest.from_function(_page, args=(run_id, str(store.runs_dir)), default_timeout=120).run()
    assert not at.exception and not at.get("plotly_chart")  # nothing loads before Predict
    assert at.button(key=f"tryit_go_{run_id}").disabled
    at.text_area(key=f"tryit_text_{run_id}").input("Claim your FREE prize now").run()
    at.button(key=f"tryit_go_{run_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in spec["data"]] == [FINE_TUNED, BASE]
    assert any("Test accuracy: fine-tuned" in c.value for c in at.caption)
    at.run()  # a rerun keeps the answer
    assert at.get("plotly_chart")
