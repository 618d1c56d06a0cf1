"""`TrainConfig`: every choice of a run in one validated dataclass.

The CLI flags, the TOML config file, the app's widgets and the notebooks all build this one object,
so a run started anywhere can be repeated anywhere: the run store keeps `to_dict()` as JSON.
Validation happens in `__post_init__` so a bad value never reaches a training thread.

Run-level settings are fields here; the PEFT method's own options live in `method_options`, validated
by the method's options dataclass (`workbench.peft`): TOML `[train.method_options]`, or the flat keys
of earlier versions (`rank = 4` beside `method = "lora"`), which still load.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import fields, peft
from workbench.errors import ConfigError, received
from workbench.fields import finite as _finite
from workbench.fields import short_number as _num
from workbench.schedules import SCHEDULE_NAMES

PRECISIONS = ("off", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adamw", "sgd")
STRATEGIES = ("default", "mirrored", "multiworker")
# Staged unfreezing (the second principle), each mode with what it does (the Train form's caption).
HIERARCHICAL_MODES = {
    "off": "every trainable weight trains from the first step",
    "bottom-up": "source document: start with the lowest group (+ head), unfreeze upward stage by stage",
    "top-down": "ULMFiT: start with the head only, unfreeze one group downward per stage",
}
LR_SCHEDULES = SCHEDULE_NAMES  # defined with the schedules themselves
EARLY_STOPPING_METRICS = ("val/loss", "val/accuracy", "val/mae")  # lower is better except accuracy
MAX_SEED = 2**32 - 1  # NumPy's and Keras's `set_random_seed` take seeds in [0, 2**32)


def _check(ok: bool, message: str, **values: object) -> None:
    if not ok:
        raise ConfigError(f"{message} {received(**values)}")


@dataclass
class TrainConfig:
    """What to train, on what, how. Defaults give a one-minute classroom run."""

    # 1. What: a registered model name or a .keras file; a registered dataset or a .csv file.
    model: str = "tiny-bert"
    data: str = "sms-spam"
    text_column: str | None = None
    feature_columns: list[str] | None = None
    label_column: str | None = None
    task: str | None = None  # classification | regression (CSV only; inferred when None)
    # 2. How: the PEFT method, its own options, and parameter sharing (the first principle).
    method: str = field(default_factory=lambda: peft.method_with_role("default").name)  # the registry's default
    method_options: dict[str, Any] = field(default_factory=dict)  # the method's options (defaults filled in)
    share: str = "off"  # sharing across layers: the modes the method offers (lora: tied, vera; adapter: tied)
    tie_layers: bool = False  # ALBERT-style: one transformer block's weights at every depth (BERT models)
    # 3. Hierarchical fine-tuning and learning-rate adaptation.
    hierarchical: str = "off"
    stage_epochs: float | None = None
    stage_steps: int | None = None
    lr_schedule: str = "constant"
    discriminative: float | None = None
    plateau_factor: float = 0.5
    plateau_patience: int = 1
    min_lr: float = 1e-6
    warmup_frac: float = 0.1
    # 4. Optimisation.
    epochs: int = 3
    batch_size: int = 32
    lr: float | None = None  # None: the method's default (see `default_lr`)
    weight_decay: float = 0.01
    optimizer: str = "adamw"  # adamw | sgd (plain θ ← θ − α∇L, the source document's update rule)
    seed: int = 0
    # Early stopping on a validation metric: end after `early_stopping` epochs without improvement.
    early_stopping: int | None = None  # patience in epochs (None: off)
    early_stopping_metric: str = "val/loss"  # val/loss, val/accuracy (classification) or val/mae (regression)
    restore_best: bool = True  # on early stopping, put back the weights of the best epoch
    # 5. Data handling.
    max_seq_len: int = 64
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    limit_per_class: int | None = None
    max_rows: int | None = None
    augment: bool = False
    # 6. Engine.
    from_scratch: bool = False
    mixed_precision: str = "off"
    jit_compile: bool | str = "auto"
    strategy: str = "default"  # default | mirrored (all local GPUs/devices) | multiworker (TF_CONFIG)
    export_model: bool = True
    # Work the engine skips (`train.prefix_cache`, `train.feed`): results as without, within dropout's effect.
    prefix_cache: bool = True  # frozen lowest groups run once per example (inference mode), not every step
    length_buckets: bool = True  # text: batches of rows of similar length, each trimmed to its longest
    name: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_types(self)
        method = peft.get_method(self.method)
        _check(isinstance(self.method_options, dict), "method_options must be a table of the method's options, "
               "e.g. {'rank': 4}.", method_options=self.method_options)
        self._options = method.make_options(self.method_options)
        self.method_options = dataclasses.asdict(self._options)
        for key in ("model", "data"):
            value = getattr(self, key)
            _check(isinstance(value, str) and value.strip() != "", f"`{key}` must name a registered {key} or a file.", **{key: value})
        _check(isinstance(self.epochs, int) and self.epochs >= 1, "epochs must be an integer >= 1.", epochs=self.epochs)
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size must be an integer >= 1.", batch_size=self.batch_size)
        if self.lr is not None:
            _check(_finite(self.lr) and self.lr > 0, "lr must be a positive finite number, e.g. 1e-3.", lr=self.lr)
        _check(_finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay must be >= 0.", weight_decay=self.weight_decay)
        _check(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}.", optimizer=self.optimizer)
        if self.early_stopping is not None:
            _check(self.early_stopping >= 1, "early_stopping is the patience in epochs: an integer >= 1 (or unset).",
                   early_stopping=self.early_stopping)
        _check(self.early_stopping_metric in EARLY_STOPPING_METRICS, "early_stopping_metric must be one of "
               f"{', '.join(EARLY_STOPPING_METRICS)}.", early_stopping_metric=self.early_stopping_metric)
        _check(0 <= self.seed <= MAX_SEED, f"seed must be between 0 and {MAX_SEED} (2**32 - 1, NumPy's range).",
               seed=self.seed)
        _check(isinstance(self.max_seq_len, int) and 8 <= self.max_seq_len <= 512, "max_seq_len must be between 8 and 512.", max_seq_len=self.max_seq_len)
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            _check(_finite(value) and 0 < value < 0.5, f"{key} must be between 0 and 0.5.", **{key: value})
        for key in ("limit_per_class", "max_rows"):
            value = getattr(self, key)
            if value is not None:
                _check(isinstance(value, int) and value >= 1, f"{key} must be a positive integer or unset.", **{key: value})
        _check(self.mixed_precision in PRECISIONS, f"mixed_precision must be one of {', '.join(PRECISIONS)}.", mixed_precision=self.mixed_precision)
        _check(self.jit_compile in (True, False, "auto"), "jit_compile must be true, false or 'auto'.", jit_compile=self.jit_compile)
        _check(self.strategy in STRATEGIES, f"strategy must be one of {', '.join(STRATEGIES)}.", strategy=self.strategy)
        _check(self.task in (None, "classification", "regression"), "task must be 'classification' or 'regression'.", task=self.task)
        modes = peft.share_modes()
        _check(self.share in modes, f"share must be one of {', '.join(modes)}.", share=self.share)
        _check(self.hierarchical in HIERARCHICAL_MODES, f"hierarchical must be one of {', '.join(HIERARCHICAL_MODES)}.", hierarchical=self.hierarchical)
        _check(self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}.", lr_schedule=self.lr_schedule)
        if self.discriminative is not None:
            _check(_finite(self.discriminative) and self.discriminative >= 1, "discriminative factor must be >= 1 (ULMFiT uses 2.6).", discriminative=self.discriminative)
        _check(_finite(self.plateau_factor) and 0 < self.plateau_factor < 1, "plateau_factor must be between 0 and 1.", plateau_factor=self.plateau_factor)
        _check(isinstance(self.plateau_patience, int) and self.plateau_patience >= 1, "plateau_patience must be an integer >= 1.", plateau_patience=self.plateau_patience)
        _check(_finite(self.min_lr) and self.min_lr >= 0, "min_lr must be >= 0.", min_lr=self.min_lr)
        _check(_finite(self.warmup_frac) and 0 <= self.warmup_frac < 1, "warmup_frac must be in [0, 1).", warmup_frac=self.warmup_frac)
        if self.stage_epochs is not None:
            _check(_finite(self.stage_epochs) and self.stage_epochs > 0, "stage_epochs must be > 0.", stage_epochs=self.stage_epochs)
        if self.stage_steps is not None:
            _check(isinstance(self.stage_steps, int) and self.stage_steps >= 1, "stage_steps must be an integer >= 1.", stage_steps=self.stage_steps)
        _check(not (self.stage_epochs and self.stage_steps), "Give stage_epochs or stage_steps, not both.",
               stage_epochs=self.stage_epochs, stage_steps=self.stage_steps)
        if self.name is not None:
            _check(isinstance(self.name, str) and 0 < len(self.name) <= 80 and self.name.isprintable(),
                   "name must be 1-80 printable characters.", name=self.name)
        self._check_combinations()

    @property
    def options(self) -> Any:
        """The method's validated options object (e.g. `LoraOptions(rank=8, alpha=16.0, …)`)."""
        return self._options

    def _check_combinations(self) -> None:
        """Each principle toggle against what the method says it can do (its `Capabilities`)."""
        def able(test) -> str:
            return ", ".join(m.name for m in peft.methods() if test(m))

        caps = peft.get_method(self.method).capabilities
        if self.tie_layers:
            _check(caps.tie_layers, f"tie_layers shares the blocks that train: use it with "
                   f"{able(lambda m: m.capabilities.tie_layers)}, or turn it off.", tie_layers=self.tie_layers,
                   method=self.method)
        if self.share != "off":
            _check(self.share in caps.share_modes, f"share={self.share!r} works with method "
                   f"{able(lambda m: self.share in m.capabilities.share_modes)} only: set share='off' or pick "
                   "one of those methods.", share=self.share, method=self.method)
        if self.hierarchical != "off":
            _check(caps.stageable, f"hierarchical fine-tuning works with {able(lambda m: m.capabilities.stageable)}.",
                   hierarchical=self.hierarchical, method=self.method)
        if self.discriminative is not None:
            _check(caps.stageable, "discriminative learning rates need more than one trainable group: pick one of "
                   f"{able(lambda m: m.capabilities.stageable)}.", discriminative=self.discriminative,
                   method=self.method)

    def switch_method(self, method: str, **changes: Any) -> TrainConfig:
        """The same run with another method (at that method's default options unless given)."""
        return dataclasses.replace(self, method=method, method_options=changes.pop("method_options", {}), **changes)

    # -- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a plain mapping (stored runs, TOML, flags); unknown keys are refused with a suggestion.

        Method options may also come flat, as earlier versions stored them (`rank` beside `method`): the
        chosen method's go into `method_options`; another method's are dropped when at that method's
        default (every stored run has them) and refused otherwise, since they would change nothing.
        """
        if not isinstance(values, dict):
            raise ConfigError(f"A config must be a table of options such as {{'epochs': 3}}. "
                              f"{received(config=values)}")
        for key in values:
            if key not in FIELD_NAMES and key not in peft.option_owners():
                raise ConfigError(f"Unknown config key {key!r}: {_suggest(key)}. {received(key=key)}")
        run = {k: v for k, v in values.items() if k in FIELD_NAMES and (v is not None or k == "lr")}
        flat = {k: v for k, v in values.items() if k not in FIELD_NAMES and v is not None}
        if flat:
            run["method_options"] = peft.fold_flat(str(run.get("method", _default_method())), flat, run.get("method_options"))
        try:
            return cls(**run)
        except TypeError as exc:  # wrong types that dataclasses itself rejects
            raise ConfigError(f"Invalid config: {exc}.") from None

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a TOML file (flat keys or a [train] table); `overrides` (CLI flags) win.

        Why strict about the layout: a key beside the [train] table, or a misspelt one, used to be
        dropped without a word, so the run silently trained with a default the user meant to change.
        """
        path = Path(path)
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "not found"
            raise ConfigError(f"Config file {what}: check the path. {received(config=str(path))}")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Config file is not valid TOML ({exc}): fix the line it names. {received(config=str(path))}") from None
        except OSError as exc:
            raise ConfigError(f"Config file cannot be read ({exc.strerror}): check its permissions. "
                              f"{received(config=str(path))}") from None
        if "train" in data:
            if not isinstance(data["train"], dict):
                raise ConfigError(f"`train` must be a table: write the options under a [train] line. "
                                  f"{received(train=data['train'])}")
            outside = sorted(k for k in data if k != "train")
            if outside:
                key = outside[0]
                problem = "would be ignored: move it under [train]" if key in FIELD_NAMES else (
                    f"is not an option either ({_suggest(key)}): fix the name and put it under [train]")
                raise ConfigError(f"Config key {key!r} is outside the [train] table and {problem}. {received(key=key)}")
            data = dict(data["train"])
        return cls.from_dict(override(data, {k: v for k, v in overrides.items() if v is not None}))

    def resolved_lr(self, modality: str | None = None) -> float:
        """The learning rate that will run: the explicit one, else the method's default."""
        if self.lr is not None:
            return float(self.lr)
        return default_lr(self.method, modality)

    def display_name(self) -> str:
        """The run's name: the explicit one, else what sets it apart from the method's defaults.

        Why built from the differences: a class compares runs by name, and "lora · tiny-bert" for two
        different configs hides what was varied. Every training-relevant field that differs from its
        default adds one token, each token names its field, so two configs that train differently
        never share a default name (tests/test_names.py checks every field).
        e.g. "lora r8 · tied · bottom-up · plateau · tiny-bert/sms-spam · s0".
        """
        return self.name or " · ".join(self.name_parts())

    def name_parts(self) -> list[str]:
        """The tokens of `display_name`: method, then each non-default setting, model/data, seed."""
        base = {f.name: f.default for f in dataclasses.fields(self) if f.default is not dataclasses.MISSING}
        differs = lambda key: getattr(self, key) != base[key]  # noqa: E731
        parts = [" ".join([self.method, *peft.option_tokens(self.method, self.method_options)])]
        if self.share != "off":
            parts.append(self.share)
        if self.tie_layers:
            parts.append("tied blocks")
        if self.hierarchical != "off":
            stage = (f" {_num(self.stage_epochs)} ep/stage" if self.stage_epochs else
                     f" {self.stage_steps} steps/stage" if self.stage_steps else "")
            parts.append(self.hierarchical + stage)
        parts += self._schedule_parts(differs)
        if self.discriminative is not None:
            parts.append(f"discr ×{_num(self.discriminative)}")
        if self.early_stopping is not None:
            on = f" on {self.early_stopping_metric}" if differs("early_stopping_metric") else ""
            parts.append(f"early stop {self.early_stopping}{on}" + ("" if self.restore_best else " keep last"))
        parts += [text for key, text in self._plain_parts() if differs(key)]
        parts += [self.subject(), f"s{self.seed}"]
        return parts

    def subject(self) -> str:
        """Model and data, compactly: 'tiny-bert/sms-spam' (file paths by their stem)."""
        return f"{Path(self.model).stem}/{Path(self.data).stem}"

    def _schedule_parts(self, differs: Any) -> list[str]:
        if self.lr_schedule == "constant":
            return []
        options = {"plateau": [("plateau_factor", f"×{_num(self.plateau_factor)}"),
                               ("plateau_patience", f"patience {self.plateau_patience}"),
                               ("min_lr", f"min {_num(self.min_lr)}")],
                   "warmup-cosine": [("warmup_frac", f"warmup {_num(self.warmup_frac)}")]}
        extra = [text for key, text in options.get(self.lr_schedule, []) if differs(key)]
        return [" ".join([self.lr_schedule, *extra])]

    def _plain_parts(self) -> list[tuple[str, str]]:
        """(field, token) for the settings that read the same whatever the method."""
        lr = "lr default" if self.lr is None else f"lr {_num(self.lr)}"
        return [
            ("text_column", f"text={self.text_column}"), ("label_column", f"label={self.label_column}"),
            ("feature_columns", "x=" + "+".join(self.feature_columns or [])), ("task", str(self.task)),
            ("epochs", f"{self.epochs} ep"), ("batch_size", f"bs{self.batch_size}"), ("lr", lr),
            ("weight_decay", f"wd {_num(self.weight_decay)}"), ("optimizer", self.optimizer),
            ("max_seq_len", f"{self.max_seq_len} tok"), ("val_fraction", f"val {_num(self.val_fraction)}"),
            ("test_fraction", f"test {_num(self.test_fraction)}"),
            ("limit_per_class", f"{self.limit_per_class}/class"), ("max_rows", f"{self.max_rows} rows"),
            ("augment", "augmented"), ("from_scratch", "random init"),
            ("mixed_precision", self.mixed_precision), ("jit_compile", f"jit {self.jit_compile}"),
            ("strategy", self.strategy), ("prefix_cache", "no prefix cache"), ("length_buckets", "no length buckets"),
        ]


def default_lr(method: str, modality: str | None = None) -> float:
    """The method's own default (full fine-tuning of a pretrained transformer needs a small LR, the small
    PEFT parameter sets a larger one)."""
    return peft.get_method(method).default_lr(modality)


def override(values: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`values` (a stored or TOML config) with `changes` (flags) winning, method options included.

    A flag naming another method starts from that method's defaults; a flag that is a method option
    replaces the option wherever `values` had it (flat, or in `method_options`).
    """
    out = dict(values)
    if "method" in changes and changes["method"] != out.get("method", _default_method()):
        out.pop("method_options", None)
        out = {k: v for k, v in out.items() if k not in peft.option_owners()}
    nested = dict(out.get("method_options") or {})
    for key, value in changes.items():
        if key in peft.option_owners() and key not in FIELD_NAMES:
            out.pop(key, None)
            nested[key] = value
        else:
            out[key] = value
    if nested:
        out["method_options"] = nested
    return out


def _default_method() -> str:
    return peft.method_with_role("default").name


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))


def _suggest(key: str) -> str:
    """'did you mean …' for a misspelt option (dashes read as underscores), else where to look."""
    guess = str(key).replace("-", "_").lower()
    close = difflib.get_close_matches(guess, [*FIELD_NAMES, *peft.option_owners()], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else "see `workbench train --help` for the options"


def _check_types(config: TrainConfig) -> None:
    """Each run-level field's type, strictly, before any range check (see `workbench.fields`)."""
    for name, (kind, optional) in fields.kinds(TrainConfig).items():
        value = getattr(config, name)
        if name == "jit_compile":
            _check(isinstance(value, bool) or value == "auto", "jit_compile must be true, false or 'auto'.",
                   jit_compile=value)
        elif kind is not dict:
            setattr(config, name, fields.coerce(name, kind, optional, value, example_value(name)))


def example_value(name: str) -> object:
    """A value to show in "give e.g. …" for an option (its default, or a typical one when that is None)."""
    if name not in FIELD_NAMES:  # a method's option
        method = peft.get_method(peft.option_owners()[name][0])
        return next(f.metadata.get("example") for f in method.option_fields() if f.name == name)
    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)
    return {"stage_steps": 50, "limit_per_class": 10, "max_rows": 1000, "stage_epochs": 1, "lr": 0.001,
            "discriminative": 2.6}.get(name, default)
