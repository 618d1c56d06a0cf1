"""The training recipe, top to bottom: the source document's procedure in code.

    1. preprocess data (clean, split, tokenize once)   -> `prepare`
    2. load pretrained weights, add a task head        -> `prepare`
    3. apply the PEFT method (which weights train)     -> `prepare`
    4. fit with recording, stopping, LR adaptation     -> `train`
    5. evaluate on the held-out test split, save       -> `train`

Loss: cross-entropy for classification, MSE for regression; the optimizer (AdamW) applies
θ ← θ − α∇L with α from the chosen schedule. Everything here uses Keras 3 APIs only, so the same
path runs on TensorFlow (the default) and on JAX (the GPU machine).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from workbench import data as wdata
from workbench import explain
from workbench.config import TrainConfig
from workbench.errors import ConfigError, received
from workbench.models import BuildContext, TaskModel, build_task_model
from workbench.models.base import BUILD_LOCK
from workbench.peft import ParamReport, apply_method, get_method, register_layers
from workbench.train import checkpoint, features, prefix_cache
from workbench.train.callbacks import BatchLoss, LiveState, Recorder, StopOnEvent
from workbench.train.device import device_name, use_xla
from workbench.train.distribute import replicas
from workbench.train.feed import training_feed
from workbench.train.lr_control import LearningRateControl, make_optimizer, optimizer_slots
from workbench.train.stages import StagedUnfreezing, plan_stages, stage_length
from workbench.train.steering import EarlyStop, Steering
from workbench.train.tensorboard import TensorBoardWriter


@dataclass
class Prepared:
    config: TrainConfig
    dataset: Any
    split: Any
    task_model: TaskModel
    report: ParamReport
    inputs: dict[str, Any]  # "train" | "val" | "test" -> encoded model inputs

    @property
    def task(self) -> str:
        return self.dataset.card.task

    @property
    def notes(self) -> list[str]:
        """How the data reaches the model, one line each: shape transform, coarse splits, clamps."""
        return [*self.dataset.notes, *self.task_model.notes]


def load_data(config: TrainConfig):
    """Load, fit to a user's model file and split the dataset (bad data raises DataError before any
    model is built); `dataset.notes` says how the data was shaped and which splits are coarse."""
    from workbench.data.checks import split_warnings
    from workbench.models.registry import is_model_file

    csv_options = {k: v for k, v in (("text_column", config.text_column), ("feature_columns", config.feature_columns),
                                     ("label_column", config.label_column), ("task", config.task)) if v is not None}
    dataset = wdata.load(config.data, **csv_options)
    if is_model_file(config.model):
        from workbench.models.user import fit_data

        dataset = fit_data(dataset, config.model, augment=config.augment)
    split = wdata.split_dataset(dataset, seed=config.seed, val_fraction=config.val_fraction,
                                test_fraction=config.test_fraction, limit_per_class=config.limit_per_class,
                                max_rows=config.max_rows)
    dataset.notes.extend(split_warnings(split.sizes(), dataset.card.task, dataset.num_classes))
    n_train = len(split.y_train)
    if config.batch_size > n_train:
        raise ConfigError(f"batch_size {config.batch_size} is larger than the {n_train} training examples: "
                          f"use --batch-size {max(1, n_train // 4)} or less. {received(batch_size=config.batch_size)}")
    return dataset, split


def float32_head(task_model: TaskModel) -> None:
    """Under a mixed-precision policy the head computes and outputs float32 (stable logits and losses).

    Built-in heads are created float32 (`models.base.make_head`); this covers the head of a user's
    `.keras` model, built under whatever policy it was saved with. Set before anything is traced.
    """
    for layer in task_model.groups.get("head", []):
        if layer.dtype_policy.compute_dtype != "float32":
            layer.dtype_policy = keras.DTypePolicy("float32")


def context(dataset, split, config: TrainConfig) -> BuildContext:
    return BuildContext(task=dataset.card.task, num_classes=dataset.num_classes, x_train=split.x_train,
                        y_train=split.y_train, max_seq_len=config.max_seq_len, from_scratch=config.from_scratch,
                        class_names=dataset.card.class_names)


def prepare(config: TrainConfig, live: LiveState | None = None) -> Prepared:
    """Steps 1–3: data, pretrained model + head, PEFT method; the dtype policy must be set before.

    Seeded here (`config.seed`) and under the build lock from the seed to the method's new weights,
    so no other thread's build can draw from the RNG in between: same seed + config = same weights.
    """
    with BUILD_LOCK:
        keras.utils.set_random_seed(config.seed)
        if live is not None:
            live.set_phase("loading data")
        dataset, split = load_data(config)
        if live is not None:
            live.set_phase("building the model")
        task_model = build_task_model(config.model, context(dataset, split, config), dataset.card.modality)
        float32_head(task_model)
        report = apply_method(task_model, config)
    inputs = {name: task_model.encode(x) for name, x in
              (("train", split.x_train), ("val", split.x_val), ("test", split.x_test))}
    return Prepared(config, dataset, split, task_model, report, inputs)


def compile_model(prepared: Prepared, optimizer: keras.optimizers.Optimizer, model: keras.Model | None = None) -> None:
    """Loss, the per-step `BatchLoss` and the task's metric; XLA per `jit_compile` ('auto': per device).

    `model` defaults to the task model; the feature-cached linear probe also compiles its head model.
    Metric objects (not strings) and an optimizer built up front mean no variable is created while
    the first step traces, so TensorFlow traces the training step once instead of twice.
    """
    tm = prepared.task_model
    model = model or tm.model
    if prepared.task == "classification":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=tm.from_logits)
        per_example = lambda y, p: keras.losses.sparse_categorical_crossentropy(y, p, from_logits=tm.from_logits)  # noqa: E731
        metrics: list = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:
        loss = keras.losses.MeanSquaredError()
        per_example = keras.losses.mean_squared_error
        metrics = [keras.metrics.MeanAbsoluteError(name="mae")]
    model.compile(optimizer=optimizer, loss=loss, metrics=[BatchLoss(per_example), *metrics],
                  jit_compile=uses_xla(prepared.config))
    if not model.optimizer.built:  # (a LossScaleOptimizer under mixed_float16 builds its inner one too)
        model.optimizer.build(model.trainable_variables)


def uses_xla(config: TrainConfig) -> bool:
    """`jit_compile` as it will run: 'auto' is XLA on a GPU and the plain graph on a CPU (see device)."""
    return use_xla() if config.jit_compile == "auto" else bool(config.jit_compile)


TRIM_MIN_PARAMS = 5_000_000  # below this a CPU step is bound by per-op overhead, not arithmetic


def trims_padding(prepared: Prepared) -> bool:
    """Cut token batches to their longest row (exact: the BERT models mask padding everywhere)?

    Only for the built-in transformer backbones (a user's text model may need its full length), on
    TensorFlow without XLA (each new length would recompile an XLA step), without augmentation, and
    for backbones large enough that the step is compute-bound: measured on this CPU, MiniLM-L6 (22.7M)
    spends ~8 % less CPU per step on sms-spam, while tiny-bert (0.8M, bound by per-op overhead)
    spends ~8 % more with variable shapes.
    """
    backbone = prepared.task_model.backbone
    return (keras.backend.backend() == "tensorflow" and not uses_xla(prepared.config) and not prepared.config.augment
            and backbone is not None and hasattr(backbone, "max_sequence_length")
            and backbone.count_params() >= TRIM_MIN_PARAMS)


def labels(prepared: Prepared, name: str) -> np.ndarray:
    y = getattr(prepared.split, f"y_{name}")
    return y.astype("int32") if prepared.task == "classification" else y.astype("float32").reshape(-1, 1)


def augmenter(prepared: Prepared):
    """Step 1 (augmentation): token dropout/swap for text, shifts + noise for images."""
    if not prepared.config.augment:
        return None
    modality = prepared.dataset.card.modality
    if modality == "text":
        def augment_text(xb, rng):
            ids, mask = wdata.augment_token_ids(xb["token_ids"], xb["padding_mask"], rng, return_mask=True)
            return {**xb, "token_ids": ids, "padding_mask": mask}
        return augment_text
    if modality == "image":
        return lambda xb, rng: wdata.augment_images(xb, rng).astype("float32")
    raise ConfigError(f"Augmentation is available for text and image data, not {modality}: turn it off. "
                      f"{received(augment=True)}")


def train(prepared: Prepared, *, store, run_id: str, stop_event: threading.Event | None = None,
          live: LiveState | None = None, extra_callbacks: list | None = None, resume: bool = False) -> dict[str, Any]:
    """Steps 4–5: fit with recording, evaluate on test, save artifacts; returns the summary.

    The summary (the run's `final_metrics`) also holds `data_report` (the cleaning report's line)
    and `data_notes` (`Prepared.notes`): strings beside the numbers, which tables filter out.

    A linear probe (nothing below the head trains, no augmentation) computes the frozen backbone's
    features once and fits the head on them (`workbench.train.features`): same variables, metrics
    and exported task model, without running the backbone every epoch.

    `resume`: continue from the run's epoch checkpoint (`train.checkpoint`): the same curve goes on
    from the checkpoint's step (the rows after it, the part of an epoch the interruption cost, go).
    """
    cfg, tm = prepared.config, prepared.task_model
    live = live or LiveState()
    stop_event = stop_event or threading.Event()
    lr = cfg.resolved_lr(prepared.dataset.card.modality)
    y_train = labels(prepared, "train")
    t0 = time.perf_counter()
    cached = features.plan(prepared)
    if cached is not None:
        live.set_phase("computing features")
    if cached is not None and cached.compute(prepared.inputs, stop_event=stop_event) is None:
        cached = None  # stopped while computing features: the usual path ends after one batch
    inputs = cached.inputs if cached is not None else prepared.inputs
    prefix = prefix_cache.plan(prepared) if cached is None else None  # frozen lowest groups: once per example
    if prefix is not None:
        inputs = prefix_cache.indexed(prefix, inputs)
    fit_model = cached.head if cached is not None else prefix.model if prefix is not None else tm.model
    run_dir = store.run_dir(run_id)
    ckpt = checkpoint.resumable(run_dir) if resume else None
    first_epoch = ckpt.epoch if ckpt is not None else 0
    fed: dict[str, Any] = {}
    data, steps_per_epoch = training_feed(inputs["train"], y_train, batch_size=cfg.batch_size,
                                          epochs=cfg.epochs, seed=cfg.seed, augment=augmenter(prepared),
                                          trim_padding=cached is None and trims_padding(prepared),
                                          length_buckets=cfg.length_buckets, first_epoch=first_epoch, report=fed)
    total_steps = steps_per_epoch * cfg.epochs
    live.total_steps, live.epochs = total_steps, cfg.epochs

    # The three principles meet here: which groups train when, and at which learning rate.
    group_vars = trainable_groups(tm)
    plan = plan_stages(tm.group_names, group_vars, cfg.hierarchical).stages  # the preview's plan too
    method = get_method(cfg.method)  # a method may train some variables faster (LoRA+: B at λ× the LR)
    factors = method.lr_multipliers(tm, cfg.options) if method.lr_multipliers is not None else None
    optimizer, slot_optimizers = make_optimizer(cfg, lr, group_vars, factors)
    lr_control = LearningRateControl(cfg, lr, total_steps, slot_optimizers, optimizer_slots(group_vars, factors))
    compile_model(prepared, optimizer)
    if fit_model is not tm.model:
        compile_model(prepared, optimizer, model=fit_model)
    kept = checkpoint.kept_variables(fit_model)  # (before stages freeze anything)

    tensorboard = TensorBoardWriter.maybe(run_dir / "tensorboard")
    recorder = Recorder(store, run_id, live, n_train=len(y_train), batch_size=cfg.batch_size,
                        lr_reader=lr_control.current, tensorboard=tensorboard)
    staging = StagedUnfreezing(group_vars, plan, stage_length(cfg, len(plan), steps_per_epoch, total_steps), recorder)
    if prefix is not None:
        prefix.recorder, staging.on_change = recorder, prefix.update  # the cut follows the trainable groups
    if fed:
        recorder.add("feed/trimmed_share", fed["trimmed"], step=ckpt.step if ckpt is not None else 0)
    early = (EarlyStop(cfg.early_stopping_metric, cfg.early_stopping, cfg.restore_best, kept, store, run_id, recorder)
             if cfg.early_stopping else None)
    parts = {"lr_control": lr_control, "staging": staging, **({"early_stop": early} if early else {})}
    if ckpt is not None:
        checkpoint.continue_from(ckpt, store, run_id, parts, recorder)
    else:
        staging.begin()
    explained = explain.RunContext(prepared, recorder, run_dir, steps_per_epoch, fit_model, inputs, stop_event,
                                   resume_step=ckpt.step if ckpt is not None else 0)
    steering = Steering(store, run_id, lr_control=lr_control, staging=staging, recorder=recorder, live=live,
                        stop_event=stop_event)
    restore = [checkpoint.Restore(ckpt, kept, fit_model.optimizer)] if ckpt is not None else []
    saver = checkpoint.Checkpointer(run_dir, kept, fit_model.optimizer, steps_per_epoch, cfg.epochs, recorder, parts)
    callbacks = [steering, lr_control, staging, *explain.callbacks(explained), *restore, recorder,
                 *([early] if early else []), saver, StopOnEvent(stop_event), *(extra_callbacks or [])]

    fit_model.fit(data, epochs=cfg.epochs, initial_epoch=first_epoch, steps_per_epoch=steps_per_epoch,
                  validation_data=(inputs["val"], labels(prepared, "val")), validation_batch_size=256,
                  callbacks=callbacks, shuffle=False, verbose=0)
    fit_s = time.perf_counter() - t0

    test: dict[str, float] = {}
    if not stop_event.is_set():  # Stop means stop: a stopped run keeps its curves, without a test evaluation
        live.set_phase("evaluating")
        test = fit_model.evaluate(inputs["test"], labels(prepared, "test"), batch_size=256,
                                  verbose=0, return_dict=True)
        test = {k: float(v) for k, v in test.items() if k != "batch_loss"}
    for key, value in test.items():
        recorder.add(f"test/{key}", value)
    explained.stopped = stop_event.is_set()
    if not explained.stopped:
        live.set_phase("explaining")
    explanation = explain.finish(explained)  # the change map's spectra, retention, the test predictions
    recorder.flush()
    if tensorboard is not None:
        tensorboard.close()

    live.set_phase("saving")
    save_artifacts(prepared, run_dir)
    if not stop_event.is_set():
        checkpoint.discard(run_dir)  # completed: nothing to resume (a stopped run keeps its last epoch's)
    summary = summarize(prepared, store, run_id, test, fit_s, recorder.step, recorder.step - (ckpt.step if ckpt else 0))
    summary.update(early.summary() if early is not None else {})
    summary.update({"prefix_cache": prefix.summary()} if prefix is not None else {})
    summary.update(tm.baseline(prepared) if tm.baseline is not None and not stop_event.is_set() else {})
    # What cleaning and shaping did to the data, kept with the run (`check-data` shows the same line).
    summary["data_report"] = prepared.dataset.report.summary()
    summary["data_notes"] = prepared.notes
    summary.update(explanation)
    return summary


def trainable_groups(task_model: TaskModel) -> dict[str, list]:
    """Each group's trainable variables after the method; a shared variable joins its lowest group."""
    seen: set[int] = set()
    out: dict[str, list] = {}
    for group, variables in task_model.group_variables().items():
        mine = [v for v in variables if v.trainable and id(v) not in seen]
        seen.update(id(v) for v in mine)
        if mine:
            out[group] = mine
    return out


def summarize(prepared: Prepared, store, run_id: str, test: dict[str, float], fit_s: float, steps: int,
              steps_here: int | None = None) -> dict[str, Any]:
    frame = store.metrics(run_id, keys=["train/loss", "val/loss", "val/accuracy", "val/mae"])
    last = lambda key: frame[frame.key == key].value.iloc[-1] if (frame.key == key).any() else None  # noqa: E731
    train_loss = frame[frame.key == "train/loss"].value
    tail = train_loss.iloc[-max(1, len(train_loss) // 20):] if len(train_loss) else train_loss
    val_loss = frame[frame.key == "val/loss"].value
    summary: dict[str, Any] = {
        "train_loss": float(tail.mean()) if len(tail) else None,
        "val_loss": last("val/loss"), "best_val_loss": float(val_loss.min()) if len(val_loss) else None,
        "trainable_params": prepared.report.trainable, "total_params": prepared.report.total,
        "trainable_percent": round(prepared.report.percent, 4), "steps": steps,
        "fit_s": round(fit_s, 3),
        "steps_per_s": round((steps if steps_here is None else steps_here) / fit_s, 3) if fit_s > 0 else None,
        "device": device_name(), "replicas": replicas(),
    }
    for key in ("val/accuracy", "val/mae"):
        if last(key) is not None:
            summary[key.replace("/", "_")] = last(key)
    summary.update({f"test_{k}": v for k, v in test.items()})
    return summary


def save_artifacts(prepared: Prepared, run_dir: Path) -> None:
    """The trained weights, always (Try it and `load_run_model` need them after a restart), and if asked,
    the merged `.keras` export. A PEFT method keeps just what trained (a small part of the model); full
    fine-tuning keeps its whole model once: as the export when there is one, else as the npz."""
    tm, cfg = prepared.task_model, prepared.config
    caps = get_method(cfg.method).capabilities
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    exported = cfg.export_model and caps.mergeable
    if caps.role != "baseline" or not exported:
        weights = {v.path: keras.ops.convert_to_numpy(v) for v in tm.model.trainable_variables}
        np.savez(run_dir / "adapter.npz", **weights)
    # A method whose layers cannot merge into W (adapters are non-linear) reloads through `load_run_model`.
    if exported:
        # An uncompiled twin (same layers and weights): the trainer's compile config, e.g. a grouped
        # optimizer built on a lambda, is no part of the model and would not load back.
        export = keras.Model(tm.model.inputs, tm.model.outputs, name=tm.model.name)
        export.save(run_dir / "model.keras")


def load_run_model(run_dir: Path) -> Prepared:
    """Rebuild a finished run's model from its config and saved weights (any method)."""
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    keras.utils.set_random_seed(config.seed)
    prepared = prepare(config)
    if (run_dir / "adapter.npz").is_file():
        load_adapter(prepared.task_model, run_dir / "adapter.npz")
    else:
        register_layers()
        saved = keras.saving.load_model(run_dir / "model.keras", safe_mode=True, compile=False)
        for target, source in zip(prepared.task_model.model.weights, saved.weights, strict=True):
            target.assign(source)
    return prepared


def load_adapter(task_model: TaskModel, path: Path) -> None:
    """Put saved trainable weights back into a task model prepared with the same config."""
    with np.load(path, allow_pickle=False) as saved:  # object arrays (pickles) raise here
        arrays = {name: saved[name] for name in saved.files}
    by_path = {v.path: v for v in task_model.model.variables}
    missing = [p for p in arrays if p not in by_path]
    if missing:
        raise ConfigError(f"The adapter does not fit this model ({missing[0]} is unknown): prepare the model "
                          f"from the run's own config. {received(adapter=str(path))}")
    for name, value in arrays.items():
        by_path[name].assign(value)
