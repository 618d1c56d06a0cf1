"""Preflight: everything about a run that can be refused before it is queued.

Why a step of its own: `RunManager.start` calls `preflight` synchronously, so a `WorkbenchError`
raised here reaches the CLI as one line and exit code 2 (the app: one `st.error`), instead of a run
recorded as failed, seconds later, in a training thread. Cheap checks come first (the environment,
the model path, the model card); the model is built and the method applied on trial only when the
config asks something the card cannot answer (a misfit, staged unfreezing, tied blocks, a method
option changed from its default, a model file): building tiny-bert costs ~0.8 s, MiniLM ~1.3 s.

Heavy imports (Keras, the trainer) stay inside the functions: `workbench.train.trainer` re-exports
`preflight` from here, and importing this module must not import TensorFlow.
"""

from __future__ import annotations

import difflib
import json
import os
from typing import Any

from workbench.config import TrainConfig
from workbench.errors import ConfigError, received
from workbench.peft import get_method

# Method options at non-default values only a built model can judge (a rank above a layer's width,
# targets the model lacks, sharing between layers of different shapes): they get a trial build.
# Defaults fit every built-in model (tests/test_preflight.py applies each method to tiny-bert,
# mnist-cnn and mlp), so a default run skips it.


def preflight(config: TrainConfig) -> None:
    """Everything that can be checked before queueing: environment, model, data, method. Raises WorkbenchError."""
    from workbench.models.registry import check_model_path, get_model_card, is_model_file
    from workbench.train.trainer import load_data

    check_environment(config)
    own_file, card = is_model_file(config.model), None
    if own_file:
        check_model_path(config.model)
        if config.tie_layers:
            raise ConfigError(f"tie_layers ties the blocks of the built-in transformers (tiny-bert, minilm-l6): "
                              f"turn it off for your own model. {received(model=config.model)}")
    else:
        card = get_model_card(config.model)
        check = get_method(config.method).check
        if check is not None:
            check(card, config)
    dataset, split = load_data(config)
    check_early_stopping(config, dataset.card.task)
    if card is None or card.modality != dataset.card.modality or _needs_trial(config):
        trial_build(config, dataset, split)


def check_early_stopping(config: TrainConfig, task: str) -> None:
    """The early-stopping metric must be one this task records (else it would never stop the run)."""
    recorded = "val/accuracy" if task == "classification" else "val/mae"
    if config.early_stopping is not None and config.early_stopping_metric not in ("val/loss", recorded):
        raise ConfigError(f"A {task} run records val/loss and {recorded}, not {config.early_stopping_metric}: "
                          f"stop early on one of those. {received(early_stopping_metric=config.early_stopping_metric)}")


def _needs_trial(config: TrainConfig) -> bool:
    defaults = get_method(config.method).make_options()
    return config.options != defaults or config.share != "off" or config.hierarchical != "off" or config.tie_layers


def trial_build(config: TrainConfig, dataset: Any, split: Any) -> None:
    """Build the task model and apply the method as the run will: their refusals surface now."""
    from workbench.models import build_task_model
    from workbench.peft import apply_method
    from workbench.train.stages import plan_stages, stage_length
    from workbench.train.trainer import context, trainable_groups

    task_model = build_task_model(config.model, context(dataset, split, config), dataset.card.modality)
    for f in get_method(config.method).option_fields():
        if f.metadata.get("widget") == "layers" and getattr(config.options, f.name) is not None:
            check_layer_names(task_model, f.name, getattr(config.options, f.name))
    apply_method(task_model, config)
    steps_per_epoch = -(-len(split.y_train) // config.batch_size)
    plan = plan_stages(task_model.group_names, trainable_groups(task_model), config.hierarchical).stages
    stage_length(config, len(plan), steps_per_epoch, steps_per_epoch * config.epochs)


def check_environment(config: TrainConfig) -> None:
    """The tf.distribute strategy needs the TensorFlow backend, and multiworker a readable TF_CONFIG.

    Checked here rather than in `TrainConfig`: the environment is the one the run starts in, and a
    config file must stay valid on the cluster it was written for.
    """
    if config.strategy == "default":
        return
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ConfigError(f"tf.distribute strategies need the TensorFlow backend; on JAX use --strategy default. "
                          f"{received(strategy=config.strategy, backend=keras.backend.backend())}")
    if config.strategy != "multiworker":
        return
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        raise ConfigError(f"--strategy multiworker needs TF_CONFIG describing the cluster (see README, 'Scale out'): "
                          f"set it on every worker, or use --strategy mirrored for this machine's devices. "
                          f"{received(strategy=config.strategy)}")
    try:
        cluster = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc}): fix the variable (see README, 'Scale out'). "
                          f"{received(TF_CONFIG=raw[:80])}") from None
    if not isinstance(cluster, dict) or not isinstance(cluster.get("cluster"), dict):
        raise ConfigError(f"TF_CONFIG needs a 'cluster' table of worker addresses: fix the variable (see README, "
                          f"'Scale out'). {received(TF_CONFIG=raw[:80])}")


def adaptable_layers(task_model: Any) -> list[str]:
    """Names of the layers LoRA can adapt (kernels of Dense, EinsumDense, Conv): not the head, not a
    sub-model, not a layer whose output the task ignores (BERT's unused pooler, `never_trainable`)."""
    import keras

    head = {id(layer) for layer in task_model.groups.get("head", [])}
    unused = {id(v) for v in task_model.never_trainable}
    return sorted({layer.name for layer in task_model.all_layers()
                   if hasattr(layer, "enable_lora") and hasattr(layer, "kernel") and not isinstance(layer, keras.Model)
                   and id(layer) not in head and id(layer.kernel) not in unused})


def check_layer_names(task_model: Any, option: str, targets: list[str]) -> None:
    """Every named target layer must be adaptable: a typo must not silently adapt fewer layers."""
    names = adaptable_layers(task_model)
    unknown = [t for t in targets if t not in names]
    if not unknown:
        return
    if not names:
        raise ConfigError(f"{task_model.card.name} has no layer to adapt: pick another method. "
                          f"{received(**{option: targets})}")
    close = difflib.get_close_matches(unknown[0], names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"Target {unknown[0]!r} is not a layer of {task_model.card.name}{hint}: use some of "
                      f"{', '.join(names)}. {received(**{option: targets})}")
