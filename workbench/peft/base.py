"""The contract every PEFT method follows, and the registry that holds them.

A method is one module in this package that calls `register(...)`: its options dataclass (each field
made with `option(...)`: default, help, range, widget hint), its capabilities (which sharing modes,
whether it can be staged, merged into a plain `.keras`, feature-cached), the prefix of the variables
it adds, its closed-form trainable-parameter count and `apply`. Everything else in the workbench asks
the registry (config validation, CLI flags, the Train form, preview, presets, study, export), so a new
method is one file plus its test, and no other module names a method.

Why method modules import Keras only inside functions: `TrainConfig` validates a method's options when
it is built, and the CLI refuses a bad flag before TensorFlow's multi-second import. A method's Keras
layers load on first use (`Method.layers`), which `apply_method` and every model loader call first.

A method decides which variables train. It does so per variable (`variable.trainable`), never by
freezing whole layers: freezing a parent layer would also hide the LoRA or adapter weights that live
inside it, and per-variable flags are what hierarchical fine-tuning toggles later.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench import fields
from workbench.errors import ConfigError, received

if TYPE_CHECKING:
    from workbench.config import TrainConfig
    from workbench.models.base import TaskModel


def option(default: Any, help: str, *, label: str | None = None, low: float | None = None,
           high: float | None = None, choices: tuple | None = None, widget: tuple | str | None = None,
           token: str | None = None, always: bool = False, example: Any = None) -> Any:
    """A field of a method's options dataclass, with what the CLI, the Train form and run names need.

    label: the Train form's widget label; low/high: inclusive range (checked); choices: the allowed values; widget: the values a slider offers
    (else a number box; "layers": a pick of the model card's LoRA target layers); token: how the run name shows a non-default value ("r{}", "{}-wide", "no-LN"),
    `always`: shown even at its default; example: shown in "give e.g." when the default is None.
    """
    meta = {"help": help, "label": label, "low": low, "high": high, "choices": choices, "widget": widget, "token": token,
            "always": always, "example": default if example is None else example}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Capabilities:
    """What the rest of the workbench may do with a method (asked, never assumed from its name)."""

    share_modes: tuple[str, ...] = ()  # principle 1: sharing modes besides "off" ("tied", "vera")
    tie_layers: bool = True  # can train an ALBERT-tied encoder (it trains something inside the blocks)
    stageable: bool = True  # principle 2: its trainable parameters sit in layer groups below the head
    mergeable: bool = True  # its export is a plain `.keras` model (else runs reload via their weights)
    feature_cache: bool = False  # only the head trains: frozen features can be computed once per epoch
    text_only: bool = False  # needs a transformer text model
    step0_unchanged: bool = True  # the model's output at step 0 is the pretrained one
    default_lr: Mapping[str, float] = field(default_factory=lambda: {"*": 2e-3})  # per modality, "*" else
    role: str | None = None  # "default" (the Train page's first choice), "baseline" (what PEFT is measured against)
    what_trains: str = "parameters"  # words for notes: "unfreezing a group turns on its LoRA weights"


@dataclass(frozen=True)
class ChangeMeasure:
    """One adapted weight of the change map (`workbench.explain.changes`), as the method defines it.

    Why the method says it: the weight a method changes is often not a variable (LoRA's W + (α/r)·A·B,
    DoRA's rescaled direction, IA³'s W·diag(l)), or not a weight at all (an adapter's or a prompt's
    contribution), and only the method knows which. Variables no measure names are compared with
    their values at the start (full, BitFit, every head).

    layer: where it sits (its layer group is the layer's); name: short and stable ("query");
    variables: the trainable variables it accounts for; squares(probe) -> (‖ΔW‖², ‖W0‖²) now;
    traced: `squares` measures a contribution on the probe batch, so it runs inside the run's one compiled
    probe pass (with the gradient norms): `probe.x` is symbolic there, `probe.forward()` the model's output
    (one forward for all), and it returns tensors (keras.ops), never Python floats;
    factors() -> (A', B', s) with ΔW = s·A'·B' (numpy): the LoRA family, for ‖ΔW‖ without the product
    (when `squares` is None, with `base` = ‖W0‖²) and for ΔW's singular values.
    """

    layer: Any
    name: str
    variables: tuple = ()
    squares: Callable[[Any], tuple[Any, Any]] | None = None
    traced: bool = False
    factors: Callable[[], tuple[Any, Any, float]] | None = None
    base: float = 0.0


@dataclass(frozen=True)
class Method:
    """A registry entry. `apply(task_model, options, share)` makes the method's variables trainable."""

    name: str
    options: type
    apply: Callable[[TaskModel, Any, str], None]
    description: str
    capabilities: Capabilities = field(default_factory=Capabilities)
    prefix: str | None = None  # the name prefix of the variables it adds (None: it adds none)
    count: Callable[[TaskModel, Any, str], int] | None = None  # closed form, head excluded
    lr_multipliers: Callable[[TaskModel, Any], dict[int, float]] | None = None  # id(variable) -> LR factor
    layers: Callable[[], Any] | None = None  # loads (registers) the method's Keras classes
    check: Callable[[Any, TrainConfig], None] | None = None  # refusals from the model card alone, before a build
    study: tuple[tuple[str, dict[str, Any]], ...] = ()  # (label, overrides) rows of the study grid
    change: Callable[[TaskModel, Any, str], list[ChangeMeasure]] | None = None  # the change map's measures

    def make_options(self, values: Mapping[str, Any] | None = None) -> Any:
        """A validated options object from a mapping (missing keys take their defaults)."""
        values = dict(values or {})
        known = {f.name: f for f in dataclasses.fields(self.options)}
        for key in values:
            if key not in known:
                names = ", ".join(known) or "none"
                raise ConfigError(f"Method {self.name!r} has no option {key!r} (its options: {names}): remove it "
                                  f"or pick the method it belongs to. {received(**{key: values[key]})}")
        kinds = fields.kinds(self.options)
        checked = {}
        for key, value in values.items():
            kind, optional = kinds[key]
            meta = known[key].metadata
            value = fields.coerce(key, kind, optional, value, meta.get("example"))
            _check_range(self.name, key, value, meta)
            checked[key] = value
        return self.options(**checked)

    def option_fields(self) -> list[dataclasses.Field]:
        return list(dataclasses.fields(self.options))

    def default_lr(self, modality: str | None) -> float:
        lrs = self.capabilities.default_lr
        return float(lrs.get(modality or "*", lrs["*"]))

    def supports_share(self, share: str) -> bool:
        return share == "off" or share in self.capabilities.share_modes


def _check_range(method: str, key: str, value: Any, meta: Mapping[str, Any]) -> None:
    if value is None:
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{method} option {key} must be one of {', '.join(map(str, meta['choices']))}. "
                          f"{received(**{key: value})}")
    low, high = meta.get("low"), meta.get("high")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and (not fields.finite(value) or (low is not None and value < low) or (high is not None and value > high)):
        span = (f"between {low:g} and {high:g}" if low is not None and high is not None
                else f">= {low:g}" if low is not None else f"<= {high:g}" if high is not None else "finite")
        raise ConfigError(f"{method} option {key} must be {span}. {received(**{key: value})}")
    if isinstance(value, list) and low is not None and len(value) < low:
        raise ConfigError(f"{method} option {key} must name at least {int(low)} entry, or be unset for the "
                          f"model's default. {received(**{key: value})}")


METHODS: dict[str, Method] = {}


def register(name: str, options: type, description: str, **contract: Any) -> Callable:
    """Decorator for a method's `apply(task_model, options, share)`; `contract`: the other `Method` fields."""

    def wrap(fn: Callable) -> Callable:
        METHODS[name] = Method(name, options, fn, description, **contract)
        return fn

    return wrap


# -- what the rest of the workbench asks ------------------------------------------------------------
def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"Unknown method: use one of {', '.join(sorted(METHODS))}. {received(method=name)}")
    return METHODS[name]


def method_with_role(role: str) -> Method:
    """The method the registry marks "default" or "baseline" (the Train page's first choice; full FT)."""
    found = [m for m in METHODS.values() if m.capabilities.role == role]
    if len(found) != 1:
        raise LookupError(f"Exactly one method must have the role {role!r}. Received: methods={[m.name for m in found]}")
    return found[0]


def ordered(methods) -> list[Method]:
    """The default method first, the baseline last, the rest by name (menus, flags, "method a or b")."""
    rank = {"default": 0, None: 1, "baseline": 2}
    return sorted(methods, key=lambda m: (rank.get(m.capabilities.role, 1), m.name))


def variable_prefixes() -> tuple[str, ...]:
    """Name prefixes of the variables PEFT methods add (they may train although not pretrained)."""
    return tuple(sorted({m.prefix for m in METHODS.values() if m.prefix}))


def register_layers() -> None:
    """Load every method's Keras classes: before `keras.saving.load_model` reads a workbench export."""
    for method in METHODS.values():
        if method.layers is not None:
            method.layers()


def share_modes() -> tuple[str, ...]:
    """Every sharing mode some method offers, "off" first."""
    modes = [mode for m in METHODS.values() for mode in m.capabilities.share_modes]
    return ("off", *sorted(set(modes)))


def option_tokens(method: str, options: dict[str, Any]) -> list[str]:
    """The run-name tokens of a method's options: each non-default one (and those shown always)."""
    tokens = []
    for f in get_method(method).option_fields():
        value, meta = options.get(f.name, f.default), f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if value == default and not meta.get("always"):
            continue
        token = meta.get("token") or f"{f.name}={{}}"
        text = "+".join(value) if isinstance(value, list) else fields.short_number(value) if isinstance(value, float) else value
        tokens.append(token.format(text) if "{}" in token else token)
    return tokens


@functools.cache
def option_owners() -> dict[str, list[str]]:
    """option name -> the methods that have it (the flat keys earlier versions stored)."""
    owners: dict[str, list[str]] = {}
    for method in ordered(METHODS.values()):
        for f in method.option_fields():
            owners.setdefault(f.name, []).append(method.name)
    return owners


def fold_flat(method: str, flat: dict[str, Any], nested: object) -> dict[str, Any]:
    """Flat option keys (as earlier versions stored them) into the chosen method's options: another
    method's option is dropped at its default and refused otherwise (see `TrainConfig.from_dict`)."""
    nested = dict(nested) if isinstance(nested, dict) else {}
    known = {f.name: f for f in get_method(method).option_fields()} if method in METHODS else {}
    for key, value in flat.items():
        if key in known:
            if key in nested and nested[key] != value:
                raise ConfigError(f"{key} is given twice with different values (flat and in method_options): keep "
                                  f"one. {received(**{key: value})}")
            nested[key] = value
            continue
        owner = get_method(option_owners()[key][0])
        default = next(f for f in owner.option_fields() if f.name == key)
        default = default.default if default.default is not dataclasses.MISSING else default.default_factory()
        if value != default:
            raise ConfigError(f"{key} is an option of method {' or '.join(option_owners()[key])}, not {method}: remove "
                              f"it or set method = {owner.name!r}. {received(**{key: value})}")
    return nested


# -- helpers for `apply` ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamReport:
    """Trainable vs total parameters: what the method saves, shown before a run starts."""

    trainable: int
    total: int
    by_group: dict[str, int]

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(self.total, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"trainable": self.trainable, "total": self.total, "percent": round(self.percent, 4),
                "by_group": self.by_group}

    def summary(self) -> str:
        return f"{self.trainable:,} trainable of {self.total:,} parameters ({self.percent:.2f}%)"


def freeze_all(task_model: TaskModel) -> None:
    for variable in task_model.model.variables:
        variable.trainable = False


def set_trainable(variables: list, trainable: bool = True) -> None:
    for variable in variables:
        variable.trainable = trainable


def param_report(task_model: TaskModel) -> ParamReport:
    """Count trainable and total parameters, and trainable parameters per layer group."""
    import numpy as np

    def count(variables: list) -> int:
        return int(sum(int(np.prod(v.shape)) for v in variables))

    seen: set[int] = set()
    unique = [v for v in task_model.model.weights if not (id(v) in seen or seen.add(id(v)))]  # no RNG states
    trainable = [v for v in unique if v.trainable]
    by_group = {g: count([v for v in vs if v.trainable]) for g, vs in task_model.group_variables().items()}
    return ParamReport(trainable=count(trainable), total=count(unique), by_group=by_group)


def apply_method(task_model: TaskModel, train_config: TrainConfig) -> ParamReport:
    """Apply the configured method to a freshly built task model and report its parameters.

    Holds the build lock: new weights (LoRA factors, adapters) draw from the process-wide RNG.
    """
    from workbench.models.base import BUILD_LOCK

    with BUILD_LOCK:
        return _apply(task_model, train_config)


def _apply(task_model: TaskModel, train_config: TrainConfig) -> ParamReport:
    method = get_method(train_config.method)
    if method.layers is not None:
        method.layers()
    if train_config.tie_layers:
        from workbench.peft.tying import tie_blocks

        tie_blocks(task_model)  # the first principle at block scale; the method then applies to the one block
    method.apply(task_model, train_config.options, train_config.share)
    for variable in task_model.never_trainable:
        variable.trainable = False
    task_model.method = train_config.method
    return param_report(task_model)
