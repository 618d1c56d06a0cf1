"""Optuna's part of a sweep: the sampler that picks each trial's values and the pruner that ends weak ones.

Why Optuna and not our own loops: grid, seeded random search and successive halving (ASHA) are its
tested code, and its ask/tell interface lets the sweep driver keep several trials in flight while
the `RunManager` trains them wherever its executor runs them. The study lives in memory only: the
run store holds what a sweep needs to be read back (`sweeps.records`).

The same sampler, seeded the same way, gives the same values in the same order, so `plan` (a dry
study asked `budget` times) is exactly what the sweep will run: the up-front check and the tests use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna
from optuna.samplers import GridSampler, RandomSampler

from workbench.sweeps.spec import is_range

if TYPE_CHECKING:
    from workbench.sweeps.spec import SweepSpec

HALVING_FACTOR = 3  # ASHA's η: at each rung (epoch 1, 3, 9, ...) a trial must be in the best third to go on

optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "Trial 3 finished with value ..." lines on stderr


class _Grid(GridSampler):
    """Optuna's grid, without its end-of-grid `Study.stop()`: that call only works inside `optimize()`
    and raises under ask/tell; the sweep's budget (never more than the grid) ends the sweep instead."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def make_study(spec: SweepSpec) -> optuna.Study:
    """An in-memory study with the spec's sampler, direction and (with `halving`) successive halving."""
    if spec.search == "grid":
        sampler: optuna.samplers.BaseSampler = _Grid(dict(spec.params), seed=spec.seed)
    else:
        sampler = RandomSampler(seed=spec.seed)
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if spec.halving:
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=HALVING_FACTOR,
                                                        min_early_stopping_rate=0)
    return optuna.create_study(sampler=sampler, pruner=pruner, direction=spec.resolved_direction())


def suggest(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Any]:
    """The trial's value for each swept setting, keyed as in `spec.params`."""
    values: dict[str, Any] = {}
    for name, choices in spec.params.items():
        if not is_range(choices):
            values[name] = trial.suggest_categorical(name, list(choices))
            continue
        low, high, log = choices["low"], choices["high"], bool(choices.get("log", False))
        if spec.kind(name) is int:
            values[name] = trial.suggest_int(name, int(low), int(high), log=log)
        else:
            values[name] = trial.suggest_float(name, float(low), float(high), log=log)
    return values


def plan(spec: SweepSpec) -> list[dict[str, Any]]:
    """The values of each of the sweep's `budget` trials, in order, without running anything."""
    study = make_study(spec)
    return [suggest(study.ask(), spec) for _ in range(spec.budget or 0)]
