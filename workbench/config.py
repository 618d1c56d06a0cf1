"""`TrainConfig`: every choice of a run in one validated dataclass.

The CLI flags, the TOML config file, the app's widgets and the notebooks all build this one object,
so a run started anywhere can be repeated anywhere: the run store keeps `to_dict()` as JSON.
Validation happens in `__post_init__` so a bad value never reaches a training thread.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, received
from workbench.method_names import method_names

PRECISIONS = ("off", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adamw", "sgd")
STRATEGIES = ("default", "mirrored", "multiworker")
SHARE_MODES = ("off", "tied", "vera")
HIERARCHICAL_MODES = ("off", "bottom-up", "top-down")
LR_SCHEDULES = ("constant", "plateau", "warmup-cosine", "stlr")
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
    # 2. How: the PEFT method and its options.
    method: str = "lora"
    rank: int = 8
    alpha: float = 16.0
    lora_targets: list[str] | None = None  # None: the model's default (query/value for BERT)
    share: str = "off"
    tie_layers: bool = False  # ALBERT-style: one transformer block's weights at every depth (BERT models)
    adapter_size: int = 16
    prompt_length: int = 8
    bitfit_layernorm: bool = True
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
    name: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_types(self)
        methods = method_names()
        _check(self.method in methods, f"Unknown method: use one of {', '.join(methods)}.", method=self.method)
        for key in ("model", "data"):
            value = getattr(self, key)
            _check(isinstance(value, str) and value.strip() != "", f"`{key}` must name a registered {key} or a file.", **{key: value})
        if self.lora_targets is not None:
            _check(len(self.lora_targets) > 0, "lora_targets must name at least one layer, or be unset for the "
                   "model card's default.", lora_targets=self.lora_targets)
        _check(isinstance(self.rank, int) and self.rank >= 1, "LoRA rank must be an integer >= 1 (try 4, 8 or 16).", rank=self.rank)
        _check(_finite(self.alpha) and self.alpha > 0, "LoRA alpha must be a positive number (commonly 2x the rank).", alpha=self.alpha)
        _check(isinstance(self.epochs, int) and self.epochs >= 1, "epochs must be an integer >= 1.", epochs=self.epochs)
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size must be an integer >= 1.", batch_size=self.batch_size)
        if self.lr is not None:
            _check(_finite(self.lr) and self.lr > 0, "lr must be a positive finite number, e.g. 1e-3.", lr=self.lr)
        _check(_finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay must be >= 0.", weight_decay=self.weight_decay)
        _check(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}.", optimizer=self.optimizer)
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
        _check(self.share in SHARE_MODES, f"share must be one of {', '.join(SHARE_MODES)}.", share=self.share)
        _check(self.hierarchical in HIERARCHICAL_MODES, f"hierarchical must be one of {', '.join(HIERARCHICAL_MODES)}.", hierarchical=self.hierarchical)
        _check(self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}.", lr_schedule=self.lr_schedule)
        _check(isinstance(self.adapter_size, int) and self.adapter_size >= 1, "adapter_size must be an integer >= 1.", adapter_size=self.adapter_size)
        _check(isinstance(self.prompt_length, int) and self.prompt_length >= 1, "prompt_length must be an integer >= 1.", prompt_length=self.prompt_length)
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

    def _check_combinations(self) -> None:
        if self.tie_layers:
            _check(self.method not in ("linear", "prompt"), "tie_layers shares the blocks that train: use it with "
                   "full, lora, adapter or bitfit, or turn it off.", tie_layers=self.tie_layers, method=self.method)
        if self.share != "off":
            _check(self.method in ("lora", "adapter"), "share works with method 'lora' or 'adapter' only: "
                   "set share='off' or pick one of those methods.", share=self.share, method=self.method)
        if self.share == "vera":
            _check(self.method == "lora", "share='vera' (shared frozen random bases) needs method 'lora'.",
                   share=self.share, method=self.method)
        if self.hierarchical != "off":
            _check(self.method in ("full", "lora", "bitfit", "adapter"),
                   "hierarchical fine-tuning works with full, lora, bitfit or adapter.",
                   hierarchical=self.hierarchical, method=self.method)
        if self.discriminative is not None:
            _check(self.method != "linear", "discriminative learning rates need more than one trainable group: "
                   "pick another method than 'linear'.", discriminative=self.discriminative, method=self.method)

    # -- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a plain mapping (stored runs, TOML, flags); unknown keys are refused with a suggestion."""
        if not isinstance(values, dict):
            raise ConfigError(f"A config must be a table of options such as {{'epochs': 3}}. "
                              f"{received(config=values)}")
        for key in values:
            if key not in FIELD_NAMES:
                raise ConfigError(f"Unknown config key {key!r}: {_suggest(key)}. {received(key=key)}")
        try:
            return cls(**{k: v for k, v in values.items() if v is not None or k in ("lr",)})
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
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

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
        head = self.method
        if self.method == "lora":
            head += f" r{self.rank}" + (f" α{_num(self.alpha)}" if differs("alpha") else "")
            if self.lora_targets is not None:
                head += " on " + "+".join(self.lora_targets)
        elif self.method == "adapter" and differs("adapter_size"):
            head += f" {self.adapter_size}-wide"
        elif self.method == "prompt" and differs("prompt_length"):
            head += f" {self.prompt_length} tokens"
        elif self.method == "bitfit" and not self.bitfit_layernorm:
            head += " no-LN"
        parts = [head]
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
            ("strategy", self.strategy),
        ]


def default_lr(method: str, modality: str | None = None) -> float:
    """Full fine-tuning of a pretrained transformer needs a small LR; the small PEFT parameter sets a larger one."""
    if method == "full":
        return 5e-5 if modality == "text" else 1e-3
    return 2e-3


def _num(value: float) -> str:
    """Short, exact text for a number: '0.001' reads as '0.001', but never rounds two values together."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))


def _suggest(key: str) -> str:
    """'did you mean …' for a misspelt option (dashes read as underscores), else where to look."""
    guess = str(key).replace("-", "_").lower()
    close = difflib.get_close_matches(guess, FIELD_NAMES, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else "see `workbench train --help` for the options"


@functools.cache
def _field_kinds() -> dict[str, tuple[type, bool]]:
    """field -> (base type, may be None), read from the annotations so a new field is checked too."""
    hints = typing.get_type_hints(TrainConfig)
    kinds: dict[str, tuple[type, bool]] = {}
    for name in FIELD_NAMES:
        hint = hints[name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        base = [a for a in args if a is not type(None)]
        kinds[name] = (bool if bool in base else typing.get_origin(base[0]) or base[0], type(None) in args)
    return kinds


def _check_types(config: TrainConfig) -> None:
    """Each field's type, strictly, before any range check.

    Why: a bool is an int in Python, so `epochs = true` in a TOML file passed `epochs >= 1` and trained
    one epoch. Ints refuse bools and fractions (3.0 reads as 3), floats take ints but not bools, lists
    take a list of strings or a comma-separated string (as the flags do).
    """
    for name, (kind, optional) in _field_kinds().items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        if name == "jit_compile":
            _check(isinstance(value, bool) or value == "auto", "jit_compile must be true, false or 'auto'.",
                   jit_compile=value)
        elif kind is bool:
            _check(isinstance(value, bool), f"{name} must be true or false (a bool, not a number or text).",
                   **{name: value})
        elif kind is int:
            integral = isinstance(value, float) and math.isfinite(value) and value.is_integer()
            _check((isinstance(value, int) and not isinstance(value, bool)) or integral,
                   f"{name} must be a whole number (not true/false or a fraction): give e.g. {name} = "
                   f"{example_value(name)}.", **{name: value})
            setattr(config, name, int(value))
        elif kind is float:
            number = isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)
                                                   and abs(value) < 2**1023)  # (float() of a larger int overflows)
            _check(number, f"{name} must be a number (not true/false or text): give e.g. {name} = {example_value(name)}.",
                   **{name: value})
            setattr(config, name, float(value))
        elif kind is str:
            _check(isinstance(value, str), f"{name} must be text: put it in quotes.", **{name: value})
        elif kind is list:
            setattr(config, name, _string_list(name, value))


def example_value(name: str) -> object:
    """A value to show in "give e.g. …" for an option (its default, or a typical one when that is None)."""
    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)
    return {"stage_steps": 50, "limit_per_class": 10, "max_rows": 1000, "stage_epochs": 1, "lr": 0.001,
            "discriminative": 2.6}.get(name, default)


def _string_list(name: str, value: object) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    _check(isinstance(value, list | tuple) and all(isinstance(v, str) for v in value),
           f"{name} must be a list of names, e.g. {name} = [\"a\", \"b\"], or one comma-separated string.",
           **{name: value})
    return [v.strip() for v in value if v.strip()]
