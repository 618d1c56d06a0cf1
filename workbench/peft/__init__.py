"""PEFT methods: one module per method, one registry.

Adding a method means adding one file here that calls `register(...)`, plus its test: every module
in this package is imported on first use, so the registry finds it without further wiring.
"""

from __future__ import annotations

import importlib
import pkgutil

from workbench.peft.base import METHODS, Method, ParamReport, apply_method, param_report, register


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def method_names() -> list[str]:
    _discover()
    return sorted(METHODS)


_discover()

__all__ = ["METHODS", "Method", "ParamReport", "apply_method", "method_names", "param_report", "register"]
