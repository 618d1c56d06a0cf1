"""Runs: the run store (SQLite, or PostgreSQL for a cluster) and the process-wide RunManager.

The names load lazily (module `__getattr__`, PEP 562). Why: `RunManager` imports the trainer and
with it Keras and TensorFlow (seconds, and C++ log lines on stderr), while reading the store needs
neither. `from workbench.runs import RunStore` or `workbench runs list` must stay fast and quiet.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.runs.manager import RunManager
    from workbench.runs.store import STATUSES, RunRecord, RunStore, default_runs_dir

_HOMES = {"RunManager": "workbench.runs.manager", "STATUSES": "workbench.runs.store",
          "RunRecord": "workbench.runs.store", "RunStore": "workbench.runs.store",
          "default_runs_dir": "workbench.runs.store"}

__all__ = ["STATUSES", "RunManager", "RunRecord", "RunStore", "default_runs_dir"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
