"""Default run names say what differs from the defaults, and two different configs never share one."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from workbench.config import TrainConfig
from workbench.peft import methods
from workbench.presets import presets

# Fields that do not change what trains (or name the run themselves).
NOT_NAMED = {"name", "tags", "export_model"}

# field -> (the settings that make it matter, a different valid value)
VARIATIONS: dict[str, tuple[dict, object]] = {
    "model": ({}, "minilm-l6"),
    "data": ({}, "imdb-small"),
    "text_column": ({"data": "my.csv", "label_column": "y"}, "review"),
    "feature_columns": ({"data": "my.csv", "label_column": "y"}, ["a", "b"]),
    "label_column": ({"data": "my.csv"}, "sentiment"),
    "task": ({"data": "my.csv"}, "regression"),
    "method": ({}, "full"),
    "share": ({"method": "lora"}, "vera"),
    "tie_layers": ({"method": "full"}, True),
    "hierarchical": ({}, "top-down"),
    "stage_epochs": ({"hierarchical": "bottom-up"}, 0.5),
    "stage_steps": ({"hierarchical": "bottom-up"}, 40),
    "lr_schedule": ({}, "stlr"),
    "discriminative": ({}, 2.6),
    "plateau_factor": ({"lr_schedule": "plateau"}, 0.3),
    "plateau_patience": ({"lr_schedule": "plateau"}, 2),
    "min_lr": ({"lr_schedule": "plateau"}, 1e-5),
    "warmup_frac": ({"lr_schedule": "warmup-cosine"}, 0.2),
    "epochs": ({}, 5),
    "batch_size": ({}, 16),
    "lr": ({}, 1e-3),
    "weight_decay": ({}, 0.0),
    "optimizer": ({}, "sgd"),
    "seed": ({}, 1),
    "early_stopping": ({}, 3),
    "early_stopping_metric": ({"early_stopping": 2}, "val/accuracy"),
    "restore_best": ({"early_stopping": 2}, False),
    "max_seq_len": ({}, 128),
    "val_fraction": ({}, 0.2),
    "test_fraction": ({}, 0.1),
    "limit_per_class": ({}, 10),
    "max_rows": ({}, 500),
    "augment": ({}, True),
    "from_scratch": ({}, True),
    "mixed_precision": ({}, "mixed_bfloat16"),
    "jit_compile": ({}, False),
    "strategy": ({}, "mirrored"),
    "prefix_cache": ({}, False),
    "length_buckets": ({}, False),
}


def _other_value(f: dataclasses.Field) -> object:
    """A valid value of a method option other than its default (from its metadata: a new method's
    options are covered without editing this file)."""
    meta = f.metadata
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if meta.get("widget") == "layers":
        return ["query"]  # a layer of the default model (tiny-bert)
    if isinstance(default, bool):
        return not default
    if meta.get("choices"):
        return next(c for c in meta["choices"] if c != default)
    if isinstance(meta.get("widget"), tuple):
        return next(v for v in meta["widget"] if v != default)
    if default is None:
        return meta["example"]  # (an option unset by default: its documented example, e.g. top_blocks 2)
    return default * 2 if isinstance(default, float) else default + 1


# "method:option" -> (the settings that make it matter, a different valid value), from the registry
OPTION_VARIATIONS = {f"{m.name}:{f.name}": ({"method": m.name}, _other_value(f))
                     for m in methods() for f in m.option_fields()}


def _values(context: dict, key: str, value: object) -> dict:
    return {**context, key.split(":")[-1]: value}


def test_every_training_field_has_a_variation() -> None:
    """A new TrainConfig field must be named (or listed as not training-relevant) to pass."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - NOT_NAMED - {"method_options"}
    assert fields == set(VARIATIONS)


@pytest.mark.parametrize("field", sorted({**VARIATIONS, **OPTION_VARIATIONS}))
def test_changing_any_field_changes_the_default_name(field: str) -> None:
    context, value = {**VARIATIONS, **OPTION_VARIATIONS}[field]
    base = TrainConfig.from_dict(context)
    changed = TrainConfig.from_dict(_values(context, field, value))
    assert base.display_name() != changed.display_name(), field


def relevant(config: TrainConfig) -> dict:
    """The settings the engine reads for this config (a LoRA run never reads `adapter_size`, ...)."""
    values = {k: v for k, v in config.to_dict().items() if k not in NOT_NAMED}  # options: the method's own
    if config.hierarchical == "off":
        values.pop("stage_epochs"), values.pop("stage_steps")
    if config.lr_schedule != "plateau":
        values.pop("plateau_factor"), values.pop("plateau_patience"), values.pop("min_lr")
    if config.lr_schedule != "warmup-cosine":
        values.pop("warmup_frac")
    if config.early_stopping is None:
        values.pop("early_stopping_metric"), values.pop("restore_best")
    return {k: repr(v) for k, v in values.items()}


def test_varied_configs_all_get_different_names() -> None:
    """Every single change, every pair of changes, on two models: no two names coincide."""
    every = {**VARIATIONS, **OPTION_VARIATIONS}
    singles = [(field, *every[field]) for field in sorted(every)]
    configs = {}
    for (f1, c1, v1), (f2, c2, v2) in itertools.combinations_with_replacement(singles, 2):
        values = _values(_values({**c1, **c2}, f1, v1), f2, v2)
        try:
            config = TrainConfig.from_dict(values)
        except ValueError:  # an invalid combination (e.g. share with method full): not a config
            continue
        configs[repr(sorted(relevant(config).items()))] = config
    assert len(configs) > 500
    names: dict[str, str] = {}
    for key, config in configs.items():
        name = config.display_name()
        assert name not in names, f"{name!r} names two configs:\n{names[name]}\n{key}"
        names[name] = key


def test_default_name_reads_like_the_settings() -> None:
    config = TrainConfig(share="tied", hierarchical="bottom-up", lr_schedule="plateau")
    assert config.display_name() == "lora r8 · tied · bottom-up · plateau · tiny-bert/sms-spam · s0"
    assert TrainConfig(model="mnist-cnn", data="digits", method="full").display_name() == "full · mnist-cnn/digits · s0"
    assert TrainConfig(data="uploads/ab12/datasets/reviews-0123456789ab.csv").display_name() == (
        "lora r8 · tiny-bert/reviews-0123456789ab · s0")
    assert TrainConfig.from_dict(dict(name="mine", rank=4)).display_name() == "mine"


def test_preset_runs_are_named_by_what_they_vary_plus_model_and_data() -> None:
    base = TrainConfig(model="mnist-cnn", data="digits", seed=2)
    names = {title: [c.name for c in make(base)] for title, make in presets().items()}
    assert names == {
        "LoRA vs full": ["lora · mnist-cnn/digits · s2", "full · mnist-cnn/digits · s2"],
        # mnist-cnn under LoRA: bottom-up would equal staging off, so the preset names that run so
        "bottom-up vs top-down": ["staging off · mnist-cnn/digits · s2", "top-down · mnist-cnn/digits · s2"],
        "plateau vs constant LR": ["plateau · mnist-cnn/digits · s2", "constant · mnist-cnn/digits · s2"],
        # its own seeds (0, 1, 2: a seed group per variant), whatever the form's seed
        "Forgetting: full vs LoRA vs staged": [f"{v} · mnist-cnn/digits · s{s}" for v in (
            "full", "lora", "full bottom-up", "full top-down", "full plateau") for s in (0, 1, 2)],
    }
    other = presets()["LoRA vs full"](TrainConfig(model="mnist-cnn", data="mnist-5k-unseen", seed=2))
    assert not {c.name for c in other} & set(names["LoRA vs full"])
