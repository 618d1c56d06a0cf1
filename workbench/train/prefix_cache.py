"""Frozen-prefix cache: the lowest layer groups that have nothing to train run once per example.

When the lowest k groups of a layered model carry no trainable variable (LoRA on the top blocks
only, top-down staging's early stages, the head alone), their output for a training example is the
same at every step. Recomputing it each step is most of the step: MiniLM's top-down stage that
trains block_6 and the head runs six blocks forward to train one. So the engine cuts the model
(`TaskModel.prefix`, a `PrefixGraph` the builder provides) after group k:

    lower(k) = Model(task inputs → the states after the k lowest groups)   once per example, inference mode
    upper(k) = Model(states, padding mask → task output)                   what the steps train

`CachedPrefixModel` is what `fit` trains. A training batch carries `example_index`; the model
gathers those rows of the cache (trimmed to the batch's length, see `feed`) and runs `upper(k)`.
The validation split is cached too (its rows follow the training rows in the cache): validation runs
in inference mode anyway, so its metrics are exactly the whole model's. Test and prediction batches
carry no index and run the whole task model. The upper models share their layer objects with the task model:
training them trains it, and the export and saved weights are the task model's.

When a stage (or a person steering) makes a lower group trainable, the cut moves down and the cache
is computed again before that step; `cache/groups` rows record the cut for the run's notes.

What changes: the cached groups run in inference mode, so their dropout (MiniLM: 0.1 on attention
and feed-forward) is off while they are frozen; the frozen weights are the same and so is every
variable's gradient with dropout off (tests). What dropout in frozen layers did was noise on the
features the trained part sees; its effect on accuracy is measured in `make bench` (row 9).

TensorFlow only (the cache is a `tf.Variable` gathered inside the step; under JAX's stateless step it
would travel with every call): elsewhere, with a user model, parameter sharing across layers (a shared
variable may be used in a group that does not own it), augmentation, or `prefix_cache = false`, the
whole model trains each step as before. `WORKBENCH_PREFIX_CACHE=0` turns it off for the process.
"""

from __future__ import annotations

import os
import time
from typing import Any

import keras
import numpy as np

from workbench.train.features import MAX_CACHE_BYTES


def enabled() -> bool:
    return os.environ.get("WORKBENCH_PREFIX_CACHE", "1").strip().lower() not in ("0", "false", "off", "no")


class CachedPrefixModel(keras.Model):
    """The task model with its frozen prefix read from a cache for training batches (see the module)."""

    def __init__(self, cache: PrefixCache, **kwargs) -> None:
        super().__init__(name=f"{cache.full.name}_cached_prefix", **kwargs)
        self.full = cache.full
        self._cache = [cache]  # a list: Keras tracks layers, not plain objects; this one is no layer

    def call(self, inputs, training=None):
        cache = self._cache[0]
        if isinstance(inputs, dict) and "example_index" in inputs:
            x = {k: v for k, v in inputs.items() if k != "example_index"}
            if cache.cut:
                import tensorflow as tf

                mask = x["padding_mask"]
                hidden = tf.gather(cache.states, inputs["example_index"])[:, :tf.shape(mask)[1]]
                return cache.upper(cache.cut)({"hidden": hidden, "padding_mask": mask}, training=training)
            return self.full(x, training=training)
        return self.full(inputs, training=training)


class PrefixCache:
    """Which lowest groups are frozen now, their cached output, and the model `fit` trains."""

    def __init__(self, task_model, train_inputs: dict[str, np.ndarray], recorder=None,
                 val_inputs: dict[str, np.ndarray] | None = None) -> None:
        self.task_model, self.full, self.graph = task_model, task_model.model, task_model.prefix
        parts = [train_inputs, *([val_inputs] if val_inputs is not None else [])]
        self.x = {k: np.concatenate([part[k] for part in parts]) for k in train_inputs if k != "example_index"}
        self.n_train = len(train_inputs["padding_mask"])
        self.recorder = recorder
        self.cut = 0  # groups below the cut are served from the cache (0: none)
        self.states = None  # tf.Variable (rows, positions, width), made at the first cut
        self.spans: list[tuple[int, int]] = []  # (step, cut) at each change
        self.seconds = 0.0
        self._uppers: dict[int, keras.Model] = {}
        self.model = CachedPrefixModel(self)

    def upper(self, cut: int) -> keras.Model:
        if cut not in self._uppers:
            self._uppers[cut] = self.graph.upper(cut)
        return self._uppers[cut]

    def frozen_groups(self) -> int:
        """How many of the lowest groups have no trainable variable right now."""
        variables = self.task_model.group_variables()
        count = 0
        for group in self.graph.groups:
            if any(v.trainable for v in variables.get(group, [])):
                break
            count += 1
        return count

    def update(self, step: int = 0) -> bool:
        """Move the cut to the frozen groups now (computing the states if it moved); True if it moved."""
        cut = self.frozen_groups()
        cut = cut if cut >= self.graph.min_cut else 0
        if cut == self.cut:
            return False
        if cut:
            self.upper(cut)  # built here, not while the train step traces
            t0 = time.perf_counter()
            states = self.graph.lower(cut).predict(self.x, batch_size=256, verbose=0)
            states = np.asarray(keras.ops.convert_to_numpy(states), dtype="float32")
            import tensorflow as tf

            if self.states is None:
                self.states = tf.Variable(states, trainable=False, name="prefix_cache")
            else:
                self.states.assign(states)
            self.seconds += time.perf_counter() - t0
        self.cut = cut
        self.spans.append((step, cut))
        if self.recorder is not None:
            self.recorder.add("cache/groups", float(cut), step=step)
        return True

    def summary(self) -> str:
        """One line for the run's summary: what was cached for which steps."""
        if not any(cut for _, cut in self.spans):
            return "frozen-prefix cache: on, but no block below the trained ones was frozen (nothing cached)"
        parts = [f"from step {step}: {self.describe(cut)}" for step, cut in self.spans]
        return f"frozen-prefix cache ({self.seconds:.1f} s computing it): " + "; ".join(parts)

    def describe(self, cut: int) -> str:
        if not cut:
            return "none cached"
        groups = self.graph.groups[:cut]
        span = groups[0] if len(groups) == 1 else f"{groups[0]} … {groups[-1]}"
        return f"{span} cached"


def plan(prepared, recorder=None) -> PrefixCache | None:
    """A prefix cache for this run, or None when the whole model trains every step (see the module)."""
    cfg, tm = prepared.config, prepared.task_model
    graph = getattr(tm, "prefix", None)
    if (not enabled() or not cfg.prefix_cache or graph is None or graph.for_model is not tm.model
            or keras.backend.backend() != "tensorflow" or cfg.augment or cfg.share != "off" or cfg.tie_layers):
        return None
    x, val = prepared.inputs["train"], prepared.inputs.get("val")
    if not isinstance(x, dict) or "padding_mask" not in x:
        return None
    rows, positions = np.asarray(x["padding_mask"]).shape
    rows += len(val["padding_mask"]) if isinstance(val, dict) else 0
    if rows * positions * graph.width * 4 > MAX_CACHE_BYTES:
        return None
    return PrefixCache(tm, x, recorder, val if isinstance(val, dict) else None)


def with_index(x: dict[str, Any], offset: int = 0) -> dict[str, Any]:
    """Inputs with each row's index into the cache (training rows from 0, the validation rows after them)."""
    return {**x, "example_index": np.arange(offset, offset + len(x["padding_mask"]), dtype="int32")}


def indexed(cache: PrefixCache, inputs: dict[str, Any]) -> dict[str, Any]:
    """The run's inputs with the indices the cache serves: training and validation rows."""
    out = {**inputs, "train": with_index(inputs["train"])}
    if len(cache.x["padding_mask"]) > cache.n_train:
        out["val"] = with_index(inputs["val"], offset=cache.n_train)
    return out
