"""Try a finished run on your own input, beside the untouched base model with a linear probe.

Why the second model: "the fine-tuned model says spam, 97 %" teaches little alone. Beside it stands
the pretrained backbone, frozen, with only a linear head fitted on the same training split: what the
pretrained features already knew. Where the two disagree is what fine-tuning changed.

Everything comes from the run directory (`config.json` + saved weights, via
`trainer.load_run_model`), so it works after an app restart. The probe is fitted once per
(model, data, seed, split settings) and cached as `base_probe.npz` in the run directory: a
regularised multinomial logistic regression (ridge regression for a numeric target) in numpy on the
frozen features, fitted to convergence rather than for the run's few epochs, so it is the base
model's fair best. A loaded `TryIt` is cheap to call again (the pages keep one per run).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError, received

PROBE_FILE = "base_probe.npz"
FINE_TUNED, BASE = "fine-tuned", "base + linear probe"
PROBE_KEYS = ("model", "data", "text_column", "feature_columns", "label_column", "task", "seed", "val_fraction",
              "test_fraction", "limit_per_class", "max_rows", "max_seq_len", "from_scratch")


# --------------------------------------------------------------------------- the linear probe

@dataclass
class LinearProbe:
    """A linear head on raw frozen features (their standardisation folded into the weights)."""

    weights: np.ndarray  # (features, outputs)
    bias: np.ndarray  # (outputs,)
    task: str
    key: str  # `probe_key` of the settings it was fitted for
    test_score: float  # test accuracy (classification) or RMSE (regression)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, np.float64) @ self.weights + self.bias


def probe_key(config) -> str:
    """What makes a probe reusable: the model and everything that decides its training rows."""
    values = {k: getattr(config, k) for k in PROBE_KEYS}
    return hashlib.blake2b(json.dumps(values, sort_keys=True, default=str).encode(), digest_size=10).hexdigest()


def fit_probe(x: np.ndarray, y: np.ndarray, task: str, classes: int = 0, *, l2: float = 1e-3,
              steps: int = 500, lr: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(weights, bias) of a linear head on features `x`.

    Classification: multinomial logistic regression with an L2 penalty, full-batch Adam from zero
    (deterministic; a few hundred steps on standardised features converge). Regression: ridge in
    closed form. Standardisation is folded back, so the result applies to raw features.
    """
    x = np.asarray(x, np.float64)
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    z = (x - mu) / sd
    n, d = z.shape
    if task == "regression":
        y = np.asarray(y, np.float64).reshape(-1)
        w = np.linalg.solve(z.T @ z + l2 * n * np.eye(d), z.T @ (y - y.mean()))[:, None]
        b = np.array([y.mean()])
    else:
        onehot = np.eye(classes)[np.asarray(y, int)]
        w, b = np.zeros((d, classes)), np.zeros(classes)
        m, v = [np.zeros_like(w), np.zeros_like(b)], [np.zeros_like(w), np.zeros_like(b)]
        for t in range(1, steps + 1):
            logits = z @ w + b
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            g = (p - onehot) / n
            for i, (param, grad) in enumerate(((w, z.T @ g + l2 * w), (b, g.sum(axis=0)))):
                m[i] = 0.9 * m[i] + 0.1 * grad
                v[i] = 0.999 * v[i] + 0.001 * grad**2
                param -= lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
    return w / sd[:, None], b - (mu / sd) @ w


# --------------------------------------------------------------------------- images from files

def image_to_input(image: Any, card) -> tuple[np.ndarray, np.ndarray | None]:
    """An uploaded picture (PNG/JPG bytes or a PIL image) as the dataset presents its images.

    (image at the card's shape (h, w, 1) in [0, 1], native-resolution image or None), white ink on
    black like MNIST and digits: grey, inverted when the background is light (paper), the drawn
    strokes cropped to a square, then framed as the training data is. Digits (8×8 scans) are
    shrunk to 8×8 and upsampled into a 20×20 box as the loader does; MNIST-style data gets a 20×20
    box centred on the ink's centre of mass in 28×28, MNIST's own recipe.
    """
    from PIL import Image, ImageOps

    from workbench.data.augment import resize_images

    if isinstance(image, bytes | bytearray):
        try:
            image = Image.open(io.BytesIO(image))
            image.load()
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
            raise WorkbenchError(f"Cannot read the image: upload a PNG or JPG file. {received(error=str(exc)[:80])}") from None
    image = ImageOps.exif_transpose(image)
    ink = 1 - np.asarray(image.convert("L"), np.float32) / 255
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA"))[..., 3].astype(np.float32) / 255
        if alpha.min() < 0.99:  # a drawing on a transparent canvas: the strokes are the opaque part
            ink = alpha
    border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    if np.median(border) > 0.5:  # light strokes on a dark background: already MNIST's polarity
        ink = 1 - ink
        border = 1 - border
    background = float(np.median(border))
    ink = np.clip((ink - background) / max(float(ink.max()) - background, 1e-6), 0, 1)
    if float(ink.max()) - background < 0.1 or not (ink > 0.25).any():
        raise WorkbenchError(f"The image looks blank (no strokes stand out from the background): upload a "
                             f"picture of one digit. {received(size=image.size)}")
    rows, cols = np.flatnonzero((ink > 0.25).any(axis=1)), np.flatnonzero((ink > 0.25).any(axis=0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    side = max(crop.shape)
    square = np.zeros((side, side), np.float32)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    height, width = card.image_shape[:2]
    source = tuple(card.source_shape or (height, width))
    if source != (height, width) or card.image_pad:  # low-resolution scans (digits): the loader's path
        native = resize_images(square[None], source)[0]
        native = native / max(float(native.max()), 1e-6)
        return resize_images(native[None], (height, width), pad=card.image_pad)[0][..., None], native[..., None]
    box = max(1, round(20 * min(height, width) / 28))
    digit = resize_images(square[None], (box, box))[0]
    digit = digit / max(float(digit.max()), 1e-6)
    out = np.zeros((height, width), np.float32)
    mass = digit.sum() or 1.0
    cy, cx = (np.arange(box) @ digit.sum(axis=1)) / mass, (np.arange(box) @ digit.sum(axis=0)) / mass
    y0 = int(np.clip(round(height / 2 - cy), 0, height - box))
    x0 = int(np.clip(round(width / 2 - cx), 0, width - box))
    out[y0:y0 + box, x0:x0 + box] = digit
    return out[..., None], None


# --------------------------------------------------------------------------- try it

class TryIt:
    """A finished run's model and the base model with its probe, ready to predict new inputs."""

    def __init__(self, prepared, extractor, probe: LinearProbe | None, note: str | None = None) -> None:
        self.config, self.card = prepared.config, prepared.dataset.card
        self.task_model = prepared.task_model
        self.extractor, self.probe, self.note = extractor, probe, note
        self.class_names = [str(c) for c in self.card.class_names or []]
        x_train = np.asarray(prepared.split.x_train)
        self.feature_names = list(self.card.columns) if self.card.modality == "tabular" else []
        self.feature_defaults = ([float(v) for v in np.median(x_train.reshape(len(x_train), -1), axis=0)]
                                 if self.feature_names else [])  # (a user model's reshape flattened back)
        self._want = _user_input_shape(self.config.model)
        self._lock = threading.Lock()

    @property
    def modality(self) -> str:
        return self.card.modality

    @property
    def task(self) -> str:
        return self.card.task

    @classmethod
    def from_run(cls, run_dir: str | Path) -> TryIt:
        """Load the run's model from its directory and the base model + probe (fitting it once)."""
        from workbench.train import features
        from workbench.train.trainer import load_run_model, prepare

        run_dir = Path(run_dir)
        if not (run_dir / "config.json").is_file():
            raise WorkbenchError(f"This run has no saved config: it did not finish. {received(run=run_dir.name)}")
        if not ((run_dir / "adapter.npz").is_file() or (run_dir / "model.keras").is_file()):
            raise WorkbenchError(f"This run saved no weights (no adapter.npz or model.keras): run it again with "
                                 f"export_model on. {received(run=run_dir.name)}")
        prepared = load_run_model(run_dir)
        cfg = prepared.config
        base_cfg = cfg.switch_method("linear", share="off", tie_layers=False, hierarchical="off", stage_epochs=None,
                                     stage_steps=None, discriminative=None, lr_schedule="constant", augment=False,
                                     mixed_precision="off", name=None)
        base = prepare(base_cfg)
        cut = features.split_at_head(base.task_model.model, base.task_model.groups.get("head") or [])
        if cut is None:
            return cls(prepared, None, None, note="This model's head cannot be split from its backbone, so there "
                                                  "is no base + linear probe to compare with.")
        return cls(prepared, cut.extractor, _load_or_fit_probe(run_dir, base, cut.extractor))

    # -- inputs ---------------------------------------------------------------------------------
    def encode(self, items: list) -> Any:
        """Model inputs for raw items: texts; WAV bytes; image files (bytes/PIL) or arrays shaped like the
        dataset's images; dicts {feature: value} or sequences of feature values."""
        from workbench.data.loading import CleaningReport, Dataset

        native = None
        if self.modality == "text":
            x = np.array([str(t) for t in items], dtype=object)
        elif self.modality == "audio":  # WAV bytes (a recording, an upload) or the uint8 log-mel of one
            from workbench.data import audio

            x = audio.model_input(np.stack([audio.wav_features(bytes(i)) if isinstance(i, bytes | bytearray)
                                            else np.asarray(i) for i in items]))
        elif self.modality == "image":
            shape = tuple(self.card.image_shape)
            pairs = [image_to_input(i, self.card) if not isinstance(i, np.ndarray)
                     else (np.asarray(i, np.float32).reshape(shape), None) for i in items]
            x = np.stack([p[0] for p in pairs]).astype(np.float32)
            if all(p[1] is not None for p in pairs):
                native = np.stack([p[1] for p in pairs]).astype(np.float32)
        else:
            rows = [[float(i[n]) for n in self.feature_names] if isinstance(i, dict) else list(map(float, i))
                    for i in items]
            x = np.asarray(rows, np.float32)
            if x.ndim != 2 or x.shape[1] != len(self.feature_names):
                raise WorkbenchError(f"Give {len(self.feature_names)} feature values per example "
                                     f"({', '.join(self.feature_names)}). {received(shape=x.shape)}")
        if self._want is not None and self.modality != "text":  # a user's model: the run's own shape fit
            from workbench.data.shapes import fit_to_model

            ds = Dataset(card=self.card, x=x, y=np.zeros(len(x)), report=CleaningReport(), native=native)
            x = fit_to_model(ds, self._want, Path(self.config.model).name)[0].x
        return self.task_model.encode(x)

    # -- predictions ----------------------------------------------------------------------------
    def outputs(self, items: list) -> dict[str, np.ndarray]:
        """Raw outputs: {"fine-tuned": probabilities or values, "base + linear probe": the same}."""
        from workbench.explain.predictions import probabilities

        encoded = self.encode(items)
        with self._lock:
            tuned = _numpy(self.task_model.model.predict_on_batch(encoded))
            base = self.probe(_numpy(self.extractor.predict_on_batch(encoded))) if self.probe is not None else None
        out = {}
        for name, values in ((FINE_TUNED, tuned), (BASE, base)):
            if values is None:
                continue
            if self.task == "classification":
                from_logits = self.task_model.from_logits if name == FINE_TUNED else True
                out[name] = probabilities(values, from_logits=from_logits)
            else:
                out[name] = values.reshape(len(values), -1)[:, 0]
        return out

    def predict(self, items: list) -> pd.DataFrame:
        """Long format: example, model, class, probability (classification) or example, model, value."""
        frames = []
        for name, values in self.outputs(items).items():
            if self.task == "classification":
                k = values.shape[1]
                frames.append(pd.DataFrame({"example": np.repeat(np.arange(len(values)), k), "model": name,
                                            "class": self.class_names * len(values), "probability": values.reshape(-1)}))
            else:
                frames.append(pd.DataFrame({"example": np.arange(len(values)), "model": name, "value": values}))
        return pd.concat(frames, ignore_index=True)

    def probabilities(self, item: Any) -> dict[str, dict[str, float]]:
        """One input: {model: {class: probability}} (regression: {model: {"value": v}})."""
        out = {}
        for name, values in self.outputs([item]).items():
            out[name] = (dict(zip(self.class_names, map(float, values[0]), strict=True)) if self.task == "classification"
                         else {"value": float(values[0])})
        return out


def _numpy(x: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x), np.float32)


def _user_input_shape(model: str) -> tuple | None:
    from workbench.models.registry import is_model_file

    if not is_model_file(model):
        return None
    from workbench.models.user import input_shape

    return input_shape(model)


def _load_or_fit_probe(run_dir: Path, base, extractor) -> LinearProbe:
    """The cached probe of these settings, or a new one fitted on the training split (and cached)."""
    key, task = probe_key(base.config), base.task
    path = run_dir / PROBE_FILE
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return LinearProbe(z["weights"], z["bias"], task, key, float(z["test_score"]))
    feats = {name: _numpy(extractor.predict(base.inputs[name], batch_size=256, verbose=0)) for name in ("train", "test")}
    classes = len(base.dataset.card.class_names or [])
    w, b = fit_probe(feats["train"], base.split.y_train, task, classes)
    probe = LinearProbe(w, b, task, key, 0.0)
    test = probe(feats["test"])
    y = np.asarray(base.split.y_test)
    probe.test_score = (float(np.mean(test.argmax(axis=1) == y)) if task == "classification"
                        else float(np.sqrt(np.mean((test[:, 0] - y) ** 2))))
    with contextlib.suppress(OSError):  # a read-only runs folder: the probe lives in memory for this session
        np.savez(path, weights=w, bias=b, key=np.array(key), test_score=np.array(probe.test_score))
    return probe
