"""The change map: what changed where while a run trained, and how hard the loss pulled on each group.

At 5 evenly spaced points inside the first epoch and at every epoch end the run records, per layer
group (embeddings, block_1 … block_N, head) and per adapted weight:

    change/<group>          sqrt(Σ‖ΔW‖²) / sqrt(Σ‖W0‖²) over the group's adapted weights (0: unchanged)
    change/<group>/<name>   ‖W_t − W_0‖ / ‖W_0‖ of one weight ("query", "head/kernel")
    grad/<group>            ‖∇L‖ over the group's trainable variables on a fixed probe batch (frozen: 0)

What "the weight" is, the method says (`Method.change` → `peft.base.ChangeMeasure`): LoRA's effective
W + s·A'·B' from its factors (‖A'B'‖²_F = Σ (A'ᵀA') ∘ (B'B'ᵀ), r×r matrices, never the d_in × d_out
product), DoRA's merged kernel, IA³'s W·diag(l), an adapter's or a soft prompt's contribution on the
probe batch. Every other variable that can train (full fine-tuning, BitFit, each head) is compared
with a host copy taken when training begins; only what can train is copied (memory). A weight that
starts at 0 (a new head's bias) has no relative change: it counts in its group's sums only.

The gradient norms: on TensorFlow, for methods measured from their weights (full, BitFit, LoRA, DoRA,
IA³, linear), the training step's own gradients of the last batch before the record point, taken
inside the step by `explain.grad_tap` (no second pass, nothing to trace). Otherwise (JAX, and adapters
or prompts, whose contribution needs a forward pass anyway) the probe batch: ≤ 32 training examples
drawn once with the run's seed, run in inference mode (no dropout), so two record points differ only
by the weights; the gradient (the trainer's loss) and the contribution measures then come from one
compiled function of our own, built once per run (TensorFlow: a `tf.function` over a `GradientTape`;
JAX: `jax.jit` of `jax.value_and_grad` under a `StatelessScope`), so the training step is never
retraced. `changes.json` says which ("gradients"). Gradients cover every variable that trains at some
stage; a group frozen at a record point reports 0. A feature-cached linear probe trains its head
alone: the backbone groups record 0 without any work.

Cost (this 2-core CPU, TensorFlow): with the tap, host copies and numpy at the record points only;
with the probe pass, tracing its function once is the main part (≈ 0.07–0.17 s for mnist-cnn, ≈ 0.55 s
for tiny-bert), then ≈ 5 ms (mnist-cnn) and ≈ 45 ms (tiny-bert, 32 × 48 tokens) per record point.

`finish` writes `changes.json` (final values, and for the LoRA family the singular values of each ΔW,
from QR factors of A' and B'ᵀ) and returns `change_max_group`, `change_<group>`, `lora_effective_rank`.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from workbench.peft.base import ChangeMeasure

PROBE_SIZE = 32  # examples in the probe batch (gradients, adapter and prompt contributions)
IN_EPOCH_POINTS = 5  # record points inside the first epoch, besides its end
ENERGY = 0.9  # a ΔW's effective rank: singular values needed for this share of its energy (Σσ²)
_MAPS: weakref.WeakValueDictionary[int, ChangeMap] = weakref.WeakValueDictionary()  # id(run) -> its map


def record_steps(steps_per_epoch: int) -> list[int]:
    """Steps inside the first epoch at which to record (epoch ends come on top): evenly spaced."""
    n = IN_EPOCH_POINTS + 1
    return sorted({round(steps_per_epoch * k / n) for k in range(1, n)} - {0, steps_per_epoch})


def low_rank_squares(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """‖s·A·B‖²_F from the r×r Gram matrices: Σ (AᵀA) ∘ (B Bᵀ), without forming the d_in × d_out product."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(scale * scale * np.sum((a.T @ a) * (b @ b.T)))


def low_rank_singular_values(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """The singular values of ΔW = s·A·B (at most r of them): A = Q_a R_a, Bᵀ = Q_b R_b, so ΔW has those
    of s·R_a R_bᵀ (r×r), and the big product is never formed."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    r_a, r_b = np.linalg.qr(a, mode="r"), np.linalg.qr(b.T, mode="r")
    return np.linalg.svd(scale * r_a @ r_b.T, compute_uv=False)


def effective_rank(values: np.ndarray, energy: float = ENERGY) -> int:
    """How many of the (descending) singular values hold `energy` of Σσ² (0 for ΔW = 0)."""
    power = np.square(np.asarray(values, np.float64))
    if power.sum() <= 0:
        return 0
    return int(np.searchsorted(np.cumsum(power) / power.sum(), energy - 1e-12) + 1)


def ratio(delta_sq: float, base_sq: float) -> float | None:
    """sqrt(Σ‖ΔW‖²)/sqrt(Σ‖W0‖²); None where no base exists (a weight that starts at 0 has no relative change)."""
    if base_sq > 0:
        return float(np.sqrt(delta_sq / base_sq))
    return 0.0 if delta_sq == 0 else None


@dataclass
class Probe:
    """The fixed probe batch, and a memo: inside the probe pass one forward serves every measure and the
    gradient (`forward`), and a measure of several layers (adapters) collects them once (`once`)."""

    model: Any
    x: Any
    y: Any
    memo: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    def forward(self) -> Any:
        return self.once("forward", lambda: self.model(self.x, training=False))


def probe_batch(run) -> Probe:
    """≤ PROBE_SIZE training rows, drawn once with the run's seed (sorted: the data's own order)."""
    from workbench.train.trainer import labels

    y = labels(run.prepared, "train")
    rng = np.random.default_rng(run.prepared.config.seed)
    rows = np.sort(rng.choice(len(y), size=min(PROBE_SIZE, len(y)), replace=False))
    x = run.inputs["train"]
    x = {k: np.asarray(v)[rows] for k, v in x.items()} if isinstance(x, dict) else np.asarray(x)[rows]
    return Probe(run.fit_model, x, y[rows])


def candidates(model) -> list:
    """Every variable that trains at some stage: the optimizer was built on them before staging began."""
    optimizer = model.optimizer
    for opt in (optimizer, getattr(optimizer, "inner_optimizer", None)):
        found = getattr(opt, "_trainable_variables", None)
        if found:
            return list({id(v): v for v in found}.values())
    return list(model.trainable_variables)


def loss_function(prepared) -> Callable:
    """The trainer's loss (`trainer.compile_model`): cross-entropy (from logits if the model gives them), MSE."""
    from_logits = prepared.task_model.from_logits
    if prepared.task == "classification":
        return lambda y, out: ops.mean(keras.losses.sparse_categorical_crossentropy(
            y, ops.cast(out, "float32"), from_logits=from_logits))
    return lambda y, out: ops.mean(keras.losses.mean_squared_error(y, ops.cast(out, "float32")))


def probe_pass(model, variables: list, loss: Callable, traced: list) -> Callable[[Any, Any], tuple]:
    """(x, y) -> (‖∂L/∂v‖² per variable, (‖Δ‖², ‖base‖²) per traced measure), in one compiled function
    built once per run: it traces once, and the training step is never touched (never retraced)."""

    def forward(x, y):
        probe = Probe(model, x, y)
        pairs = [m.squares(probe) for m in traced]  # before the loss: their forward is the loss's forward
        value = loss(y, probe.forward())
        flat = [ops.cast(v, "float32") for pair in pairs for v in pair]
        return value, ops.stack(flat) if flat else ops.zeros((0,), "float32")

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        values = [v.value for v in variables]

        @tf.function(autograph=False)  # no tensor-dependent Python control flow here: autograph would cost 0.1–0.3 s
        def run(x, y):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(values)
                value, contributions = forward(x, y)
            grads = tape.gradient(value, values, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            squares = [tf.reduce_sum(tf.square(tf.cast(tf.convert_to_tensor(g), "float32"))) for g in grads]
            return tf.stack(squares), contributions

        return lambda x, y: tuple(np.asarray(t) for t in run(x, y))
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        ids = {id(v) for v in variables}
        others = list({id(v): v for v in model.variables if id(v) not in ids}.values())

        def stateless(train_values, other_values, x, y):
            mapping = list(zip(variables, train_values, strict=True)) + list(zip(others, other_values, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                return forward(x, y)

        @jax.jit
        def run(train_values, other_values, x, y):
            (_, contributions), grads = jax.value_and_grad(stateless, has_aux=True)(train_values, other_values, x, y)
            return jnp.stack([jnp.sum(jnp.square(g.astype("float32"))) for g in grads]), contributions

        return lambda x, y: tuple(np.asarray(t) for t in run([v.value for v in variables],
                                                             [v.value for v in others], x, y))
    raise NotImplementedError(f"The change map's gradients support the tensorflow and jax backends. "
                              f"Received: backend={backend!r}")


def short_name(variable) -> str:
    """A variable's name in its layer: "query/kernel", "head/bias" (its path's last two parts)."""
    return "/".join(variable.path.split("/")[-2:])


def lowest_groups(task_model) -> tuple[dict[int, str], dict[int, str]]:
    """(id(variable) -> group, id(layer) -> group), a shared variable or layer in its lowest group
    (as the trainer assigns shared variables: `trainer.trainable_groups`)."""
    by_var: dict[int, str] = {}
    by_layer: dict[int, str] = {}
    for group, layers in task_model.groups.items():
        for layer in layers:
            for sub in layer._flatten_layers(include_self=True, recursive=True):
                by_layer.setdefault(id(sub), group)
    for group, variables in task_model.group_variables().items():
        for v in variables:
            by_var.setdefault(id(v), group)
    return by_var, by_layer


class ChangeMap(keras.callbacks.Callback):
    """Records the change map. `async_safe`: it records when a batch *begins* and at epoch ends, which
    Keras calls in order on the training thread, so it never makes the loss reading synchronous."""

    async_safe = True

    def __init__(self, run) -> None:
        super().__init__()
        self.run = run
        self.points = set(record_steps(run.steps_per_epoch))
        self.step = 0
        self.ready = False
        self.error: str | None = None
        self.seconds = 0.0
        self.last: dict[str, Any] | None = None
        self.steps: list[int] = []
        _MAPS[id(run)] = self  # `finish` finds it (weakly: a failed run's map goes with its callbacks)

    # -- Keras hooks ------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._guarded(self._setup)

    def on_train_batch_begin(self, batch, logs=None):
        if self.step in self.points:
            self._guarded(self._record)
        self.step += 1

    def on_epoch_end(self, epoch, logs=None):
        self._guarded(self._record)

    def _guarded(self, action: Callable[[], None]) -> None:
        """An explanation never costs the run its result: the first error stops recording and is reported."""
        if self.error is not None or self.run.stop_event.is_set():
            return
        t0 = time.perf_counter()
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - reported by `finish` as changes_error
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.seconds += time.perf_counter() - t0

    # -- setup and measurement ---------------------------------------------------------------------
    def _setup(self) -> None:
        from workbench.peft import get_method

        run, prep = self.run, self.run.prepared
        tm, cfg = prep.task_model, prep.config
        self.groups = list(tm.group_names)
        by_var, by_layer = lowest_groups(tm)
        method = get_method(cfg.method)
        # Measures of weights below the head only where the backbone trains (a cached probe's does not;
        # the frozen-prefix cache's model trains the task model's own layers above its cut).
        trains_backbone = run.fit_model is tm.model or getattr(run.fit_model, "full", None) is tm.model
        measures = method.change(tm, cfg.options, cfg.share) if method.change and trains_backbone else []
        placed = [(by_layer.get(id(m.layer)) or next((by_var[id(v)] for v in m.variables if id(v) in by_var), None),
                   m) for m in measures]  # a measure's group: its layer's, else its first variable's
        self.measures = [(g, m) for g, m in placed if g is not None]
        covered = {id(v) for m in measures for v in m.variables}
        self.trainable = candidates(run.fit_model)
        self.var_groups = [by_var.get(id(v)) for v in self.trainable]
        self.direct = [(g, v) for g, v in zip(self.var_groups, self.trainable, strict=True)
                       if id(v) not in covered and g is not None]
        self.start = {id(v): np.array(ops.convert_to_numpy(v), copy=True) for _, v in self.direct}
        self.start_sq = {k: float(np.sum(np.square(a, dtype=np.float64))) for k, a in self.start.items()}
        self.names = _unique_names(self.measures, self.direct)
        self.probe = probe_batch(run)
        self.traced = [m for _, m in self.measures if m.traced]
        self.tap = None
        if keras.backend.backend() == "tensorflow" and not self.traced:  # the step's own gradients: no extra pass
            from workbench.explain.grad_tap import GradientTap

            self.tap = GradientTap(run.fit_model.optimizer, self.trainable)
        else:
            self.probe_pass = probe_pass(run.fit_model, self.trainable, loss_function(prep), self.traced)
        self.step = run.resume_step  # (a resumed run records on from its checkpoint's step)
        self.ready = True

    def measure(self) -> dict[str, Any]:
        """One record point: per weight and per group (‖ΔW‖², ‖W0‖²), and per group ‖∇L‖."""
        self.probe.memo.clear()
        if self.tap is not None:
            grad_squares, contributions = self.tap.read(), np.zeros(0)
        else:
            grad_squares, contributions = self.probe_pass(self.probe.x, self.probe.y)
        traced = {id(m): (float(contributions[2 * i]), float(contributions[2 * i + 1]))
                  for i, m in enumerate(self.traced)}
        weights: dict[tuple[str, str], tuple[float, float]] = {}
        for group, m in self.measures:
            if m.traced:
                pair = traced[id(m)]
            elif m.squares is not None:
                pair = tuple(float(v) for v in m.squares(self.probe))
            else:
                a, b, s = m.factors()
                pair = (low_rank_squares(a, b, s), m.base)
            weights[(group, self.names[id(m)])] = pair
        for group, v in self.direct:
            delta = ops.convert_to_numpy(v) - self.start[id(v)]
            weights[(group, self.names[id(v)])] = (float(np.sum(np.square(delta, dtype=np.float64))),
                                                   self.start_sq[id(v)])
        sums = {g: [0.0, 0.0] for g in self.groups}
        for (group, _), (delta, base) in weights.items():
            if group in sums:
                sums[group][0] += delta
                sums[group][1] += base
        norms = {g: 0.0 for g in self.groups}  # frozen now, or nothing to train: 0 by definition
        for group, v, sq in zip(self.var_groups, self.trainable, grad_squares, strict=True):
            if group in norms and v.trainable:
                norms[group] += float(sq)
        return {"step": self.step, "weights": weights, "groups": sums,
                "grads": {g: float(np.sqrt(n)) for g, n in norms.items()}}

    def _record(self) -> None:
        if not self.ready:
            return
        from workbench.train.lr_control import sync_state

        sync_state(self)  # JAX: the running values back into the variables before reading them
        point = self.measure()
        add, step = self.run.recorder.add, point["step"]
        for group, (delta, base) in point["groups"].items():
            value = ratio(delta, base)
            if value is not None:
                add(f"change/{group}", value, step=step)
            add(f"grad/{group}", point["grads"][group], step=step)
        for (group, name), (delta, base) in point["weights"].items():
            value = ratio(delta, base)
            if value is not None:
                add(f"change/{group}/{name}", value, step=step)
        self.last = point
        self.steps.append(step)


def _unique_names(measures: list, direct: list) -> dict[int, str]:
    """id(measure or variable) -> its short name, made unique within its group ("query", "query~2")."""
    names: dict[int, str] = {}
    seen: set[tuple[str | None, str]] = set()
    for group, item in [*measures, *direct]:
        base = item.name if isinstance(item, ChangeMeasure) else short_name(item)
        name, k = base, 1
        while (group, name) in seen:
            k += 1
            name = f"{base}~{k}"
        seen.add((group, name))
        names[id(item)] = name
    return names


def callbacks(run) -> list:
    return [ChangeMap(run)]


def finish(run) -> dict[str, Any]:
    """changes.json and the summary numbers; {} for a stopped run (stop means stop)."""
    cmap = _MAPS.pop(id(run), None)
    if run.stopped or cmap is None or (cmap.error is None and not cmap.ready):
        return {}
    if cmap.error is not None:
        return {"changes_error": cmap.error}
    t0 = time.perf_counter()
    final = cmap.last if cmap.last is not None and cmap.last["step"] == cmap.step else cmap.measure()
    groups = {g: ratio(*final["groups"][g]) or 0.0 for g in cmap.groups}
    weights = [{"group": g, "name": n, "change": ratio(d, b)} for (g, n), (d, b) in final["weights"].items()]
    spectra = []
    for group, m in cmap.measures:
        if m.factors is not None:
            values = low_rank_singular_values(*m.factors())
            spectra.append({"group": group, "name": cmap.names[id(m)], "singular_values": values.tolist(),
                            "effective_rank": effective_rank(values)})
    cmap.seconds += time.perf_counter() - t0
    doc = {"version": 1, "method": run.prepared.config.method, "groups": cmap.groups, "record_steps": cmap.steps,
           "final_step": final["step"], "final": groups, "weights": weights, "spectra": spectra,
           "energy": ENERGY, "probe_examples": int(len(cmap.probe.y)), "seconds": round(cmap.seconds, 4),
           "gradients": "training step" if cmap.tap is not None else "probe batch"}
    (run.run_dir / "changes.json").write_text(json.dumps(doc, indent=1))
    cmap.start.clear()  # the host copy of the trainable weights is not needed any more
    if cmap.tap is not None:
        cmap.tap.detach()
    summary: dict[str, Any] = {f"change_{g}": v for g, v in groups.items()}
    summary["change_max_group"] = max(cmap.groups, key=lambda g: groups[g])
    if spectra:
        summary["lora_effective_rank"] = float(np.mean([s["effective_rank"] for s in spectra]))
    return summary
