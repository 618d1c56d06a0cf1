"""`SweepSpec`: what a sweep varies, how it searches, and what it optimises, validated before any run.

Why a dataclass checked in `__post_init__` (as `TrainConfig` is): the CLI, the Train page and the
notebooks all build this one object, and a sweep that would fail on its 7th trial must be refused
before its 1st starts. Every trial's `TrainConfig` is built from `base` plus the trial's values, so
the trial a sweep runs is exactly a run someone could start by hand.

Names in `params` are TrainConfig fields (`lr`, `share`, `seed`, ...) or method options, written
`method_options.rank` or plainly `rank` when no TrainConfig field has that name. Engine-light: no Keras.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from workbench import fields, peft
from workbench.config import FIELD_NAMES, TrainConfig, example_value, override
from workbench.errors import ConfigError, received

SEARCHES = ("grid", "random")
DIRECTIONS = ("maximize", "minimize")
# Final metrics a trial can be judged on (`RunRecord.final_metrics`, written by `train.trainer.summarize`).
METRICS = ("val_accuracy", "val_loss", "best_val_loss", "val_mae", "test_accuracy", "test_loss", "test_mae",
           "train_loss")
LOWER_IS_BETTER = ("loss", "mae", "mse", "error")
NOT_SWEEPABLE = ("method_options", "name", "tags")  # the labels name trials; options are swept one by one
MAX_TRIALS = 500

# The settings worth sweeping, with one line each (the Train page's picker). Any other TrainConfig field
# or method option may be swept too; these are the ones that change what a run learns.
SWEEPABLE: dict[str, str] = {
    "lr": "learning rate (try a log range, e.g. 1e-4 to 1e-2)",
    "lr_schedule": "constant, plateau, warmup-cosine or stlr",
    "method": "the PEFT method (its options at their defaults unless swept too)",
    "method_options.rank": "LoRA/DoRA/LoRA+ rank r of the update B·A",
    "method_options.alpha": "LoRA/DoRA/LoRA+ scale α (the update is multiplied by α/r)",
    "method_options.adapter_size": "adapter bottleneck width",
    "method_options.lr_ratio": "LoRA+ λ: B trains at λ × A's learning rate",
    "method_options.prompt_length": "prompt tuning: soft-prompt vectors",
    "share": "parameter sharing: off, tied or vera",
    "hierarchical": "staged unfreezing: off, bottom-up or top-down",
    "stage_epochs": "hierarchical: epochs per stage",
    "discriminative": "per-group LR factor (ULMFiT: 2.6)",
    "seed": "random seed (replicates of each configuration)",
    "epochs": "training epochs",
    "batch_size": "examples per batch",
    "weight_decay": "AdamW weight decay",
    "optimizer": "adamw or sgd",
    "warmup_frac": "warmup-cosine: fraction of steps warming up",
    "plateau_factor": "plateau: multiply the LR by this",
    "augment": "data augmentation on or off",
    "limit_per_class": "few labels: training examples per class",
}


def _check(ok: bool, message: str, **values: object) -> None:
    if not ok:
        raise ConfigError(f"{message} {received(**values)}")


def resolve(name: object) -> str:
    """A param name as a TrainConfig key: a field name, or a method option's plain name."""
    _check(isinstance(name, str) and name != "", "A swept setting needs a name such as 'lr' or "
           "'method_options.rank'.", name=name)
    plain = name.removeprefix("method_options.")
    if name.startswith("method_options."):
        _check(plain in peft.option_owners(), f"{name!r} is not a method option: {_suggest(plain)}", name=name)
        return plain
    if name in FIELD_NAMES:
        _check(name not in NOT_SWEEPABLE, f"{name!r} cannot be swept: sweep a method option as "
               "'method_options.<option>'; name and tags label the trials.", name=name)
        return name
    _check(name in peft.option_owners(), f"Unknown setting {name!r}: {_suggest(name)}", name=name)
    return name


def kind_of(name: str) -> tuple[type, bool]:
    """(type, may be None) of a param (for reading CLI text and choosing int or float ranges)."""
    key = resolve(name)
    if key in FIELD_NAMES:
        return fields.kinds(TrainConfig)[key]
    return fields.kinds(peft.get_method(peft.option_owners()[key][0]).options)[key]


def _suggest(key: str) -> str:
    names = [n for n in (*FIELD_NAMES, *peft.option_owners()) if n not in NOT_SWEEPABLE]
    close = difflib.get_close_matches(key.replace("-", "_").lower(), names, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else "see SWEEPABLE or `workbench train --help` for the settings."


def default_direction(metric: str) -> str:
    """Losses and errors go down, accuracies up."""
    return "minimize" if any(word in metric for word in LOWER_IS_BETTER) else "maximize"


def epoch_key(metric: str) -> str | None:
    """The per-epoch store key whose rows track `metric` while a trial trains (halving reads it)."""
    if metric == "best_val_loss":
        return "val/loss"
    for prefix in ("val_", "test_"):  # test metrics exist only at the end: validation is their proxy
        if metric.startswith(prefix):
            return "val/" + metric[len(prefix):]
    return None


def is_range(values: object) -> bool:
    return isinstance(values, dict)


@dataclass
class SweepSpec:
    """A sweep: `base` (a TrainConfig dict) with `params` varied, `budget` runs, judged on `metric`."""

    base: dict[str, Any]
    params: dict[str, Any]
    search: str = "grid"
    budget: int | None = None
    metric: str = "val_accuracy"
    direction: str | None = None
    halving: bool = False
    parallel: int | None = None
    seed: int = 0
    name: str | None = None
    _keys: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.base, TrainConfig):
            self.base = self.base.to_dict()
        _check(isinstance(self.base, dict), "base must be a TrainConfig dict (TrainConfig.to_dict()).",
               base=self.base)
        self.base = TrainConfig.from_dict(self.base).to_dict()  # a bad base is refused here, once
        _check(isinstance(self.params, dict) and len(self.params) > 0, "params must name at least one setting "
               "to sweep, e.g. {'lr': [1e-3, 1e-2]}.", params=self.params)
        _check(self.search in SEARCHES, f"search must be one of {', '.join(SEARCHES)}.", search=self.search)
        self._keys = {name: resolve(name) for name in self.params}
        keys = list(self._keys.values())
        twice = sorted({k for k in keys if keys.count(k) > 1})
        _check(not twice, "Each setting may be swept once: drop one of its two names.", setting=twice[:1])
        for name, values in self.params.items():
            self._check_values(name, values)
        _check(self.metric in METRICS, f"metric must be a final metric: one of {', '.join(METRICS)}.",
               metric=self.metric)
        _check(self.direction in (None, *DIRECTIONS), "direction must be 'maximize', 'minimize' or unset "
               "(inferred from the metric).", direction=self.direction)
        _check(isinstance(self.halving, bool), "halving must be true or false.", halving=self.halving)
        if self.halving:
            _check(epoch_key(self.metric) is not None, "halving judges trials per epoch: pick a val_ or test_ "
                   "metric, or turn halving off.", metric=self.metric)
        _check(self.parallel is None or (_whole(self.parallel) and self.parallel >= 1),
               "parallel must be a whole number >= 1 (trials at once), or unset.", parallel=self.parallel)
        _check(_whole(self.seed) and self.seed >= 0, "seed (the sampler's) must be a whole number >= 0.",
               seed=self.seed)
        if self.name is not None:
            _check(isinstance(self.name, str) and 0 < len(self.name) <= 60 and self.name.isprintable(),
                   "name must be 1-60 printable characters.", name=self.name)
        self._check_budget()

    def _check_values(self, name: str, values: object) -> None:
        kind, optional = kind_of(name)
        if is_range(values):
            _check(self.search == "random", f"{name} has a range: ranges need search='random' (a grid needs "
                   "a list of values).", **{name: values})
            _check(set(values) <= {"low", "high", "log"} and {"low", "high"} <= set(values),
                   f"A range is {{'low': ..., 'high': ..., 'log': false}}: give low and high for {name}.",
                   **{name: values})
            low, high, log = values["low"], values["high"], values.get("log", False)
            _check(kind in (int, float), f"{name} is not a number: give a list of values instead of a range.",
                   **{name: values})
            _check(all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                       for v in (low, high)) and low < high, f"{name}'s range needs numbers low < high.",
                   **{name: values})
            _check(isinstance(log, bool) and (not log or low > 0), f"{name}'s log range needs low > 0 (and log "
                   "true or false).", **{name: values})
            if kind is int:
                _check(float(low).is_integer() and float(high).is_integer(), f"{name} is a whole number: give "
                       "whole low and high.", **{name: values})
            return
        _check(isinstance(values, list | tuple) and len(values) > 0, f"Give {name} a non-empty list of values "
               f"(or a range {{'low':, 'high':}} with search='random').", **{name: values})
        _check(all(v is None or isinstance(v, bool | int | float | str) for v in values),
               f"{name}'s values must be single numbers, words, true/false or None (lists cannot be swept).",
               **{name: values})
        _check(len(set(map(repr, values))) == len(values), f"{name} lists a value twice: give each once.",
               **{name: list(values)})
        for value in values:  # each value on its own (combinations are checked by `trial_configs`)
            if not (value is None and optional):
                fields.coerce(name, kind, optional, value, example_value(self.key(name)))

    def _check_budget(self) -> None:
        if self.search == "random":
            _check(self.budget is not None, "A random search needs a budget: how many runs, e.g. budget=8.",
                   budget=self.budget)
        if self.budget is not None:
            _check(_whole(self.budget) and 1 <= self.budget <= MAX_TRIALS, f"budget must be a whole number "
                   f"between 1 and {MAX_TRIALS} (runs).", budget=self.budget)
        if self.search == "grid":
            size = self.grid_size()
            _check(size <= MAX_TRIALS, f"The grid has {size} points, more than {MAX_TRIALS}: give fewer values "
                   "or use search='random' with a budget.", grid_size=size)
            self.budget = size if self.budget is None else min(self.budget, size)

    # -- derived ----------------------------------------------------------------------------
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.params.values() if not is_range(v))

    def resolved_direction(self) -> str:
        return self.direction or default_direction(self.metric)

    def kind(self, name: str) -> type:
        """The type of a swept setting (int, float, str, bool)."""
        return kind_of(name)[0]

    def key(self, name: str) -> str:
        """The TrainConfig key a param name stands for ('method_options.rank' → 'rank')."""
        return self._keys[name]

    def trial_config(self, values: dict[str, Any], sweep_id: str | None = None, trial: int | None = None,
                     ) -> TrainConfig:
        """`base` with a trial's values; with a sweep id, named and tagged as that sweep's trial."""
        changes = {self.key(name): value for name, value in values.items()}
        config = override(self.base, changes)
        if sweep_id is not None:
            tags = [t for t in config.get("tags") or [] if not t.startswith(("sweep:", "trial:"))]
            config["tags"] = [*tags, f"sweep:{sweep_id}", f"trial:{trial}"]
            config["name"] = trial_name(self.name or sweep_id, trial, values)
        try:
            return TrainConfig.from_dict(config)
        except ConfigError as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise ConfigError(f"The sweep's trial with {shown} cannot run: {exc}") from None

    def trial_configs(self) -> list[tuple[dict[str, Any], TrainConfig]]:
        """(values, config) of every trial, in the order the sweep starts them (the same sampler, seeded).
        Building each config is the up-front check: a combination no run accepts is refused here."""
        from workbench.sweeps.search import plan

        return [(values, self.trial_config(values)) for values in plan(self)]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SweepSpec:
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(values) - known)
        _check(not unknown, f"Unknown sweep option: use {', '.join(sorted(known))}.", option=unknown[:1])
        return cls(**values)


def trial_name(label: str, trial: int | None, values: dict[str, Any]) -> str:
    """'lr-grid #3 · lr=0.01 rank=8': the sweep and what this trial varies, within a run name's 80 characters."""
    shown = " ".join(f"{name.removeprefix('method_options.')}={_short(v)}" for name, v in values.items())
    return f"{label} #{trial} · {shown}"[:80].rstrip()


def _short(value: Any) -> str:
    return fields.short_number(value) if isinstance(value, float) else str(value)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
