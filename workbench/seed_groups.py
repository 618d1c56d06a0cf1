"""Seed groups: runs of one configuration under several seeds, and the pairs that differ in one setting.

A group is not recorded anywhere: it is derived. Runs whose configs agree on every setting except the
seed (and the labels: name, tags) are replicates of one experiment, however they were started (the
Train page's "replicates", `workbench train --seeds 0,1,2`, "Run again, seed N+1", the study). So an old
run and a new one with the same settings fold together, and nothing can fall out of sync with a
stored group id. `seed_key` is the one definition; the Compare chart's seed bands use it too.

One-factor pairs answer "what did this one setting do?": two groups whose settings differ in exactly
one place (a different method counts as one setting, its options come with it). Pure functions over
the run store's runs frame (`RunStore.runs_frame`); `workbench.explain.significance` judges the gap.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from workbench.errors import ConfigError, received
from workbench.run_tables import as_dict, flatten

LABELS = ("name", "tags")  # what names a run without changing what it trains
# Columns of a runs frame that are settings too (a hand-made frame may carry them without a config).
COLUMN_SETTINGS = {"model": "model", "dataset": "data", "method": "method", "batch_size": "batch_size"}
# The headline final metric, first present wins: what the CLI summarises and Compare shows first.
HEADLINE = ("test_accuracy", "test_mae", "test_rmse", "test_loss", "val_accuracy", "val_mae", "best_val_loss")
MAX_REPLICATES = 50


def _plain(value: Any) -> Any:
    """numpy scalars as Python values (JSON keys must not depend on where a number came from)."""
    return value.item() if isinstance(value, np.generic) else value


def settings(row: Mapping[str, Any]) -> dict[str, Any]:
    """A run's settings: its flattened config without seed and labels (dotted keys, e.g. method_options.rank)."""
    config = flatten(as_dict(row.get("config")))
    out = {key: _plain(row[col]) for col, key in COLUMN_SETTINGS.items() if col in row and key not in config}
    out.update({k: _plain(v) for k, v in config.items() if k not in LABELS and k.rsplit(".", 1)[-1] != "seed"})
    return out


def seed_key(row: Mapping[str, Any]) -> str:
    """Everything that defines an experiment except its seed and labels: equal keys = one seed group."""
    return json.dumps(settings(row), sort_keys=True, default=str)


# What separates the parts of a run name: the engine's own names use " · " ("lora r8 · mnist-cnn/digits · s0").
_NAME_SEP = r"[\s\-_./=:,;|·•–—]"


def group_stem(names: Sequence[str]) -> str:
    """The name of runs that differ only in seed: their names' common part, the seed marker cut off.

    "lora r8 · mnist-cnn/digits · s0" … "· s2" → "lora r8 · mnist-cnn/digits". Seeds with a common
    first digit (s10, s11) leave "· s1" in the common prefix, so digits after the marker go too.
    """
    names = [str(n) for n in names]
    stem = re.sub(rf"({_NAME_SEP}+(seed|s){_NAME_SEP}*\d*)?{_NAME_SEP}*$", "", os.path.commonprefix(names))
    return stem if len(stem) >= 3 else names[0]


def group_label(names: Sequence[str]) -> str:
    """`group_stem` with the run count: "lora r8 · mnist-cnn/digits (3 seeds)" (the Compare legend)."""
    return f"{group_stem(names)} ({len(names)} seed{'s' if len(names) != 1 else ''})"


@dataclass
class Group:
    """Replicates of one experiment: the runs (rows of the runs frame, in frame order) and their settings."""

    key: str
    settings: dict[str, Any]
    runs: pd.DataFrame
    name: str = ""  # the runs' common name ("lora r8 · mnist-cnn/digits")
    label: str = ""  # with the count ("… (3 seeds)")
    run_ids: list[str] = field(default_factory=list)

    @property
    def seeds(self) -> list[Any]:
        return [_plain(s) for s in self.runs["seed"]] if "seed" in self.runs else [None] * len(self.runs)

    def values(self, metric: str) -> np.ndarray:
        """The per-run final value of `metric`; NaN for a run without one, and for a run that did not
        complete: a stopped run trained less, so it is no replicate of the finished ones."""
        if metric not in self.runs:
            return np.full(len(self.runs), np.nan)
        values = pd.to_numeric(self.runs[metric], errors="coerce").to_numpy(float, copy=True)
        if "status" in self.runs:
            values[(self.runs["status"] != "completed").to_numpy()] = np.nan
        return values

    def stats(self, metric: str) -> dict[str, Any]:
        """mean, std and n over the runs that have the metric (see `summary`)."""
        return summary(self.values(metric))


def groups(runs: pd.DataFrame) -> list[Group]:
    """Fold the runs frame into seed groups, in the order each group's first run appears."""
    if not isinstance(runs, pd.DataFrame) or runs.empty or "id" not in runs:
        return []
    runs = runs.drop_duplicates("id").reset_index(drop=True)
    keys: dict[str, list[int]] = {}
    rows = runs.to_dict("records")
    for i, row in enumerate(rows):
        keys.setdefault(seed_key(row), []).append(i)
    out = []
    for key, index in keys.items():
        part = runs.iloc[index].reset_index(drop=True)
        names = part["name"].astype(str).tolist() if "name" in part else part["id"].astype(str).tolist()
        out.append(Group(key, settings(rows[index[0]]), part, group_stem(names), group_label(names),
                         part["id"].astype(str).tolist()))
    return out


class Pair(NamedTuple):
    """Two groups that differ in one setting: `setting` (a dotted config key) with `values` (a's, b's)."""

    a: Group
    b: Group
    setting: str
    values: tuple[Any, Any]


_MISSING = "(unset)"


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The settings where two groups differ; a different method is one setting (its options come with it)."""
    keys = [k for k in dict.fromkeys([*a, *b]) if json.dumps(a.get(k, _MISSING), default=str)
            != json.dumps(b.get(k, _MISSING), default=str)]
    if "method" in keys:
        keys = [k for k in keys if not k.startswith("method_options.")]
    return keys


def one_factor_pairs(found: Sequence[Group]) -> list[Pair]:
    """Every pair of groups whose settings differ in exactly one place, in group order."""
    out = []
    for i, a in enumerate(found):
        for b in found[i + 1:]:
            diff = differences(a.settings, b.settings)
            if len(diff) == 1:
                key = diff[0]
                out.append(Pair(a, b, key, (a.settings.get(key, _MISSING), b.settings.get(key, _MISSING))))
    return out


def setting_label(key: str) -> str:
    """'method_options.rank' -> 'rank': how a page names a setting."""
    return key.removeprefix("method_options.")


def side_name(pair: Pair, which: int) -> str:
    """How a verdict names a side of a pair: 'rank=8', or a method with its options as in run names
    ('lora r4', 'full'), so two pairs of the same methods read apart."""
    value = pair.values[which]
    if pair.setting != "method":
        return f"{setting_label(pair.setting)}={value}"
    from workbench.peft import METHODS, option_tokens

    group = (pair.a, pair.b)[which]
    options = {k.split(".", 1)[1]: v for k, v in group.settings.items() if k.startswith("method_options.")}
    return " ".join([str(value), *option_tokens(str(value), options)]) if value in METHODS else str(value)


def verdict(a: Group, b: Group, metric: str, a_name: str | None = None, b_name: str | None = None) -> Any:
    """`significance.compare` on two groups' per-seed values (a `Verdict`; names default to the groups')."""
    from workbench.explain.significance import compare

    return compare(a.values(metric), b.values(metric), metric=metric, a_name=a_name or a.name,
                   b_name=b_name or b.name)


def pair_verdict(pair: Pair, metric: str) -> Any:
    """The verdict of a one-factor pair, its sides named by the setting's values."""
    return verdict(pair.a, pair.b, metric, side_name(pair, 0), side_name(pair, 1))


def seeds_figure(found: Sequence[Group], metric: str) -> Any:
    """Each group's per-seed values as dots, with its mean ± std: the seed noise a verdict weighs.

    Groups run down the y axis (their labels are long run names), values along x.
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    from workbench.charts_style import empty_figure, style_figure

    title = f"{metric} per seed"
    if not any(np.isfinite(g.values(metric)).any() for g in found):
        return empty_figure(title)
    fig = go.Figure()
    labels = [g.label for g in found]
    labels = [f"{label} #{n + 1}" if labels.count(label) > 1 else label for n, label in enumerate(labels)]
    for n, (group, label) in enumerate(zip(found, labels, strict=True)):
        values, color = group.values(metric), qualitative.Plotly[n % len(qualitative.Plotly)]
        keep = np.isfinite(values)
        stats = group.stats(metric)
        fig.add_trace(go.Scatter(
            y=[label] * int(keep.sum()), x=values[keep], mode="markers", name=label,
            marker=dict(color=color, size=10, opacity=0.75),
            customdata=[f"seed {s}" for s, k in zip(group.seeds, keep, strict=True) if k],
            hovertemplate=f"%{{customdata}}<br>{metric} %{{x:.4g}}<extra>%{{y}}</extra>"))
        if stats["mean"] is not None:
            fig.add_trace(go.Scatter(
                y=[label], x=[stats["mean"]], mode="markers", showlegend=False,
                marker=dict(color=color, size=18, symbol="line-ns-open", line=dict(width=3, color=color)),
                error_x=dict(type="data", array=[stats["std"] or 0.0], color=color, thickness=1.5, width=8),
                hovertemplate=f"mean %{{x:.4g}} ± {stats['std'] or 0.0:.3g} (n={stats['n']})<extra>%{{y}}</extra>"))
    fig = style_figure(fig, title, metric, "", height=110 + 45 * len(found)).update_layout(showlegend=False)
    return fig.update_yaxes(autorange="reversed", automargin=True).update_layout(margin=dict(t=60, b=50))


def headline(columns: Sequence[str]) -> str | None:
    """The final metric to summarise a group by: the first of HEADLINE present, else None."""
    present = set(columns)
    return next((m for m in HEADLINE if m in present), None)


# -- starting a group ---------------------------------------------------------------------------------
def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]: whole numbers, each once, at most MAX_REPLICATES (a refusal otherwise)."""
    parts = [p.strip() for p in str(text).split(",")]
    if not all(re.fullmatch(r"\d+", p) for p in parts):
        raise ConfigError(f"seeds must be comma-separated whole numbers: give e.g. --seeds 0,1,2. {received(seeds=text)}")
    seeds = [int(p) for p in parts]
    check_seeds(seeds, text)
    return seeds


def check_seeds(seeds: Sequence[int], shown: Any = None) -> None:
    """Each seed once, at least one, at most MAX_REPLICATES (a duplicate would train the same run twice)."""
    shown = list(seeds) if shown is None else shown
    if not seeds or len(seeds) > MAX_REPLICATES:
        raise ConfigError(f"Give between 1 and {MAX_REPLICATES} seeds, e.g. 0,1,2. {received(seeds=shown)}")
    if len(set(seeds)) != len(seeds):
        twice = next(s for s in seeds if list(seeds).count(s) > 1)
        raise ConfigError(f"Seed {twice} is given twice: the same seed trains the same run again, give each "
                          f"seed once. {received(seeds=shown)}")


def replicates(config: Any, seeds: Sequence[int]) -> list[Any]:
    """The TrainConfig once per seed; with several seeds an explicit name gets " · s<seed>", so each run
    stays apart in a list (an automatic name ends with the seed already)."""
    from workbench.config import TrainConfig

    check_seeds(seeds)
    out = []
    for seed in seeds:
        values = {**config.to_dict(), "seed": int(seed)}
        if config.name and len(seeds) > 1:
            tail = f" · s{seed}"
            values["name"] = config.name[:80 - len(tail)].rstrip() + tail
        out.append(TrainConfig.from_dict(values))
    return out


def run_line(run: Mapping[str, Any]) -> str:
    """One line per replicate (the CLI's --seeds): id, seed, status and its headline metric."""
    metric = headline([k for k, v in run.items() if isinstance(v, int | float)])
    value = f" · {metric} {run[metric]:.4f}" if metric else ""
    return f"run {run['run_id']} seed {run.get('seed')}: {run['status']}{value}"


def group_report(runs: Sequence[Mapping[str, Any]], stopped: bool = False) -> dict[str, Any]:
    """The group of run summaries (run_id, name, seed, status, final metrics): its headline metric's mean,
    std and n over the completed runs, their status, and `text`, the line a person reads."""
    metric = headline([k for r in runs for k, v in r.items() if isinstance(v, int | float)])
    values = [r.get(metric) if metric and r["status"] == "completed" else None for r in runs]
    stats = summary(values)
    statuses = {r["status"] for r in runs}
    status = "completed" if statuses == {"completed"} else "stopped" if stopped else "failed"
    label = group_label([r["name"] for r in runs])
    spread = f" ± {stats['std']:.4f}" if stats["std"] is not None else ""
    value = (f"{metric} {stats['mean']:.4f}{spread} over {stats['n']} seed{'s' if stats['n'] != 1 else ''}"
             if stats["mean"] is not None else "no final metric")
    return {"group": label, "status": status, "metric": metric, **stats, "seeds": [r.get("seed") for r in runs],
            "values": values, "run_ids": [r["run_id"] for r in runs], "runs": list(runs),
            "text": f"group {label}: {status}, {value}"}


def summary(values: Sequence[float]) -> dict[str, Any]:
    """mean, std (ddof=1), n over the finite values: the CLI's group line."""
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    v = v[np.isfinite(v)]
    return {"mean": float(v.mean()) if len(v) else None, "std": float(v.std(ddof=1)) if len(v) > 1 else None,
            "n": int(len(v))}


__all__ = ["HEADLINE", "Group", "Pair", "check_seeds", "differences", "group_label", "group_report", "group_stem",
           "groups", "headline", "one_factor_pairs", "pair_verdict", "parse_seeds", "replicates", "run_line",
           "seed_key", "seeds_figure", "setting_label", "settings", "side_name", "summary", "verdict"]
