"""The Train page's Sweep section: search over settings, starting from the form's configuration.

The form above is the sweep's base; here the user picks which settings to vary (the engine's
`SWEEPABLE`), the values of each (a pick of the allowed values, a list of numbers, or for random
search a range), grid or random search, a run budget, the metric and successive halving. "Start
sweep" hands a `SweepSpec` to `workbench.sweeps.start_sweep`, which runs the trials as one group in
the background; Compare shows them (`?sweep=<id>`).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from pages._resources import manager
from pages._train_form import LR_CHOICES
from workbench.config import TrainConfig
from workbench.errors import WorkbenchError
from workbench.sweeps.values import choices, grid_size, parse_values

KEEP = {"persist_state": "session"}
EXAMPLES = {"method_options.rank": "4, 8, 16", "seed": "0, 1, 2", "epochs": "1, 2, 3", "batch_size": "16, 32, 64",
            "weight_decay": "0, 0.01, 0.1", "discriminative": "1.5, 2.6"}


def _current(name: str, base: dict[str, Any]) -> Any:
    if name.startswith("method_options."):
        return (base.get("method_options") or {}).get(name.split(".", 1)[1])
    return base.get(name)


def _values_widget(name: str, base: dict[str, Any], search: str, help_text: str | None) -> Any:
    """One setting's values: a multiselect of allowed values, an LR pick or range, or a typed list."""
    key, current = f"sweep_v_{name}", _current(name, base)
    options = choices(name)
    if options is None and isinstance(current, bool):
        options = [False, True]
    if options is not None:
        default = [current] if current in options else options[:1]
        fmt = (lambda v: "on" if v else "off") if options == [False, True] else str
        return st.multiselect(name, options, default=default, key=key, help=help_text, format_func=fmt, **KEEP)
    if name == "lr":
        if search == "random":
            lo, hi = st.select_slider("lr (log-uniform range)", LR_CHOICES, value=(1e-4, 1e-2), key=f"{key}_range",
                                      format_func=lambda v: f"{v:g}", help=help_text, **KEEP)
            return {"low": lo, "high": hi, "log": True}
        return st.multiselect("lr", LR_CHOICES, default=[1e-4, 1e-3, 1e-2], key=key, help=help_text,
                              format_func=lambda v: f"{v:g}", **KEEP)
    example = EXAMPLES.get(name) or ("" if current is None else str(current))
    text = st.text_input(name, example, key=key, help=(help_text or "") + " · comma-separated values"
                         + (" or a range 'low .. high'" if search == "random" else ""), **KEEP)
    return parse_values(name, text, allow_range=search == "random", log=name.endswith("lr"))


def metrics_for(task: str) -> list[str]:
    """The final metrics a sweep can rank trials by, for a task (the first is the default)."""
    if task == "classification":
        return ["val_accuracy", "val_loss", "best_val_loss", "test_accuracy"]
    return ["val_mae", "val_loss", "best_val_loss", "test_mae"]


def sweep_section(config: TrainConfig, task: str) -> None:
    """The Sweep form. `config`: the Train form's configuration (every trial starts from it)."""
    from workbench.sweeps import SWEEPABLE, SweepSpec, start_sweep

    st.caption("Every trial starts from the form above and changes only the settings picked here. "
               "The trials form one group; Compare draws them in a parallel-coordinates view.")
    base = {k: v for k, v in config.to_dict().items() if k != "name"}
    names = list(SWEEPABLE)
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    picked = a.multiselect("Settings to sweep", names, default=[n for n in ("lr",) if n in names],
                           key="sweep_params", help="; ".join(f"{n}: {h}" for n, h in SWEEPABLE.items()), **KEEP)
    search = b.segmented_control("Search", ["grid", "random"], default="grid", required=True, key="sweep_search",
                                 help="grid: every combination · random: draw combinations (ranges allowed)",
                                 **KEEP)
    params: dict[str, Any] = {}
    problems: list[str] = []
    columns = st.columns(3)
    for i, name in enumerate(picked):
        with columns[i % 3]:
            try:
                values = _values_widget(name, base, search, SWEEPABLE.get(name))
            except WorkbenchError as exc:
                problems.append(f"{name}: {exc}")
                continue
            if not values:
                problems.append(f"{name}: pick at least one value")
            else:
                params[name] = values
    grid = grid_size(params)
    a, b, c, d = st.columns([1, 1.2, 1.2, 2], vertical_alignment="bottom")
    budget = int(a.number_input("Run budget", 0, 500, 12 if search == "random" else 0, key=f"sweep_budget_{search}",
                                help="the most runs the sweep starts (grid: 0 = the whole grid)", **KEEP))
    metrics = metrics_for(task)
    metric = b.selectbox("Metric", metrics, key=f"sweep_metric_{task}", **KEEP,
                         help="what ranks the trials (val_loss and val_mae: lower is better)")
    halving = c.toggle("Stop weak trials early", False, key="sweep_halving", **KEEP,
                       help="successive halving (ASHA): after each rung of epochs only the best trials go on")
    label = f"{config.method}: " + " × ".join(p.removeprefix("method_options.") for p in params) if params else ""
    name = d.text_input("Sweep name (optional)", key="sweep_name", max_chars=60, placeholder=label[:60] or None,
                        help="names the sweep and its runs (“<name> #3 · lr=0.01 rank=8”)")
    runs = (min(grid, budget) if budget else grid) if grid is not None else budget
    if grid is not None and params:
        st.caption(f"grid: {grid} run{'s' if grid != 1 else ''}"
                   + (f" · random search draws {budget} of them" if search == "random" and budget else "")
                   + (f" · the budget stops it at {budget}" if search == "grid" and budget and budget < grid else ""))
    elif params:
        st.caption(f"random search: {budget} runs drawn from the ranges" if budget else
                   "random search over a range needs a run budget")
    for problem in problems:
        st.warning(problem)
    disabled = not params or bool(problems) or not runs
    if st.button(f"Start sweep ({runs} runs)" if runs else "Start sweep", type="primary", key="sweep_start",
                 disabled=disabled, icon=":material/tune:"):
        spec = SweepSpec(base=base, params=params, search=search, budget=budget or None, metric=metric,
                         halving=halving, name=name.strip() or label[:60] or None)
        try:
            sweep_id = start_sweep(manager(), spec)
        except WorkbenchError as exc:
            st.error(str(exc))
        else:
            st.session_state["sweep_started"] = sweep_id
    started = st.session_state.get("sweep_started")
    if started:
        st.success(f"Sweep {started} started: its runs train on {manager().describe().split(' · ')[0]}.",
                   icon=":material/check_circle:")
        st.page_link("pages/compare.py", label="Watch it on Compare", icon=":material/compare_arrows:",
                     query_params={"sweep": started})
