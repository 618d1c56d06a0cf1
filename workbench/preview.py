"""What a run will do, before it starts: parameter report, split sizes, steps and the LR schedule.

The Train page and the notebooks show this next to the Start button, so a student sees how many
parameters LoRA saves and which learning-rate curve will run, without training anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench import schedules
from workbench.config import TrainConfig
from workbench.peft import ParamReport


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

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "report": self.report.to_dict()}


def preview(config: TrainConfig) -> Preview:
    """Build the task model (no training, no tokenization) and describe the run."""
    import keras

    from workbench.models import build_task_model
    from workbench.models.registry import BUILD_LOCK
    from workbench.peft import apply_method
    from workbench.train.trainer import context, load_data

    dataset, split = load_data(config)
    with BUILD_LOCK:
        keras.utils.set_random_seed(config.seed)
        task_model = build_task_model(config.model, context(dataset, split, config), dataset.card.modality)
        report = apply_method(task_model, config)
    steps_per_epoch = math.ceil(len(split.y_train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    lr = config.resolved_lr(dataset.card.modality)
    options = {"warmup-cosine": {"warmup_frac": config.warmup_frac}}.get(config.lr_schedule, {})
    curve = schedules.schedule_curve(config.lr_schedule, base_lr=lr, total_steps=total, **options)
    plain = None
    if config.share != "off" and config.method == "lora":
        from workbench.peft.lora import lora_param_count

        head = sum(int(np.prod(v.shape)) for v in task_model.head_variables())
        plain = lora_param_count(task_model, config.rank, config.lora_targets) + head
    elif config.share != "off" and config.method == "adapter":
        from workbench.peft.adapter import adapter_param_count

        head = sum(int(np.prod(v.shape)) for v in task_model.head_variables())
        plain = adapter_param_count(task_model, config.adapter_size) + head
    return Preview(report=report, split_sizes=split.sizes(), steps_per_epoch=steps_per_epoch, total_steps=total,
                   lr_curve=curve, group_names=task_model.group_names, modality=dataset.card.modality,
                   task=dataset.card.task, num_classes=dataset.num_classes, plain_lora_trainable=plain)
