"""Run tables for the Compare page and the notebooks: the config diff and the metrics table.

Split from `charts.py` (which re-exports both tables) so each module stays one idea: tables here, figures
there. `as_dict`, `flatten` and `run_labels` are public because `charts.compare_figure` reads configs and
names runs the same way the tables do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

_NEED = {"run_id", "step", "epoch", "key", "value"}


def _ok(metrics: pd.DataFrame | None) -> bool:
    return metrics is not None and not metrics.empty and set(metrics.columns) >= _NEED


def as_dict(c: Any) -> dict[str, Any]:
    """Config as a dict; tolerates a JSON string (as a SQL-backed store might hand back)."""
    if isinstance(c, str):
        try:
            c = json.loads(c)
        except ValueError:
            return {}
    return dict(c) if isinstance(c, Mapping) else {}


def flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    """Nested config as one level of dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {f"{prefix}{k}": v})
    return out


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """Run name per id, suffixed with the id where names collide (legend entries must be unique)."""
    ids = runs["id"].astype(str)
    names = runs["name"].astype(str).where(runs["name"].notna(), ids) if "name" in runs else ids
    dup = names.duplicated(keep=False)
    return pd.Series(np.where(dup, names + " (" + ids.str[-6:] + ")", names), index=ids.to_numpy())


def config_diff(runs: pd.DataFrame, interventions: dict[str, str] | None = None) -> pd.DataFrame:
    """Only the (dotted, flattened) config keys whose values differ; index = run name.

    What changed between runs is what explains their curves; shared keys are noise. A key missing
    from some runs counts as differing and shows as None/NaN there. `interventions` (run id -> "LR ×0.1
    @ 130 · …", `runs.interventions.summaries`) joins as one more setting: what was done to a run
    while it trained is part of what the run was.
    """
    if not isinstance(runs, pd.DataFrame) or runs.empty or "config" not in runs or "id" not in runs:
        return pd.DataFrame()
    flat = [flatten(as_dict(c)) for c in runs["config"]]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    if interventions:  # the last column
        flat = [{**f, "interventions": interventions.get(i)} for f, i in zip(flat, runs["id"], strict=True)]
        keys.append("interventions")
    diff = [k for k in keys if len({json.dumps(f[k], default=str) if k in f else "\0" for f in flat}) > 1]
    index = pd.Index(run_labels(runs).to_numpy(), name="name")
    return pd.DataFrame({k: [f.get(k) for f in flat] for k in diff}, index=index, columns=diff)


def metrics_table(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run; index = run name (as in ``config_diff``, so the two ``join``).

    Columns: run_id, method, final_train_loss (mean of the last 5% of steps, at least one step,
    so one noisy batch does not decide), final_val_<m> for every val key, best_val_loss (min),
    test_<m>, source_before/after/removed (the source task's probe: retention), trainable_params,
    trainable_pct, wall_s. Gaps fall back to same-named ``runs`` columns (final_*, best_*, test_*,
    source_*); a missing wall_s falls back to the last logged ``wall``.
    """
    if not isinstance(runs, pd.DataFrame) or runs.empty or "id" not in runs:
        return pd.DataFrame()
    runs = runs.drop_duplicates("id")
    ids = runs["id"].astype(str)
    out = pd.DataFrame({"run_id": ids.to_numpy()}, index=ids.to_numpy())
    out["method"] = runs["method"].to_numpy() if "method" in runs else None
    if _ok(metrics):
        m = metrics[metrics["run_id"].isin(ids)]
        tr = m[m["key"] == "train/loss"].sort_values(["run_id", "step"], kind="stable")
        g = tr.groupby("run_id")
        keep = g.cumcount(ascending=False) < np.maximum(1, np.ceil(0.05 * g["value"].transform("size")))
        out["final_train_loss"] = tr[keep].groupby("run_id")["value"].mean()
        ev = m[m["key"].str.startswith(("val/", "test/"))].sort_values(["run_id", "step"], kind="stable")
        last = ev.groupby(["run_id", "key"])["value"].last().unstack("key")
        for c in sorted((c for c in last.columns if c.startswith("val/")), key=lambda c: (c != "val/loss", c)):
            out["final_val_" + c[4:]] = last[c]
            if c == "val/loss":
                out["best_val_loss"] = ev[ev["key"] == c].groupby("run_id")["value"].min()
        for c in sorted(c for c in last.columns if c.startswith("test/")):
            out["test_" + c[5:]] = last[c]
        if "wall" in m:
            out["_wall"] = m.groupby("run_id")["wall"].max()
    by_id = runs.set_index(ids.to_numpy())
    for c in [c for c in by_id.columns if c.startswith(("final_", "best_", "test_", "source_"))]:
        out[c] = out[c].fillna(by_id[c]) if c in out else by_id[c]
    nan = pd.Series(np.nan, index=out.index)
    params, total, wall = (pd.to_numeric(by_id[c], errors="coerce") if c in by_id else nan
                           for c in ("trainable_params", "total_params", "wall_s"))
    out["trainable_params"], out["trainable_pct"] = params, 100.0 * params / total.replace(0, np.nan)
    out["wall_s"] = wall.fillna(out.pop("_wall")) if "_wall" in out else wall
    out.index = pd.Index(run_labels(runs).to_numpy(), name="name")
    return out


__all__ = ["as_dict", "config_diff", "flatten", "metrics_table", "run_labels"]
