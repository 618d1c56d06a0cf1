"""What a run will do, before it starts: parameter report, split sizes, steps, LR schedule, stage plan.

The Train page and the notebooks show this next to the Start button, so a student sees how many
parameters LoRA saves, which learning-rate curve will run and which groups unfreeze when, without
training anything. The stage plan is the trainer's own (`train.stages.plan_stages` on the groups
that have something to train), so the preview cannot promise stages the run skips.

Speed (a toggle on the Train page waits for this): the model is built with variables that have a
shape but no value (Keras's `StatelessScope` defers their initialisation), which is all a parameter
count needs: 3-4x faster than a real build, and nothing is ever initialised. What the method does
to the model (`ModelFacts`) depends only on the model, the data's shape and the method's options,
so it is cached by those: epochs, batch size, schedules or staging never rebuild anything.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench import schedules
from workbench.config import TrainConfig
from workbench.peft import ParamReport

# Fields that change how a run trains but never the model, the method or a parameter count. A new
# TrainConfig field is not listed here, so it joins the cache key: the safe default.
RUN_ONLY = frozenset({
    "name", "tags", "seed", "epochs", "batch_size", "lr", "weight_decay", "optimizer", "hierarchical",
    "stage_epochs", "stage_steps", "lr_schedule", "discriminative", "plateau_factor", "plateau_patience",
    "min_lr", "warmup_frac", "val_fraction", "test_fraction", "limit_per_class", "max_rows", "augment",
    "mixed_precision", "jit_compile", "strategy", "export_model"})
_CACHE_SIZE = 64


@dataclass(frozen=True)
class ModelFacts:
    """What the method does to the model: counts per group and which groups have something to train."""

    report: ParamReport
    group_names: list[str]  # bottom to top, head last (after tying, the blocks left in the model)
    trainable_groups: list[str]  # the groups with at least one trainable variable, in that order
    plain_trainable: int | None  # with sharing on: what the unshared method would train (the saving)


@dataclass
class Preview:
    report: ParamReport
    split_sizes: dict[str, int]
    steps_per_epoch: int
    total_steps: int
    lr_curve: list[float]
    group_names: list[str]
    modality: str
    task: str
    num_classes: int | None
    plain_lora_trainable: int | None = None  # with sharing on: what plain LoRA would train (the saving)
    # The stage plan the trainer runs for `config.hierarchical` ("off": one stage of every trainable group).
    stages: list[list[str]] = field(default_factory=list)
    untrained_groups: list[str] = field(default_factory=list)  # nothing to train under the method: not a stage
    staging_no_effect: str | None = None  # why the chosen staging changes nothing (None: it changes something)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "report": self.report.to_dict()}


def preview(config: TrainConfig) -> Preview:
    """Describe the run: no training, no tokenization, no weight ever initialised."""
    from workbench.train.stages import plan_stages
    from workbench.train.trainer import load_data

    dataset, split = load_data(config)
    facts = model_facts(config, dataset, split)
    steps_per_epoch = math.ceil(len(split.y_train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    lr = config.resolved_lr(dataset.card.modality)
    options = {"warmup-cosine": {"warmup_frac": config.warmup_frac}}.get(config.lr_schedule, {})
    curve = schedules.schedule_curve(config.lr_schedule, base_lr=lr, total_steps=total, **options)
    plan = plan_stages(facts.group_names, facts.trainable_groups, config.hierarchical)
    return Preview(report=facts.report, split_sizes=split.sizes(), steps_per_epoch=steps_per_epoch, total_steps=total,
                   lr_curve=curve, group_names=list(facts.group_names), modality=dataset.card.modality,
                   task=dataset.card.task, num_classes=dataset.num_classes, plain_lora_trainable=facts.plain_trainable,
                   stages=plan.stages, untrained_groups=plan.skipped, staging_no_effect=plan.no_effect(config.method))


_FACTS: OrderedDict[str, ModelFacts] = OrderedDict()
_FACTS_LOCK = threading.Lock()


def model_facts(config: TrainConfig, dataset=None, split=None) -> ModelFacts:
    """The method applied to the model, cached by what can change it (`RUN_ONLY` fields excluded)."""
    key = json.dumps({k: v for k, v in config.to_dict().items() if k not in RUN_ONLY}, sort_keys=True, default=str)
    with _FACTS_LOCK:
        if key in _FACTS:
            _FACTS.move_to_end(key)
            return _FACTS[key]
    if dataset is None or split is None:
        from workbench.train.trainer import load_data

        dataset, split = load_data(config)
    facts = _build_facts(config, dataset, split)
    with _FACTS_LOCK:
        _FACTS[key] = facts
        while len(_FACTS) > _CACHE_SIZE:
            _FACTS.popitem(last=False)
    return facts


def _build_facts(config: TrainConfig, dataset, split) -> ModelFacts:
    from workbench.models import build_task_model
    from workbench.peft import apply_method
    from workbench.train.trainer import context, trainable_groups

    # Building and applying the method take the build lock themselves (see `models.base.BUILD_LOCK`);
    # `shapes_only` is per thread, so a run building meanwhile gets real weights.
    with shapes_only():
        task_model = build_task_model(config.model, context(dataset, split, config), dataset.card.modality)
        report = apply_method(task_model, config)
        trainable = list(trainable_groups(task_model))
        plain = _plain_trainable(task_model, config)
    return ModelFacts(report=report, group_names=task_model.group_names, trainable_groups=trainable,
                      plain_trainable=plain)


def _plain_trainable(task_model, config: TrainConfig) -> int | None:
    """With sharing on: what the same method would train unshared (head included), by its closed form."""
    from workbench.peft import get_method

    method = get_method(config.method)
    if config.share == "off" or method.count is None:
        return None
    head = sum(int(np.prod(v.shape)) for v in task_model.head_variables())
    return method.count(task_model, config.options, "off") + head


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """Variables created inside get a shape and no value (their initialisation is deferred, never run).

    Keras registers such variables in a per-thread list that a later `StatelessScope` exit would
    initialise; the list is restored on the way out, so the preview's throwaway variables never are.
    Falls back to a real build if this Keras has no such list (slower, same counts).
    """
    import keras

    try:
        from keras.src.backend.common import global_state
    except ImportError:  # pragma: no cover - a Keras without the private module: build for real
        yield
        return
    pending = list(global_state.get_global_attribute("uninitialized_variables") or [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


def staging_effects(model: str, **method_options: Any) -> dict[str, str | None]:
    """For each staging mode: why it would change nothing for `model` under the method (None: it stages).

    For the Train form, which offers the staging toggles before the data's details are known: which
    groups have something to train depends on the model and the method's options, not on the data, so
    a registered dataset of the model's modality stands in. Cached, so the form pays once per choice.
    """
    return dict(_staging_effects(model, json.dumps(method_options, sort_keys=True, default=str)))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _staging_effects(model: str, options_json: str) -> tuple[tuple[str, str | None], ...]:
    from workbench import data as wdata
    from workbench.config import HIERARCHICAL_MODES
    from workbench.models import get_model_card
    from workbench.train.stages import plan_stages

    options = json.loads(options_json)
    card = get_model_card(model)
    data = next(d.name for d in wdata.list_datasets() if d.modality == card.modality)
    config = TrainConfig.from_dict({"model": model, "data": data, "max_rows": 300, "batch_size": 8, **options})  # rows unused
    facts = model_facts(config)
    return tuple((mode, plan_stages(facts.group_names, facts.trainable_groups, mode).no_effect(config.method))
                 for mode in HIERARCHICAL_MODES if mode != "off")
