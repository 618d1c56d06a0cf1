"""Reading a sweep's values from text: `--grid rank=4,8,16` on the command line, "4, 8, 16" or
"1e-4 .. 1e-2" in the Train page's Sweep form. One reader for both, typed as each setting is typed
(`spec.kind_of`): "4" is the integer 4 for `rank` and the float 4.0 for `lr`, "none" or "default" is
the unset value of an optional setting, "on"/"off" a boolean. Bad text gets one line naming the
setting, what it takes and the value.
"""

from __future__ import annotations

import math
import re
from typing import Any

from workbench.errors import WorkbenchError, received

_BOOLEANS = {"true": True, "on": True, "yes": True, "false": False, "off": False, "no": False}


def choices(name: str) -> list[Any] | None:
    """The allowed values of a categorical setting (None: a number or a flag, typed as text)."""
    from workbench import peft
    from workbench.config import HIERARCHICAL_MODES, OPTIMIZERS
    from workbench.schedules import SCHEDULE_NAMES

    return {"method": peft.method_names(), "lr_schedule": list(SCHEDULE_NAMES), "share": list(peft.share_modes()),
            "hierarchical": list(HIERARCHICAL_MODES), "optimizer": list(OPTIMIZERS)}.get(name)


def value_of(name: str, text: str) -> Any:
    """One value of setting `name` from text, typed as the setting is."""
    from workbench.sweeps.spec import kind_of

    kind, optional = kind_of(name)
    word = text.strip()
    if optional and word.lower() in ("none", "default"):
        return None
    try:
        if kind is bool:
            return _BOOLEANS[word.lower()]
        if kind is int:
            return int(word)
        if kind is float:
            return float(word)
    except (KeyError, ValueError):
        noun = {bool: "on or off", int: "whole numbers", float: "numbers"}[kind]
        raise WorkbenchError(f"{name} takes {noun}, e.g. {_example(kind)}. {received(**{name: word})}") from None
    return word


def values_of(name: str, text: str) -> list[Any]:
    """'4, 8, 16' (commas, semicolons or spaces) → [4, 8, 16]."""
    values = [value_of(name, part) for part in re.split(r"[,;\s]+", text) if part.strip()]
    if not values:
        raise WorkbenchError(f"{name} needs at least one value, e.g. {_example(_kind(name))}. {received(**{name: text})}")
    return values


def range_of(name: str, low: str, high: str, log: bool = False) -> dict[str, Any]:
    """A numeric range for random search: {"low", "high", "log"}, low < high."""
    lo, hi = value_of(name, low), value_of(name, high)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi)) or lo >= hi:
        raise WorkbenchError(f"a range of {name} is 'low .. high' with numbers, low < high, e.g. 1 .. 32. "
                             f"{received(**{name: f'{low} .. {high}'})}")
    return {"low": lo, "high": hi, "log": log}


def parse_values(name: str, text: str, *, allow_range: bool, log: bool = False) -> list[Any] | dict[str, Any]:
    """The Sweep form's text: a list ("4, 8, 16") or, for random search, a range ("1e-4 .. 1e-2")."""
    if ".." in text:
        if not allow_range:
            raise WorkbenchError(f"a range needs random search; grid search takes a list of values, e.g. 4, 8, 16. "
                                 f"{received(**{name: text.strip()})}")
        low, _, high = text.partition("..")
        return range_of(name, low, high, log)
    return values_of(name, text)


def grid_size(params: dict[str, Any]) -> int | None:
    """How many runs the full grid has (None when a setting is a range: only random search samples it)."""
    if any(isinstance(v, dict) for v in params.values()):
        return None
    return math.prod(len(v) for v in params.values()) if params else 0


def planned_runs(spec: dict[str, Any]) -> int | None:
    """How many trials a sweep (its spec as a dict) starts in all (None: random search without a budget)."""
    grid = grid_size(spec.get("params") or {})
    budget = spec.get("budget")
    if budget:
        return min(int(budget), grid) if grid is not None and spec.get("search", "grid") == "grid" else int(budget)
    return grid


def _kind(name: str) -> type:
    from workbench.sweeps.spec import kind_of

    return kind_of(name)[0]


def _example(kind: type) -> str:
    return {bool: "on, off", int: "4, 8, 16", float: "0.001, 0.01"}.get(kind, "a, b")
