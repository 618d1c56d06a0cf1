"""The Train form's method options, generated from the method registry (no method is named here).

Each option of the chosen method's options dataclass becomes one widget, picked from its metadata
(`workbench.peft.option`): a toggle for a bool, a slider over `widget` values, a pick of the model
card's layers for `widget="layers"`, a choice for `choices`, else a number box within low/high. A new
method's options appear here without touching this file.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import streamlit as st

from pages import _widgets as w


def method_options(method: str, card: Any, keep: dict[str, Any]) -> dict[str, Any]:
    """{option: value} for `method`, laid out two widgets per row; only values that differ from the
    default are returned (a run's name then says only what was changed)."""
    from workbench import fields
    from workbench.peft import get_method

    spec = get_method(method)
    kinds = fields.kinds(spec.options)
    shown = [f for f in spec.option_fields() if not (f.metadata.get("widget") == "layers" and not _layers(card))]
    out: dict[str, Any] = {}
    for i in range(0, len(shown), 2):
        for column, f in zip(st.columns(2), shown[i:i + 2], strict=False):
            with column:
                value = _widget(method, f, kinds[f.name][0], card, keep)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if value != default:
                out[f.name] = value
    return out


def _layers(card: Any) -> list[str]:
    return list(card.lora_targets) if card is not None and card.lora_targets else []


def _widget(method: str, f: dataclasses.Field, kind: type, card: Any, keep: dict[str, Any]) -> Any:
    meta = f.metadata
    label = meta.get("label") or f.name.replace("_", " ").capitalize()
    key, tip = f"train_{method}_{f.name}", meta.get("help")
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    widget = meta.get("widget")
    if widget == "layers":  # all of them is the model's default (None)
        targets = _layers(card)
        chosen = st.multiselect(label, targets, default=targets, key=f"{key}_{card.name}", help=tip, **keep)
        return chosen if chosen and chosen != targets else None
    if widget == "blocks":  # None: every block
        n = sum(g.startswith("block_") for g in card.layer_groups) if card is not None else 0
        choice = st.selectbox(label, ["all", *range(1, n)], key=f"{key}_{getattr(card, 'name', '')}", help=tip, **keep)
        return None if choice == "all" else int(choice)
    if kind is bool:
        return st.toggle(label, default, key=key, help=tip, **keep)
    if meta.get("choices"):
        w.keep_valid(key, list(meta["choices"]))
        return st.selectbox(label, list(meta["choices"]), index=list(meta["choices"]).index(default), key=key,
                            help=tip, **keep)
    if isinstance(widget, tuple):
        values = sorted({*widget, default})
        value = st.select_slider(label, values, value=default, key=key, help=tip, **keep)
        return float(value) if kind is float else value
    low, high = meta.get("low"), meta.get("high")
    if kind is int:
        return int(st.number_input(label, int(low if low is not None else -10**9), int(high if high is not None else 10**9),
                                   int(default), key=key, help=tip, **keep))
    return float(st.number_input(label, float(low) if low is not None else None, float(high) if high is not None else None,
                                 float(default), key=key, help=tip, format="%g", **keep))
