"""Strict, typed option values: one checker for the run's settings and for every method's options.

Why strict: a bool is an int in Python, so `epochs = true` in a TOML file once passed `epochs >= 1` and
trained one epoch. Ints refuse bools and fractions (3.0 reads as 3), floats take ints but not bools,
lists take a list of strings or a comma-separated string (as the flags do). Engine-light: no Keras.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any

from workbench.errors import ConfigError, received


@functools.cache
def kinds(cls: type) -> dict[str, tuple[type, bool]]:
    """field -> (base type, may be None), read from a dataclass's annotations (once per class)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[type, bool]] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        base = [a for a in args if a is not type(None)]
        literal = typing.get_origin(base[0]) is typing.Literal
        kind = str if literal else bool if bool in base else typing.get_origin(base[0]) or base[0]
        out[f.name] = (kind, type(None) in args)
    return out


def coerce(name: str, kind: type, optional: bool, value: Any, example: Any) -> Any:
    """`value` as a `kind` (int, float, bool, str, list of str), or a ConfigError naming the fix."""
    if value is None and optional:
        return None
    if kind is bool:
        _check(isinstance(value, bool), f"{name} must be true or false (a bool, not a number or text).", name, value)
    elif kind is int:
        integral = isinstance(value, float) and math.isfinite(value) and value.is_integer()
        _check((isinstance(value, int) and not isinstance(value, bool)) or integral,
               f"{name} must be a whole number (not true/false or a fraction): give e.g. {name} = {example}.",
               name, value)
        return int(value)
    elif kind is float:
        number = isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)
                                               and abs(value) < 2**1023)  # (float() of a larger int overflows)
        _check(number, f"{name} must be a number (not true/false or text): give e.g. {name} = {example}.",
               name, value)
        return float(value)
    elif kind is str:
        _check(isinstance(value, str), f"{name} must be text: put it in quotes.", name, value)
    elif kind is list:
        return string_list(name, value)
    return value


def string_list(name: str, value: object) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    _check(isinstance(value, list | tuple) and all(isinstance(v, str) for v in value),
           f"{name} must be a list of names, e.g. {name} = [\"a\", \"b\"], or one comma-separated string.",
           name, value)
    return [v.strip() for v in value if v.strip()]


def finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check(ok: bool, message: str, name: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{message} {received(**{name: value})}")


def short_number(value: float) -> str:
    """Short, exact text for a number: '0.001' reads as '0.001', but never rounds two values together."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)
