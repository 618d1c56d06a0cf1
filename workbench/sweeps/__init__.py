"""Sweeps: many runs of one base configuration, varied over chosen settings, compared as one group.

"Comparing runs side by side quickly means comparing many": rank × learning rate × sharing × staging ×
seeds. A `SweepSpec` names the settings and their values (a grid, or a random search over lists and
ranges), a run budget, the metric to judge and, optionally, successive halving that stops weak trials
early. Optuna picks the values and prunes (`sweeps.search`); every trial is an ordinary run started
through the `RunManager` (`sweeps.driver`), tagged `sweep:<id>`; the run store keeps the sweep
(`sweeps.records`) and reads it back as a table (`sweeps.results`).

    spec = SweepSpec(base=config.to_dict(), params={"lr": [1e-3, 1e-2], "rank": [4, 8]}, halving=True)
    sweep_id = run_sweep(manager, spec)
    sweep_frame(manager.store, sweep_id)          # one row per trial, best first
"""

from __future__ import annotations

from workbench.sweeps.driver import run_sweep, start_best_with_seeds, start_sweep, stop_sweep, wait_sweep
from workbench.sweeps.records import SweepRecord, TrialRow
from workbench.sweeps.results import best_config, best_trial, get_sweep, list_sweeps, sweep_frame
from workbench.sweeps.spec import SWEEPABLE, SweepSpec

__all__ = ["SWEEPABLE", "SweepRecord", "SweepSpec", "TrialRow", "best_config", "best_trial", "get_sweep",
           "list_sweeps", "run_sweep", "start_best_with_seeds", "start_sweep", "stop_sweep", "sweep_frame",
           "wait_sweep"]
