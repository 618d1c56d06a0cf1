"""Retention: how much of its source task a fine-tuned model still does (catastrophic forgetting).

Each built-in pretrained model has a fixed source probe (`workbench.models.source_probes`: MNIST
accuracy, masked-token accuracy, sentence geometry). A run measures it

- before: the shipped pretrained model (`source_before`; once per process, on a fresh copy);
- at step 0: the task model as it starts (the same as before for a method whose contract says its
  step-0 output is the pretrained one; measured otherwise: prompt tuning, tied blocks);
- at epoch ends, while the probes so far cost at most `BUDGET` of the run's time (so a short run
  gets no epoch points, a long one a curve);
- after training (`source_after`), on the fine-tuned encoder itself (LoRA, adapters... active);
- with the trained parameters removed (`source_removed`): the fine-tuned model's pretrained
  weights in a fresh base backbone. Reported when the run kept the base weights bit for bit
  (methods that add parameters to a frozen base: LoRA, DoRA, IA³, adapters, prompt, linear probe)
  or added some (a removal exists); it equals `source_before` exactly when the base was frozen
  (see `removed_score`). Full fine-tuning and BitFit change the base itself: nothing to remove.

The scores go to the metrics table as `source/score` (step 0 = before training) and the closing
numbers into the run's summary. Probing never changes training: the fine-tuned encoder is read in
inference mode and the fresh base is a separate model.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import keras
import numpy as np

from workbench.models import source_probes

BUDGET = 0.01  # share of the run's time the epoch-end probes may use (the final probe included)
KEY = "source/score"


def probe_for(run) -> source_probes.SourceProbe | None:
    """The run's probe, or None: no source task (mlp, a user's model), a run from scratch, probes off."""
    cfg = run.prepared.config
    name = run.prepared.task_model.card.name
    if cfg.from_scratch or not source_probes.enabled() or name not in source_probes.BUILDERS:
        return None
    return source_probes.get_probe(name)


def callbacks(run) -> list:
    try:
        probe = probe_for(run)
    except Exception as exc:  # noqa: BLE001 - a probe that cannot load must not cost the run
        run._retention = _Failed(exc)
        return []
    if probe is None:
        return []
    tracker = Tracker(run, probe)
    run._retention = tracker
    return [tracker]


def finish(run) -> dict[str, Any]:
    """source_metric, source_before, source_after, source_removed (where a removal exists), source_probe_s."""
    tracker = getattr(run, "_retention", None)
    if isinstance(tracker, _Failed):
        raise tracker.error
    if run.stopped:
        return {}
    if tracker is None:
        probe = probe_for(run)
        if probe is None:
            return {}
        tracker = Tracker(run, probe)
    return tracker.finish()


class _Failed:
    def __init__(self, error: Exception) -> None:
        self.error = error


class Tracker(keras.callbacks.Callback):
    """Probes the task model during `fit`; `finish` adds the final and the removal probes."""

    def __init__(self, run, probe: source_probes.SourceProbe) -> None:
        super().__init__()
        self.run, self.probe = run, probe
        self.encoder = None
        self.spent = 0.0  # seconds spent probing in this run
        self.cost = probe.base_seconds  # the latest probe's cost: the estimate for the next
        self.t0 = time.perf_counter()
        self.points: dict[int, float] = {}
        self.error: Exception | None = None

    # -- during fit ---------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self.t0 = time.perf_counter()
        self._guarded(self._begin)

    def on_epoch_end(self, epoch, logs=None):
        if self.error is not None or epoch + 1 >= self.run.prepared.config.epochs:
            return  # the last epoch's point is the final probe (`finish`)
        elapsed = time.perf_counter() - self.t0
        if self.spent + 2 * self.cost <= BUDGET * elapsed:  # this probe and the final one still fit
            self._guarded(lambda: self._record(self.run.recorder.step, self.measure()))

    def _guarded(self, work) -> None:
        """A probe failure is recorded (`finish` raises it into `retention_error`), never fails the run."""
        try:
            work()
        except Exception as exc:  # noqa: BLE001
            self.error = exc

    def _begin(self) -> None:
        cfg = self.run.prepared.config
        if self.run.resume_step:
            return  # a resumed run: step 0 was recorded by its first attempt
        from workbench.peft import get_method

        if get_method(cfg.method).capabilities.step0_unchanged and not cfg.tie_layers:
            self._record(0, self.probe.base_score)  # the method's contract: step 0 is the pretrained model
        else:
            self._record(0, self.measure())

    def _record(self, step: int, score: float) -> None:
        self.points[step] = score
        self.run.recorder.add(KEY, score, step=step)

    def measure(self) -> float:
        """The probe on the task model's encoder as it is now (trained parameters active)."""
        t0 = time.perf_counter()
        tm = self.run.prepared.task_model
        if self.encoder is None:
            self.encoder = task_encoder(tm, self.probe)
        backbone = tm.backbone if tm.backbone is not None else tm.model  # (where a tied head finds its embedding)
        score = source_probes.run_probe(self.probe, self.encoder, backbone)
        self.cost = time.perf_counter() - t0
        self.spent += self.cost
        return score

    # -- after the test evaluation ----------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        step = self.run.recorder.step
        after = self.points[step] if step in self.points and step > 0 else self.measure()
        if step not in self.points:
            self._record(step, after)
        out: dict[str, Any] = {"source_metric": self.probe.metric, "source_before": self.probe.base_score,
                               "source_after": after}
        t0 = time.perf_counter()
        removed = removed_score(self.run.prepared, self.probe)
        self.spent += time.perf_counter() - t0
        if removed is not None:
            out["source_removed"] = removed
        out["source_probe_s"] = round(self.spent, 4)
        return out


# -- the encoders ---------------------------------------------------------------------------------------
def head_input(model: keras.Model, head_layers: list) -> Any:
    """The tensor the task head reads (before its dropout), found by walking back from the output.

    Walking this model's own graph, not `layer.input`: prompt tuning and tied blocks re-wire the
    task model around the same layer objects, so a layer can sit in two graphs.
    """
    head = {id(layer) for layer in head_layers}
    tensor = model.outputs[0]
    while True:
        layer, node = source_probes.producer(tensor)
        if layer is None or not (id(layer) in head or isinstance(layer, keras.layers.Dropout)):
            return tensor
        tensor = node.input_tensors[0]


def task_encoder(task_model, probe: source_probes.SourceProbe):
    """(batch index, batch) -> what the probe reads, through the task model's own (fine-tuned) layers.

    BERT models: the token states before the mean pooling, on inputs of any length (the probe packs
    its own lengths), by re-calling the same layer objects on length-free inputs. A chain backbone
    (the CNN): from the first layer whose weights differ from the pretrained ones (or that gained
    some, LoRA's), on the pretrained activations there; a frozen prefix gives those exactly, and
    skipping it makes a LoRA probe a fraction of a full one.
    """
    model = task_model.model
    cut = head_input(model, task_model.groups["head"])
    if probe.sequence:
        layer, node = source_probes.producer(cut)
        if layer is None or layer.name != "mean_pooling":
            raise ValueError(f"The source probe reads the token states before the mean pooling; this task model "
                             f"has none. Received: layer={getattr(layer, 'name', None)!r}")
        cut = node.input_tensors[0]
    elif "prefix" in probe.extra and (backbone := task_model.backbone) is not None \
            and source_probes.producer(cut)[0] is backbone:
        layers = source_probes.chain(backbone)
        if layers is not None and [layer.name for layer in layers] == probe.extra["chain"]:
            return _from_first_change(layers, probe)
    sub = keras.Model(model.input, cut, name=f"{model.name}_source_encoder")  # (the inputs' own structure)
    if probe.sequence:
        free = keras.tree.map_structure(lambda t: keras.Input((None,), dtype=t.dtype, name=t.name), model.input)
        sub = keras.models.clone_model(sub, input_tensors=free, clone_function=lambda layer: layer)
    return lambda i, batch: sub(batch, training=False)


def _from_first_change(layers: list, probe: source_probes.SourceProbe):
    digests = base_digests(probe)

    def encode(i: int, batch):
        touched = (k for k, layer in enumerate(layers)
                   if any(v.path not in digests or _digest(v) != digests[v.path] for v in layer.weights))
        start = next(touched, len(layers))
        x = probe.extra["prefix"][i][start]
        for layer in layers[start:]:
            x = layer(x, training=False)
        return x

    return encode


def _digest(value) -> str:
    array = np.ascontiguousarray(keras.ops.convert_to_numpy(value))
    return hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()


def base_digests(probe: source_probes.SourceProbe) -> dict[str, str]:
    """The pretrained weights' fingerprints, by variable path (taken once, before any removal check)."""
    with source_probes.lock():
        if "digests" not in probe.extra:
            probe.extra["digests"] = {v.path: _digest(v) for v in probe.extra["base"].weights}
        return probe.extra["digests"]


def removed_score(prepared, probe: source_probes.SourceProbe, *, recompute: bool = False) -> float | None:
    """The probe on a fresh base holding the fine-tuned model's pretrained weights; None: nothing to remove.

    Something to remove: the run kept every pretrained weight bit for bit (a frozen base, e.g. LoRA,
    the linear probe), or it added parameters besides the head. Not with tied blocks: removing the
    trained parameters of a tied model leaves the tied model, which is not the base.

    When every pretrained weight is bit-identical (checked, variable by variable), the removed model
    *is* the pretrained one, already probed for `source_before`: its score is that one, without a
    second forward pass (on a short run that pass would double the probes' cost). `recompute` runs
    it anyway (the tests do: the same weights must give the same score, exactly).
    """
    if prepared.config.tie_layers:
        return None
    tm = prepared.task_model
    digests = base_digests(probe)
    tuned: dict[str, Any] = {}
    # The backbone too: a re-wired model (prompt tuning) leaves BERT's unused pooler out of its graph.
    for variable in [*tm.model.weights, *(tm.backbone.weights if tm.backbone is not None else [])]:
        if tuned.setdefault(variable.path, variable) is not variable:
            return None  # two variables share a path: no safe mapping
    if any(path not in tuned for path in digests):
        return None
    head = {id(v) for layer in tm.groups["head"] for v in layer.weights}
    added = [v for path, v in tuned.items() if path not in digests and id(v) not in head]
    kept = all(_digest(tuned[path]) == digest for path, digest in digests.items())
    if not (kept or added):
        return None
    if kept and not recompute:
        return probe.base_score
    with source_probes.lock():
        base = probe.extra["base"]
        for variable in base.weights:
            variable.assign(tuned[variable.path])
        return source_probes.run_probe(probe, lambda i, b: source_probes.base_output(base, b), base)


# -- what the pages and the CLI show -------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def retention_line(final_metrics: dict[str, Any] | None) -> str | None:
    """"source kept: 0.967 → 0.712 (MNIST accuracy)", or None for a run without a source probe."""
    final = final_metrics or {}
    before, after = _number(final.get("source_before")), _number(final.get("source_after"))
    if before is None or after is None:
        return None
    return f"source kept: {before:.3f} → {after:.3f} ({final.get('source_metric', 'source probe')})"


def method_label(method: str | None) -> str:
    """"LoRA", "Adapters", "Linear probe": the method's own name, from its registry description."""
    from workbench.peft import METHODS

    if method in METHODS:
        return METHODS[method].description.split(":")[0]
    return method or "the trained part"


def removal_line(final_metrics: dict[str, Any] | None, method: str | None) -> str | None:
    """"LoRA removed → 0.967 (= base)", or None when the run has no removal check."""
    final = final_metrics or {}
    removed, before = _number(final.get("source_removed")), _number(final.get("source_before"))
    if removed is None or before is None:
        return None
    same = "= base" if removed == before else f"base {before:.3f}"
    return f"{method_label(method)} removed → {removed:.3f} ({same})"


def retention_figure(metrics, *, metric: str = "source score", before: float | None = None):
    """`source/score` over the steps (one run), with the pretrained model's score as a dotted line."""
    import plotly.graph_objects as go

    from workbench.charts_style import key_rows, style_figure

    rows = key_rows(metrics, KEY)
    fig = go.Figure(go.Scatter(x=rows["step"], y=rows["value"], mode="lines+markers", name=metric))
    if before is not None:
        fig.add_hline(y=before, line_dash="dot", line_color="#888", annotation_text="pretrained",
                      annotation_position="bottom right")
    return style_figure(fig, f"Source task kept: {metric}", "step", metric)
