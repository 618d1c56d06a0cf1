"""Cached frozen features: a linear probe runs the frozen backbone once, not once per epoch.

When nothing below the head trains (method `linear`) and the inputs are not augmented, the
backbone's output for an example is the same in every epoch. The engine then splits the task model
at the head's input tensor (after the head's own dropout, which stays in the trained part):

    extractor = Model(task inputs → head input)      run once per split, in inference mode
    head      = Model(head input → task output)      the same layer objects: training it trains the task model

and fits `head` on the cached features. The run records the same metrics (per-step batch loss, val,
test), trains the same head variables, and saves and exports the full task model, whose head layers
are these very objects. The one difference from recomputing: the frozen part runs in inference
mode (no backbone dropout, BatchNorm statistics stay as pretrained), which is the standard linear
probe and what the exported model does at prediction time anyway.

It is an engine decision, not a setting: `plan` returns None (train the whole model as before)
whenever the split is not clean. `WORKBENCH_FEATURE_CACHE=0` turns it off (the benchmark's
baseline, and a way out should a user model ever need it).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from workbench.models.base import producer

MAX_CACHE_BYTES = 2 * 2**30  # features of all splits; above this the backbone runs every epoch
NOISE_LAYERS = (keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
                keras.layers.AlphaDropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
                keras.layers.SpatialDropout3D)


def enabled() -> bool:
    return os.environ.get("WORKBENCH_FEATURE_CACHE", "1").strip().lower() not in ("0", "false", "off", "no")


@dataclass
class FeaturePlan:
    extractor: keras.Model  # task inputs -> the head's input (frozen, inference mode)
    head: keras.Model  # the head's input -> task output (shares its layers with the task model)
    inputs: dict[str, Any] = field(default_factory=dict)  # split -> cached features (float32)
    seconds: float = 0.0  # time spent computing them

    def compute(self, split_inputs: dict[str, Any], batch_size: int = 256, stop_event=None) -> dict[str, np.ndarray] | None:
        """Features of every split; None if `stop_event` was set meanwhile (the caller trains as usual)."""
        t0 = time.perf_counter()
        watch = [_StopPredicting(stop_event)] if stop_event is not None else []
        for name, x in split_inputs.items():
            if _rows(x) == 0:
                self.inputs[name] = np.zeros((0, *self.extractor.outputs[0].shape[1:]), "float32")
                continue
            out = self.extractor.predict(x, batch_size=batch_size, verbose=0, callbacks=watch)
            if stop_event is not None and stop_event.is_set():
                return None
            self.inputs[name] = np.asarray(keras.ops.convert_to_numpy(out)).astype("float32", copy=False)
        self.seconds = time.perf_counter() - t0
        return self.inputs


class _StopPredicting(keras.callbacks.Callback):
    """The Stop button also interrupts the feature pass (after the current batch)."""

    def __init__(self, event) -> None:
        super().__init__()
        self.event = event

    def on_predict_batch_end(self, batch, logs=None):
        if self.event.is_set():
            self.model.stop_predicting = True


def plan(prepared) -> FeaturePlan | None:
    """A feature-caching plan for this run, or None when the whole model must train each step."""
    cfg, tm = prepared.config, prepared.task_model
    from workbench.peft import get_method

    if not enabled() or not get_method(cfg.method).capabilities.feature_cache or cfg.augment or cfg.hierarchical != "off":
        return None
    try:
        return split_at_head(tm.model, tm.groups.get("head") or [], prepared.inputs)
    except Exception:  # noqa: BLE001 - any model the split does not fit trains the usual way
        return None


def split_at_head(model: keras.Model, head_layers: list, split_inputs: dict[str, Any] | None = None) -> FeaturePlan | None:
    """Split a functional model at its head's input; None if the split would not be exact."""
    outputs = getattr(model, "outputs", None)  # functional and Sequential models only
    if not head_layers or not getattr(model, "inputs", None) or not isinstance(outputs, list) or len(outputs) != 1:
        return None
    # Walk back from the output through this model's own graph nodes (a layer may also sit in other
    # graphs, e.g. an earlier plan's head model) to the input of the first head layer.
    head_ids = {id(layer) for layer in head_layers}
    tensor = outputs[0]
    while True:
        layer, node = producer(tensor)
        if layer is None or id(layer) not in head_ids or len(node.input_tensors) != 1:
            return None  # the output does not come out of the head alone
        tensor = node.input_tensors[0]
        if layer is head_layers[0]:
            break
    cut = tensor
    # Step back over the head's own noise layers (its dropout): they stay in the trained part.
    while True:
        layer, node = producer(cut)
        if not isinstance(layer, NOISE_LAYERS) or len(node.input_tensors) != 1:
            break
        cut = node.input_tensors[0]
    if any(tensor is cut for tensor in model.inputs):
        return None  # the head reads the raw inputs: nothing to cache
    head = keras.Model(cut, outputs[0], name=f"{model.name}_head_on_features")
    extractor = keras.Model(model.inputs, cut, name=f"{model.name}_features")
    # Exact only if every variable that trains lives in the head part.
    head_vars = {id(v) for v in head.trainable_variables}
    if not model.trainable_variables or any(id(v) not in head_vars for v in model.trainable_variables):
        return None
    if any(v.trainable for v in extractor.variables):
        return None
    if split_inputs is not None:
        width = int(np.prod([d for d in cut.shape[1:]])) if all(d is not None for d in cut.shape[1:]) else None
        rows = sum(_rows(x) for x in split_inputs.values())
        if width is None or rows * width * 4 > MAX_CACHE_BYTES:
            return None
    return FeaturePlan(extractor=extractor, head=head)


def _rows(x: Any) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
