"""PEFT methods: one module per method, one registry.

Adding a method means adding one file here that calls `register(...)`, plus its test: every module
in this package is imported on first use, so the registry finds it without further wiring. Method
modules import Keras only inside their functions (see `base`), so importing this package is cheap.
"""

from __future__ import annotations

import importlib
import pkgutil

from workbench.peft.base import (
    METHODS,
    Capabilities,
    Method,
    ParamReport,
    apply_method,
    fold_flat,
    get_method,
    method_with_role,
    option,
    option_owners,
    option_tokens,
    ordered,
    param_report,
    register,
    register_layers,
    share_modes,
    variable_prefixes,
)


def _discover() -> None:
    """Import every method module; `*_layers` modules hold Keras classes and load with their method."""
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.endswith("_layers"):
            importlib.import_module(f"{__name__}.{info.name}")


def method_names() -> list[str]:
    _discover()
    return sorted(METHODS)


def methods() -> list[Method]:
    """Every registered method: the default first, the baseline last, the rest by name."""
    _discover()
    return ordered(METHODS.values())


_discover()

__all__ = ["METHODS", "Capabilities", "Method", "ParamReport", "apply_method", "fold_flat", "get_method",
           "method_names", "method_with_role", "methods", "option", "option_owners", "option_tokens", "ordered",
           "param_report", "register", "register_layers", "share_modes", "variable_prefixes"]
