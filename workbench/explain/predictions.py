"""The test predictions of a run, kept with it, and the tables a teacher reads from them.

Why keep them: a test accuracy says how often a model is right, not *where* it is wrong. With each
run's predictions on disk (`predictions.npz`, a few hundred kB) the pages can show a confusion
matrix, per-class scores, the misclassified examples themselves, and, for two runs, the examples one
gets right and the other wrong, without loading Keras or the model again.

Matching two runs example by example needs an identity that survives a restart and does not depend
on the model: each test row gets a fingerprint, a hash of its raw content (the text, the pixels as
the loader presents them, the feature values) and its label. Two runs with the same data, seed and
split settings have the same test rows; runs split differently are never matched silently
(`DifferentExamples` says so).

Everything below `finish` is plain numpy/pandas on the stored arrays.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError, received

FILE = "predictions.npz"
MAX_TEXT_CHARS = 2000  # what a browser of examples shows; the fingerprint hashes the full text


class DifferentExamples(WorkbenchError):
    """Two runs whose test sets differ: their predictions cannot be compared example by example."""


@dataclass
class Predictions:
    """One run's test predictions with the examples, as stored (see `finish`)."""

    task: str  # classification | regression
    modality: str  # text | image | tabular | audio
    y_true: np.ndarray  # class ids (int) or target values (float)
    y_pred: np.ndarray  # predicted class ids or values
    ids: np.ndarray  # uint64 fingerprint per example (content + label)
    probs: np.ndarray | None = None  # (n, classes) float16, classification only
    class_names: list[str] = field(default_factory=list)
    texts: np.ndarray | None = None  # str, text data
    images: np.ndarray | None = None  # (n, 28, 28) uint8: image data, or audio's log-mel pictures
    features: np.ndarray | None = None  # (n, f) float32, tabular data
    feature_names: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # data, model, method, split settings

    def __len__(self) -> int:
        return len(self.y_true)

    @property
    def correct(self) -> np.ndarray:
        return self.y_true == self.y_pred

    def label(self, ids: np.ndarray) -> list[str]:
        """Class ids as their names."""
        return [self.class_names[int(i)] if int(i) < len(self.class_names) else str(int(i)) for i in ids]

    def example(self, i: int) -> str:
        """A one-line description of example `i` for tables (the text, or a short feature list)."""
        if self.texts is not None:
            return str(self.texts[i])
        if self.features is not None:
            return ", ".join(f"{n}={v:.4g}" for n, v in zip(self.feature_names, self.features[i], strict=False))
        return f"test {'recording' if self.modality == 'audio' else 'image'} {i}"


# --------------------------------------------------------------------------- recording (the trainer)

def callbacks(run) -> list:
    """Nothing to record while training: predictions are made once, after the test evaluation."""
    return []


def finish(run) -> dict[str, Any]:
    """Predict the test split, store `predictions.npz`; returns `test_f1_macro` or `test_rmse`."""
    if run.stopped:
        return {}

    prepared = run.prepared
    out = predict(run.fit_model, run.inputs["test"], run.stop_event)
    if out is None:
        return {}  # Stop pressed meanwhile: stop means stop, and half a test set is no test set
    card = prepared.dataset.card
    raw_x, raw_y = raw_test_rows(prepared)
    arrays: dict[str, np.ndarray] = {"y_true": np.asarray(prepared.split.y_test)}
    if card.task == "classification":
        probs = probabilities(out, from_logits=prepared.task_model.from_logits)
        arrays.update(y_pred=probs.argmax(axis=1).astype(np.int32), probs=probs.astype(np.float16))
        names = [str(c) for c in card.class_names]
        label_text = [names[int(i)] for i in raw_y]
    else:
        arrays["y_pred"] = out.reshape(len(out), -1)[:, 0]
        names, label_text = [], [repr(float(v)) for v in raw_y]
    arrays["ids"] = fingerprints(raw_x, label_text)
    arrays["class_names"] = np.array(names, dtype=str)
    arrays.update(display_arrays(raw_x, card))
    cfg = prepared.config
    meta = {"task": card.task, "modality": card.modality, "data": cfg.data, "model": cfg.model,
            "method": cfg.method, "seed": cfg.seed, "val_fraction": cfg.val_fraction,
            "test_fraction": cfg.test_fraction, "max_rows": cfg.max_rows, "n": len(raw_y),
            "test_set": test_set_digest(arrays["ids"])}
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(run.run_dir / FILE, **arrays)
    p = load_predictions(run.run_dir)
    if p.task == "classification":
        return {"test_f1_macro": f1_macro(p)}
    return {"test_rmse": regression_errors(p)["rmse"]}


EAGER_ROWS = 2048  # up to this many test rows the model is called directly, batch by batch


def predict(model, x, stop_event, batch_size: int = 256) -> np.ndarray | None:
    """The model's outputs on `x` (float32), None if `stop_event` was set meanwhile.

    A small test split is predicted by calling the model batch by batch: `Model.predict` would trace
    a predict function first, ~0.1 s for mnist-cnn and ~0.5 s for tiny-bert on this CPU, which is 10 %
    of a one-second study run. A large one goes through `Model.predict` (traced once, then faster).
    """
    import keras

    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    if n > EAGER_ROWS:
        watch = _stop_predicting(stop_event)  # (MiniLM on sms-spam's test split: ~20 s on a small CPU)
        out = model.predict(x, batch_size=batch_size, verbose=0, callbacks=[watch])
        return None if stop_event.is_set() else np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)
    parts = []
    for start in range(0, n, batch_size):
        if stop_event.is_set():
            return None
        rows = slice(start, start + batch_size)
        batch = {k: v[rows] for k, v in x.items()} if isinstance(x, dict) else x[rows]
        parts.append(np.asarray(keras.ops.convert_to_numpy(model(batch, training=False)), dtype=np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, *model.outputs[0].shape[1:]), np.float32)


def _stop_predicting(event):
    import keras

    class StopPredicting(keras.callbacks.Callback):
        def on_predict_batch_end(self, batch, logs=None):
            if event.is_set():
                self.model.stop_predicting = True

    return StopPredicting()


def probabilities(out: np.ndarray, *, from_logits: bool) -> np.ndarray:
    """Class probabilities from a classifier's output: softmax of logits, or the output renormalised;
    a single sigmoid unit becomes two columns (not-class, class)."""
    out = np.asarray(out, dtype=np.float64)
    if out.ndim == 1 or out.shape[1] == 1:
        p1 = out.reshape(-1)
        p1 = 1.0 / (1.0 + np.exp(-p1)) if from_logits else np.clip(p1, 0.0, 1.0)
        return np.stack([1.0 - p1, p1], axis=1)
    if from_logits:
        z = np.exp(out - out.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    out = np.clip(out, 0.0, None)
    return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-12)


def raw_test_rows(prepared) -> tuple[np.ndarray, np.ndarray]:
    """The test rows as the loader presents them, before any fitting to a user's model file: a
    run on a user's 8×8 model and one on the MNIST CNN tested the same digits, and must match."""
    from workbench.models.registry import is_model_file

    idx = prepared.split.indices.get("test")
    if idx is None or prepared.dataset.card.modality == "text" or not is_model_file(prepared.config.model):
        return np.asarray(prepared.split.x_test), np.asarray(prepared.split.y_test)
    from workbench import data as wdata

    cfg = prepared.config
    options = {k: v for k, v in (("text_column", cfg.text_column), ("feature_columns", cfg.feature_columns),
                                 ("label_column", cfg.label_column), ("task", cfg.task)) if v is not None}
    raw = wdata.load(cfg.data, **options)  # fitting keeps the rows and their order: same row numbers
    return np.asarray(raw.x)[idx], np.asarray(raw.y)[idx]


def fingerprints(x: np.ndarray, labels: list[str]) -> np.ndarray:
    """uint64 per example: a hash of its content and its label (cleaning drops exact duplicates, so
    the pair is unique within a dataset)."""
    out = np.empty(len(labels), dtype=np.uint64)
    for i, label in enumerate(labels):
        content = str(x[i]).encode("utf-8") if x.dtype == object or x.dtype.kind in "US" else \
            np.ascontiguousarray(x[i], dtype=np.float32).tobytes()
        digest = hashlib.blake2b(content + b"\x1f" + label.encode("utf-8"), digest_size=8).digest()
        out[i] = np.frombuffer(digest, dtype=np.uint64)[0]
    return out


def test_set_digest(ids: np.ndarray) -> str:
    """One short string per test set (order-free): equal digests, same examples."""
    return hashlib.blake2b(np.sort(np.asarray(ids, dtype=np.uint64)).tobytes(), digest_size=8).hexdigest()


def display_arrays(x: np.ndarray, card) -> dict[str, np.ndarray]:
    """What a browser of examples shows: texts (capped), 28×28 uint8 images, or the feature rows."""
    if card.modality == "text":
        return {"texts": np.array([str(t)[:MAX_TEXT_CHARS] for t in x], dtype=str)}
    if card.modality == "image":
        return {"images": as_display_images(x)}
    if card.modality == "audio":  # the log-mel pictures, time across and low frequencies at the bottom
        return {"images": as_display_images(np.asarray(x, np.float32)[..., 0].transpose(0, 2, 1)[:, ::-1, :])}
    return {"features": np.asarray(x, dtype=np.float32),
            "feature_names": np.array(card.columns[: np.asarray(x).shape[1]], dtype=str)}


def as_display_images(x: np.ndarray, size: int = 28) -> np.ndarray:
    """(n, size, size) uint8 from images in [0, 1]: (n, h, w[, c]) or flat square rows."""
    from workbench.data.augment import resize_images

    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        side = int(round(np.sqrt(x.shape[1])))
        x = x.reshape(len(x), side, side) if side * side == x.shape[1] else np.zeros((len(x), size, size), np.float32)
    if x.ndim == 4:
        x = x.mean(axis=-1)
    if x.shape[1:] != (size, size):
        x = resize_images(x, (size, size))
    return np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def load_predictions(run_dir: str | Path) -> Predictions:
    """A run's stored predictions; a `WorkbenchError` when it has none (stopped, failed or older)."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        raise WorkbenchError(f"This run has no stored test predictions (it was stopped, failed or ran before "
                             f"they were kept): run it again to see them. {received(run=Path(run_dir).name)}")
    with np.load(path, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    meta = json.loads(str(arrays["meta"]))
    return Predictions(
        task=meta["task"], modality=meta["modality"], y_true=arrays["y_true"], y_pred=arrays["y_pred"],
        ids=arrays["ids"], probs=arrays.get("probs"), class_names=[str(c) for c in arrays["class_names"]],
        texts=arrays.get("texts"), images=arrays.get("images"), features=arrays.get("features"),
        feature_names=[str(c) for c in arrays.get("feature_names", [])], meta=meta)


# --------------------------------------------------------------------------- tables (pure)

def _classification(p: Predictions, what: str) -> None:
    if p.task != "classification":
        raise WorkbenchError(f"{what} needs a classification run; this run is regression: look at its residuals. "
                             f"{received(task=p.task)}")


def confusion(p: Predictions) -> pd.DataFrame:
    """Counts: rows the true class, columns the predicted class (both by name)."""
    _classification(p, "A confusion matrix")
    k = len(p.class_names)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (p.y_true.astype(int), p.y_pred.astype(int)), 1)
    return pd.DataFrame(counts, index=pd.Index(p.class_names, name="true"),
                        columns=pd.Index(p.class_names, name="predicted"))


def per_class(p: Predictions) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (0 where a class is never predicted / present)."""
    c = confusion(p).to_numpy().astype(np.float64)
    tp, predicted, support = np.diag(c), c.sum(axis=0), c.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return pd.DataFrame({"class": p.class_names, "precision": precision, "recall": recall, "f1": f1,
                         "support": support.astype(np.int64)})


def f1_macro(p: Predictions) -> float:
    """The unweighted mean F1 over the classes that occur (as truth or prediction), as scikit-learn's
    default: a rare class counts as much as a common one (spam is 13 % of sms-spam)."""
    table = per_class(p)
    seen = np.isin(np.arange(len(table)), np.concatenate([p.y_true, p.y_pred]).astype(int))
    return float(table["f1"][seen].mean()) if seen.any() else float("nan")


def accuracy(p: Predictions) -> float:
    _classification(p, "Accuracy")
    return float(np.mean(p.correct)) if len(p) else float("nan")


def confidence(p: Predictions) -> np.ndarray:
    """The probability each example's predicted class got (float32)."""
    return p.probs.astype(np.float32)[np.arange(len(p)), p.y_pred.astype(int)]


def misclassified(p: Predictions, limit: int | None = 20) -> pd.DataFrame:
    """The wrong predictions, most confident first: position, true, predicted, confidence, example."""
    _classification(p, "Misclassified examples")
    wrong = np.flatnonzero(~p.correct)
    conf = confidence(p)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:limit]
    return pd.DataFrame({"position": wrong, "true": p.label(p.y_true[wrong]), "predicted": p.label(p.y_pred[wrong]),
                         "confidence": conf[wrong], "example": [p.example(int(i)) for i in wrong]})


def residuals(p: Predictions) -> pd.DataFrame:
    """Per example: true value, predicted value, residual (true − predicted)."""
    if p.task != "regression":
        raise WorkbenchError(f"Residuals need a regression run; this run is classification: look at its "
                             f"confusion matrix. {received(task=p.task)}")
    true, pred = p.y_true.astype(np.float64), p.y_pred.astype(np.float64)
    return pd.DataFrame({"position": np.arange(len(p)), "true": true, "predicted": pred, "residual": true - pred})


def regression_errors(p: Predictions) -> dict[str, float]:
    """MAE and RMSE in the target's own units."""
    r = residuals(p)["residual"].to_numpy()
    return {"mae": float(np.mean(np.abs(r))), "rmse": float(np.sqrt(np.mean(r**2)))}


def largest_errors(p: Predictions, limit: int | None = 20) -> pd.DataFrame:
    """Regression's "misclassified": the examples with the largest absolute residual."""
    r = residuals(p)
    r = r.iloc[np.argsort(-np.abs(r["residual"].to_numpy()), kind="stable")][:limit]
    return r.assign(example=[p.example(int(i)) for i in r["position"]]).reset_index(drop=True)


# --------------------------------------------------------------------------- two runs

def match(p_a: Predictions, p_b: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Positions in A and in B of the same examples (A's order); `DifferentExamples` unless both runs
    were tested on exactly the same examples with the same classes."""
    if p_a.task != p_b.task or p_a.class_names != p_b.class_names:
        raise DifferentExamples(f"These runs were tested on different examples (different datasets or classes): "
                                f"compare runs on the same data. {received(a=p_a.meta.get('data'), b=p_b.meta.get('data'))}")
    ids_a, ids_b = p_a.ids.astype(np.uint64), p_b.ids.astype(np.uint64)
    if len(ids_a) != len(ids_b) or not np.array_equal(np.sort(ids_a), np.sort(ids_b)):
        shared = len(np.intersect1d(ids_a, ids_b))
        raise DifferentExamples(
            f"These runs were tested on different examples ({shared} of {len(ids_a)} and {len(ids_b)} shared): "
            f"give them the same data, seed and split settings to compare them example by example. "
            f"{received(a=_split_text(p_a), b=_split_text(p_b))}")
    order_a, order_b = np.argsort(ids_a, kind="stable"), np.argsort(ids_b, kind="stable")
    b_for_a = np.empty_like(order_b)
    b_for_a[order_a] = order_b
    return np.arange(len(ids_a)), b_for_a


def _split_text(p: Predictions) -> str:
    m = p.meta
    return (f"{m.get('data')} seed={m.get('seed')} val={m.get('val_fraction')} test={m.get('test_fraction')}"
            f" max_rows={m.get('max_rows')}")


def example_diff(p_a: Predictions, p_b: Predictions, limit: int | None = None) -> pd.DataFrame:
    """Examples one run gets right and the other wrong (classification), with both predictions.

    Columns: position (in A's test set), true, pred_a, conf_a, pred_b, conf_b, right ("A" or "B"),
    example. Rows where only A is right come first. Regression: every example with both errors,
    `better` naming the closer run, the largest difference first.
    """
    ia, ib = match(p_a, p_b)
    if p_a.task == "regression":
        err_a = np.abs(p_a.y_true[ia] - p_a.y_pred[ia]).astype(np.float64)
        err_b = np.abs(p_b.y_true[ib] - p_b.y_pred[ib]).astype(np.float64)
        order = np.argsort(-np.abs(err_a - err_b), kind="stable")[:limit]
        return pd.DataFrame({"position": ia[order], "true": p_a.y_true[ia][order].astype(np.float64),
                             "pred_a": p_a.y_pred[ia][order].astype(np.float64),
                             "pred_b": p_b.y_pred[ib][order].astype(np.float64),
                             "better": np.where(err_a[order] < err_b[order], "A",
                                                np.where(err_b[order] < err_a[order], "B", "tie")),
                             "example": [p_a.example(int(i)) for i in ia[order]]})
    right_a, right_b = p_a.correct[ia], p_b.correct[ib]
    rows = np.concatenate([np.flatnonzero(right_a & ~right_b), np.flatnonzero(right_b & ~right_a)])[:limit]
    conf_a, conf_b = confidence(p_a)[ia], confidence(p_b)[ib]
    return pd.DataFrame({"position": ia[rows], "true": p_a.label(p_a.y_true[ia][rows]),
                         "pred_a": p_a.label(p_a.y_pred[ia][rows]), "conf_a": conf_a[rows],
                         "pred_b": p_b.label(p_b.y_pred[ib][rows]), "conf_b": conf_b[rows],
                         "right": np.where(right_a[rows], "A", "B"),
                         "example": [p_a.example(int(i)) for i in ia[rows]]})


def confusion_difference(p_a: Predictions, p_b: Predictions) -> pd.DataFrame:
    """B's confusion matrix minus A's, on the same examples (positive: B puts more there)."""
    match(p_a, p_b)
    return confusion(p_b) - confusion(p_a)
