"""Learning-rate schedules: pure functions of the step, so every curve can be plotted without training.

The engine's Keras callback calls ``lr_at`` before each batch and sets the optimizer's learning rate.
Steps are 0-based: step 0 is the first batch, ``total_steps - 1`` the last one.

- constant        the same LR at every step.
- plateau         the source document's rule, "if the model stops improving, lower the LR":
                  it depends on validation loss, so it is a state machine (PlateauState), not a step function.
- warmup-cosine   linear warmup, then cosine decay (the usual transformer fine-tuning schedule).
- stlr            ULMFiT's slanted triangular LR (Howard & Ruder 2018, eq. 3).

discriminative_multipliers gives ULMFiT's per-layer-group LR multipliers (discriminative fine-tuning).
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

from workbench.errors import ConfigError, received

# The schedules, each with what it does (the Train form's caption): the one list of their names.
SCHEDULE_HELP = {
    "constant": "the same LR at every step (the baseline)",
    "plateau": "the source document's rule: halve the LR when validation loss stops improving",
    "warmup-cosine": "linear warmup, then cosine decay (the usual transformer recipe)",
    "stlr": "ULMFiT's slanted triangular LR: a short steep rise, a long linear decay",
}
SCHEDULE_NAMES = tuple(SCHEDULE_HELP)


def _require(name: str, value: object, ok: bool, fix: str) -> None:
    """Raise a one-line ConfigError (a ValueError) saying what to do, ending with what was received."""
    if not ok:
        raise ConfigError(f"{name} {fix} {received(**{name: value})}")


def _num(x: object) -> float:
    """x as a float if it is a real number (not a bool), else NaN, so every range check on it fails."""
    return float(x) if isinstance(x, Real) and not isinstance(x, bool) else math.nan


def _int(x: object) -> float:
    """Like _num, for arguments that must be whole numbers."""
    return float(x) if isinstance(x, Integral) and not isinstance(x, bool) else math.nan


def _check(step: int, base_lr: float, total_steps: int) -> None:
    _require("step", step, _int(step) >= 0, "must be a whole number >= 0 (0 is the first batch).")
    _require("base_lr", base_lr, 0 < _num(base_lr) < math.inf,
             "must be a finite number > 0, e.g. 2e-5 for full fine-tuning or 1e-3 for LoRA.")
    _require("total_steps", total_steps, _int(total_steps) >= 1,
             "must be a whole number >= 1 (epochs * batches per epoch).")


def constant(step: int, *, base_lr: float, total_steps: int) -> float:
    """The same LR at every step: the baseline every other schedule is compared against."""
    _check(step, base_lr, total_steps)
    return float(base_lr)


def warmup_cosine(step: int, *, base_lr: float, total_steps: int,
                  warmup_frac: float = 0.1, min_lr_ratio: float = 0.0) -> float:
    """Linear warmup, then cosine decay (Loshchilov & Hutter 2017, SGDR, without restarts; warmup as in BERT).

    Warmup keeps the first updates small while the optimizer's moment estimates are still noisy;
    the cosine then spends most of the run near the peak and anneals smoothly to the floor.
    The peak is the last warmup step and the floor is the last training step (T - 1), so no step is wasted
    at exactly 0 or past the end; steps >= T keep the final value.
    """
    _check(step, base_lr, total_steps)
    _require("warmup_frac", warmup_frac, 0 <= _num(warmup_frac) < 1,
             "must be in [0, 1), e.g. 0.1 warms up over the first 10% of steps.")
    _require("min_lr_ratio", min_lr_ratio, 0 <= _num(min_lr_ratio) <= 1,
             "must be in [0, 1]: the final LR as a fraction of base_lr, e.g. 0.1.")
    T = total_steps
    # 1) W = min(T, max(1, round(warmup_frac * T)))          warmup steps (at least one)
    W = min(T, max(1, round(warmup_frac * T)))
    # 2) step < W:  lr = base_lr * (step + 1) / W             base_lr/W at step 0, base_lr at step W-1
    if step < W:
        return base_lr * (step + 1) / W
    # 3) progress = min(1, (step - W + 1) / (T - W))          0 at step W-1, 1 at step T-1
    progress = min(1.0, (step - W + 1) / max(1, T - W))
    # 4) lr = base_lr * (m + (1 - m) * (1 + cos(pi * progress)) / 2),  m = min_lr_ratio
    m = min_lr_ratio
    return base_lr * (m + (1 - m) * 0.5 * (1 + math.cos(math.pi * progress)))


def stlr(step: int, *, base_lr: float, total_steps: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
    """ULMFiT's slanted triangular LR (Howard & Ruder 2018, "Universal Language Model Fine-tuning", eq. 3).

    A short steep rise lets the model quickly move to a good region of parameter space for the new task,
    then a long linear decay refines it. The paper's defaults are cut_frac=0.1 and ratio=32.
    Here t = step (0-based) and T = total_steps.
    """
    _check(step, base_lr, total_steps)
    _require("cut_frac", cut_frac, 0 < _num(cut_frac) < 1,
             "must be in (0, 1): the fraction of steps spent raising the LR (ULMFiT uses 0.1).")
    _require("ratio", ratio, 1 <= _num(ratio) < math.inf,
             "must be a finite number >= 1: how much smaller the lowest LR is than base_lr (ULMFiT uses 32).")
    t, T = step, total_steps
    # 1) cut = floor(T * cut_frac), at least 1 so short runs do not divide by zero
    cut = max(1, math.floor(T * cut_frac))
    # 2) p = t / cut                                        if t < cut   (rise)
    #    p = 1 - (t - cut) / (cut * (1 / cut_frac - 1))     otherwise    (decay)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    # 3) the decay reaches p = 0 at t = cut / cut_frac, which is T only when T * cut_frac is whole;
    #    past it the paper's formula goes negative (a negative LR), so p stops at 0.
    p = max(0.0, p)
    # 4) lr = base_lr * (1 + p * (ratio - 1)) / ratio       base_lr/ratio at p = 0, base_lr at p = 1
    return base_lr * (1 + p * (ratio - 1)) / ratio


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "warmup-cosine": warmup_cosine,
    "stlr": stlr,
}


def _unknown(name: object) -> ConfigError:
    return ConfigError(f"Unknown lr_schedule {name!r}: use one of {', '.join(SCHEDULE_NAMES)}. "
                       f"{received(lr_schedule=name)}")


def lr_at(name: str, step: int, *, base_lr: float, total_steps: int, **options: float) -> float:
    """The LR of schedule ``name`` at ``step``. "plateau" returns base_lr: its cuts come from PlateauState."""
    if name == "plateau":
        _check(step, base_lr, total_steps)
        return float(base_lr)
    if name not in SCHEDULES:
        raise _unknown(name)
    return SCHEDULES[name](step, base_lr=base_lr, total_steps=total_steps, **options)


def schedule_curve(name: str, *, base_lr: float, total_steps: int, **options: float) -> list[float]:
    """The LR at every step 0..total_steps-1, for charts (plateau is flat here: see plateau_curve)."""
    if name not in SCHEDULE_NAMES:
        raise _unknown(name)
    _check(0, base_lr, total_steps)
    return [lr_at(name, s, base_lr=base_lr, total_steps=total_steps, **options) for s in range(total_steps)]


@dataclass
class PlateauState:
    """The source document's rule: if the model stops improving, lower the LR.

    Pure state machine fed one validation loss per epoch; the same rule as keras ReduceLROnPlateau
    with cooldown=0 and mode="min", kept here so it can be tested and plotted without training.
    """

    factor: float = 0.5
    patience: int = 2
    min_lr: float = 1e-6
    min_delta: float = 0.0
    best: float = math.inf
    wait: int = 0
    scale: float = 1.0  # multiplier applied on top of base_lr: the product of the cuts so far

    def __post_init__(self) -> None:
        _require("factor", self.factor, 0 < _num(self.factor) < 1,
                 "must be between 0 and 1 (exclusive): plateau multiplies the LR by it, e.g. 0.5 halves it.")
        _require("patience", self.patience, _int(self.patience) >= 1,
                 "must be a whole number >= 1: epochs without improvement before plateau cuts the LR.")
        _require("min_lr", self.min_lr, 0 <= _num(self.min_lr) < math.inf,
                 "must be a finite number >= 0: plateau never cuts the LR below it, e.g. 1e-6.")
        _require("min_delta", self.min_delta, 0 <= _num(self.min_delta) < math.inf,
                 "must be a finite number >= 0: how much the loss must drop to count as improvement.")

    def update(self, val_loss: float, current_lr: float) -> float:
        """Feed one epoch's validation loss; return the LR for the next epoch."""
        # 1) improvement: val_loss < best - min_delta (NaN never improves)
        if not math.isnan(val_loss) and val_loss < self.best - self.min_delta:
            self.best, self.wait = val_loss, 0
            return current_lr
        # 2) otherwise count a bad epoch; after `patience` of them cut the LR and start counting again
        self.wait += 1
        if self.wait < self.patience:
            return current_lr
        self.wait = 0
        # 3) new_lr = max(current_lr * factor, min_lr), only if current_lr > min_lr (never raise the LR)
        if current_lr <= self.min_lr:
            return current_lr
        new_lr = max(current_lr * self.factor, self.min_lr)
        self.scale *= new_lr / current_lr
        return new_lr


def plateau_curve(val_losses: Sequence[float], *, base_lr: float, steps_per_epoch: int,
                  **plateau_options: float) -> list[float]:
    """Per-step LR that plateau gives for a per-epoch validation-loss sequence, for the Learn page and tests.

    Epoch e uses the LR decided after epoch e-1 (epoch 0 uses base_lr), so the last loss changes nothing.
    """
    _check(0, base_lr, 1)  # base_lr
    _require("steps_per_epoch", steps_per_epoch, _int(steps_per_epoch) >= 1, "must be a whole number >= 1.")
    state, lr = PlateauState(**plateau_options), float(base_lr)
    curve: list[float] = []
    for val_loss in val_losses:
        curve += [lr] * steps_per_epoch
        lr = state.update(val_loss, lr)
    return curve


def discriminative_multipliers(group_names: Sequence[str], factor: float) -> dict[str, float]:
    """ULMFiT's discriminative fine-tuning (Howard & Ruder 2018, section 3.2): lower layers learn slower.

    Groups are ordered bottom (index 0, e.g. "embeddings") to top (last, e.g. "head"); the top gets 1.0
    and each group below is divided by ``factor`` once more (the paper uses 2.6):
    multiplier[g_i] = factor ** -(n - 1 - i).
    """
    _require("factor", factor, 1 <= _num(factor) < math.inf,
             "must be a finite number >= 1 (ULMFiT uses 2.6; 1 gives every layer group the same LR).")
    names = list(group_names)
    _require("group_names", names, len(set(names)) == len(names), "must be unique, ordered bottom to top.")
    n = len(names)
    return {g: float(factor) ** -(n - 1 - i) for i, g in enumerate(names)}
