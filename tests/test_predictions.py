"""Stored test predictions: the tables on hand-made sets, a real run's file, two runs matched or refused."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from streamlit.testing.v1 import AppTest

from tests.conftest import small_image_config
from tests.helpers import prepared, train_here
from workbench import charts_predictions as charts
from workbench.explain import predictions as pred
from workbench.explain.predictions import Predictions


def made(y_true, y_pred, ids=None, probs=None, classes=("cat", "dog", "eel"), texts=None) -> Predictions:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if probs is None:
        probs = np.full((len(y_true), len(classes)), 0.1)
        probs[np.arange(len(y_true)), y_pred] = 0.8
    return Predictions(task="classification", modality="text", y_true=y_true, y_pred=y_pred,
                       ids=np.asarray(ids if ids is not None else np.arange(len(y_true)) + 100, dtype=np.uint64),
                       probs=np.asarray(probs, np.float16), class_names=list(classes),
                       texts=np.array(texts if texts is not None else [f"t{i}" for i in range(len(y_true))]))


# -- pure tables -------------------------------------------------------------------------------------
def test_confusion_and_per_class_match_hand_counts_and_sklearn() -> None:
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 0, 1, 1, 2, 2, 2, 0, 2]
    p = made(y_true, y_pred)
    conf = pred.confusion(p)
    assert conf.to_numpy().tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]
    assert list(conf.index) == ["cat", "dog", "eel"] and conf.index.name == "true"
    assert np.array_equal(conf.to_numpy(), confusion_matrix(y_true, y_pred))
    table = pred.per_class(p)
    # cat: precision 2/3, recall 2/3; dog: 1/2, 1/2; eel: 3/4, 3/4
    assert np.allclose(table["precision"], [2 / 3, 1 / 2, 3 / 4])
    assert np.allclose(table["recall"], [2 / 3, 1 / 2, 3 / 4])
    assert table["support"].tolist() == [3, 2, 4]
    ref = precision_recall_fscore_support(y_true, y_pred)
    assert np.allclose(table["f1"], ref[2])
    assert pred.f1_macro(p) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert pred.accuracy(p) == pytest.approx(6 / 9)


def test_a_class_never_predicted_scores_zero_and_macro_f1_follows_sklearn() -> None:
    p = made([0, 0, 1, 1], [0, 0, 0, 0])  # "dog" never predicted, "eel" absent everywhere
    table = pred.per_class(p).set_index("class")
    assert table.loc["dog", "precision"] == 0 and table.loc["dog", "recall"] == 0
    assert pred.f1_macro(p) == pytest.approx(f1_score([0, 0, 1, 1], [0, 0, 0, 0], average="macro", zero_division=0))


def test_misclassified_lists_the_most_confident_mistakes_first() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.05, 0.9, 0.05]])
    p = made([0, 0, 1, 2], [0, 1, 2, 1], probs=probs)
    wrong = pred.misclassified(p, limit=None)
    assert wrong["position"].tolist() == [3, 1, 2]
    assert wrong["true"].tolist() == ["eel", "cat", "dog"] and wrong["predicted"].tolist() == ["dog", "dog", "eel"]
    assert wrong["confidence"].tolist() == pytest.approx([0.9, 0.7, 0.6], abs=1e-3)
    assert wrong["example"].tolist() == ["t3", "t1", "t2"]
    assert len(pred.misclassified(p, limit=2)) == 2


def test_example_diff_gives_exact_rows_whatever_the_order() -> None:
    # A: right on 0, 1, 3; B (same examples, stored in another order) right on 0, 2, 3
    a = made([0, 1, 2, 2, 1], [0, 1, 0, 2, 0], ids=[10, 11, 12, 13, 14])
    order = [4, 2, 0, 3, 1]  # B's file lists the examples in this order of A's positions
    b_pred_by_a = np.array([0, 2, 2, 2, 2])
    b = made(np.array([0, 1, 2, 2, 1])[order], b_pred_by_a[order], ids=np.array([10, 11, 12, 13, 14])[order],
             texts=[f"t{i}" for i in order])
    diff = pred.example_diff(a, b)
    expected = pd.DataFrame({"position": [1, 2], "true": ["dog", "eel"], "pred_a": ["dog", "cat"],
                             "conf_a": [0.8, 0.8], "pred_b": ["eel", "eel"], "conf_b": [0.8, 0.8],
                             "right": ["A", "B"], "example": ["t1", "t2"]})
    pd.testing.assert_frame_equal(diff.reset_index(drop=True), expected, check_dtype=False, atol=1e-3)
    flipped = pred.example_diff(b, a)
    assert flipped["right"].tolist() == ["A", "B"] and flipped["example"].tolist() == ["t2", "t1"]
    # B − A: B calls both dogs (examples 1, 4) "eel" where A said dog and cat; eel's example 2 moves cat → eel
    cdiff = pred.confusion_difference(a, b)
    assert cdiff.to_numpy().tolist() == [[0, 0, 0], [-1, -1, 2], [-1, 0, 1]]


def test_runs_tested_on_different_examples_are_never_matched() -> None:
    a = made([0, 1, 2], [0, 1, 2], ids=[1, 2, 3])
    b = made([0, 1, 2], [0, 1, 1], ids=[1, 2, 4])
    with pytest.raises(pred.DifferentExamples, match="different examples .*2 of 3 and 3 shared"):
        pred.example_diff(a, b)
    with pytest.raises(pred.DifferentExamples, match="different examples"):
        pred.confusion_difference(a, b)
    other_classes = made([0, 1, 0], [0, 1, 1], ids=[1, 2, 3], classes=("x", "y"))
    with pytest.raises(pred.DifferentExamples, match="different examples"):
        pred.example_diff(a, other_classes)


def test_regression_residuals_and_errors() -> None:
    p = Predictions(task="regression", modality="tabular", y_true=np.array([1.0, 2.0, 3.0, 4.0]),
                    y_pred=np.array([1.5, 2.0, 1.0, 4.0]), ids=np.arange(4, dtype=np.uint64),
                    features=np.array([[1.0], [2.0], [3.0], [4.0]], np.float32), feature_names=["x"])
    res = pred.residuals(p)
    assert res["residual"].tolist() == [-0.5, 0.0, 2.0, 0.0]
    errors = pred.regression_errors(p)
    assert errors["mae"] == pytest.approx(2.5 / 4)
    assert errors["rmse"] == pytest.approx(np.sqrt((0.25 + 4) / 4))
    worst = pred.largest_errors(p, limit=2)
    assert worst["position"].tolist() == [2, 0] and worst["example"].tolist() == ["x=3", "x=1"]
    with pytest.raises(pred.WorkbenchError, match="classification run"):
        pred.confusion(p)
    q = Predictions(task="regression", modality="tabular", y_true=p.y_true, y_pred=np.array([1.0, 2.5, 3.0, 3.0]),
                    ids=p.ids[::-1].copy(), features=p.features[::-1].copy(), feature_names=["x"])
    q.y_true, q.y_pred = q.y_true[::-1].copy(), q.y_pred[::-1].copy()  # same examples, reversed order
    diff = pred.example_diff(p, q)
    assert diff["position"].tolist()[:2] == [2, 3]  # error gaps |2 − 0| and |0 − 1|: the largest first
    assert diff.set_index("position").loc[2, "better"] == "B"


def test_probabilities_from_logits_and_from_a_sigmoid() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    assert pred.probabilities(logits, from_logits=True)[0, 0] == pytest.approx(np.exp(2) / (np.exp(2) + 1))
    assert pred.probabilities(np.array([[0.25], [1.0]]), from_logits=False).tolist() == [[0.75, 0.25], [0.0, 1.0]]


def test_a_stopped_run_stores_nothing(tmp_path: Path) -> None:
    import threading

    import keras

    run = SimpleNamespace(stopped=True, run_dir=tmp_path)
    assert pred.finish(run) == {}
    stop = threading.Event()
    stop.set()  # Stop pressed while the test split is being predicted: no half test set is kept
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    run = SimpleNamespace(stopped=False, run_dir=tmp_path, stop_event=stop, fit_model=model,
                          inputs={"test": np.zeros((600, 3), np.float32)}, prepared=SimpleNamespace(dataset=None))
    assert pred.finish(run) == {}
    assert not (tmp_path / pred.FILE).exists()
    with pytest.raises(pred.WorkbenchError, match="no stored test predictions"):
        pred.load_predictions(tmp_path)


# -- real runs ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> SimpleNamespace:
    """Three tiny digits runs: LoRA, BitFit on the same split, LoRA on another seed's split."""
    from workbench.runs import RunStore

    store = RunStore(tmp_path_factory.mktemp("runs"))
    out = SimpleNamespace(store=store)
    for name, overrides in (("lora", {}), ("bitfit", {"method": "bitfit"}), ("seed1", {"seed": 1})):
        prep = prepared(small_image_config(epochs=1, limit_per_class=5, **overrides))
        run_id, summary = train_here(prep, store)
        setattr(out, name, SimpleNamespace(id=run_id, summary=summary, prep=prep))
    return out


def test_a_real_run_stores_predictions_that_score_like_its_test_evaluation(runs) -> None:
    store, run, prep = runs.store, runs.lora, runs.lora.prep
    p = pred.load_predictions(store.run_dir(run.id))
    recorded = store.metrics(run.id, keys=["test/accuracy"])["value"].iloc[-1]
    assert pred.accuracy(p) == pytest.approx(recorded, abs=1e-6)
    assert run.summary["test_f1_macro"] == pytest.approx(f1_score(p.y_true, p.y_pred, average="macro"))
    assert p.class_names == [str(d) for d in range(10)]
    assert p.images.dtype == np.uint8 and p.images.shape == (len(prep.split.y_test), 28, 28)
    assert np.abs(p.images / 255 - prep.split.x_test[..., 0]).max() <= 0.5 / 255 + 1e-6
    assert p.probs.dtype == np.float16 and np.allclose(p.probs.astype(float).sum(axis=1), 1, atol=1e-2)
    assert len(np.unique(p.ids)) == len(p) and p.meta["data"] == "digits" and p.meta["seed"] == 0

    # same data, seed and split settings, another method: the same test examples, matched one by one
    q = pred.load_predictions(store.run_dir(runs.bitfit.id))
    diff = pred.example_diff(p, q)
    assert len(diff) == (p.correct != q.correct[pred.match(p, q)[1]]).sum()
    # another seed splits differently: refused, never matched silently
    with pytest.raises(pred.DifferentExamples, match="different examples"):
        pred.example_diff(p, pred.load_predictions(store.run_dir(runs.seed1.id)))


def test_a_feature_cached_linear_probe_stores_its_predictions_too(store) -> None:
    prep = prepared(small_image_config(epochs=1, limit_per_class=5, method="linear"))
    run_id, summary = train_here(prep, store)
    p = pred.load_predictions(store.run_dir(run_id))
    recorded = store.metrics(run_id, keys=["test/accuracy"])["value"].iloc[-1]
    assert pred.accuracy(p) == pytest.approx(recorded, abs=1e-6) and "predictions_error" not in summary
    assert len(p) == len(prep.split.y_test) and p.images.shape[1:] == (28, 28)


def _page(run_ids: list[str], runs_dir: str) -> None:
    from pages import _predictions
    from workbench.runs import RunStore

    store = RunStore(runs_dir)
    if len(run_ids) == 1:
        _predictions.render_run(run_ids[0], store)
    else:
        _predictions.render_compare(run_ids[0], run_ids[1], store)


def _open(run_ids: list[str], runs_dir) -> AppTest:
    at = AppTest.from_function(_page, args=(run_ids, str(runs_dir)), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _titles(at: AppTest) -> list[str]:
    return [json.loads(el.proto.spec)["layout"]["title"]["text"] for el in at.get("plotly_chart")]


def test_the_pages_show_a_run_and_a_comparison(runs) -> None:
    runs_dir = runs.store.runs_dir
    at = _open([runs.lora.id], runs_dir)
    assert _titles(at) == ["Confusion matrix (test)"]
    p = pred.load_predictions(runs.store.run_dir(runs.lora.id))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Mistakes"] == f"{int((~p.correct).sum())} of {len(p)}"
    assert at.get("image"), "the misclassified digits are shown as images"

    at = _open([runs.lora.id, runs.bitfit.id], runs_dir)
    assert _titles(at) == ["Confusion difference: B − A"]
    diff = pred.example_diff(p, pred.load_predictions(runs.store.run_dir(runs.bitfit.id)))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Only A right"] == str((diff["right"] == "A").sum())

    at = _open([runs.lora.id, runs.seed1.id], runs_dir)
    assert not _titles(at) and "tested on different examples" in at.warning[0].value


def test_a_text_run_keeps_its_texts_and_class_names(store) -> None:
    from workbench.config import TrainConfig

    prep = prepared(TrainConfig(model="tiny-bert", data="sms-spam", method="lora", epochs=1, batch_size=16,
                                max_rows=120, max_seq_len=32))
    run_id, summary = train_here(prep, store)
    p = pred.load_predictions(store.run_dir(run_id))
    assert p.class_names == ["ham", "spam"] and "test_f1_macro" in summary
    assert p.texts.tolist() == [str(t) for t in prep.split.x_test]
    recorded = store.metrics(run_id, keys=["test/accuracy"])["value"].iloc[-1]
    assert pred.accuracy(p) == pytest.approx(recorded, abs=1e-6)


# -- figures -----------------------------------------------------------------------------------------
def test_confusion_figures_show_counts_and_a_scale_centred_on_zero() -> None:
    a = made([0, 1, 2, 2], [0, 1, 0, 2], ids=[1, 2, 3, 4])
    b = made([0, 1, 2, 2], [0, 2, 2, 2], ids=[1, 2, 3, 4])
    fig = charts.confusion_figure(pred.confusion(a))
    heat = fig.data[0]
    assert np.asarray(heat.z).tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]] and list(heat.x) == ["cat", "dog", "eel"]
    diff = charts.confusion_difference_figure(pred.confusion_difference(a, b), names=("A", "B")).data[0]
    assert diff.zmid == 0 and diff.zmin == -diff.zmax and np.asarray(diff.z).sum() == 0
    assert "+1" in np.asarray(diff.text).ravel().tolist()
    res = Predictions(task="regression", modality="tabular", y_true=np.array([1.0, 2.0]), y_pred=np.array([1.5, 2.0]),
                      ids=np.arange(2, dtype=np.uint64))
    assert list(charts.residual_figure(pred.residuals(res)).data[0].y) == [-0.5, 0.0]
