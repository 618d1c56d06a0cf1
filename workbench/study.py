"""`workbench study`: a small grid over the three principles on CPU-friendly models, written up honestly.

Runs method × sharing × hierarchical × LR schedule on the built-in models and shipped data, several
seeds each, through the RunManager (so the runs also appear in the app), then writes
`docs/results.md` and `docs/results.csv`: trainable parameters, validation/test metric mean ± std,
wall time, and head-to-head verdicts computed from the numbers — including where the source
document's claims do not hold here.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from workbench.config import TrainConfig
from workbench.runs import RunManager
from workbench.train.device import device_name

IMAGE = dict(model="mnist-cnn", data="digits", limit_per_class=20, epochs=6, batch_size=16, export_model=False)
TEXT = dict(model="tiny-bert", data="sms-spam", max_rows=1500, max_seq_len=48, epochs=3, batch_size=32,
            export_model=False)

# (label, options): each row of the grid, applied to both suites unless the suite says otherwise.
VARIANTS: list[tuple[str, dict]] = [
    ("full", dict(method="full")),
    ("linear probe", dict(method="linear")),
    ("lora r=8", dict(method="lora")),
    ("lora tied", dict(method="lora", share="tied")),
    ("lora vera", dict(method="lora", share="vera")),
    ("bitfit", dict(method="bitfit")),
    ("adapter", dict(method="adapter")),
    ("adapter tied", dict(method="adapter", share="tied")),
    ("full bottom-up", dict(method="full", hierarchical="bottom-up")),
    ("full top-down", dict(method="full", hierarchical="top-down")),
    ("lora bottom-up", dict(method="lora", hierarchical="bottom-up")),
    ("lora top-down", dict(method="lora", hierarchical="top-down")),
    ("full plateau", dict(method="full", lr_schedule="plateau")),
    ("full warmup-cosine", dict(method="full", lr_schedule="warmup-cosine")),
    ("full stlr", dict(method="full", lr_schedule="stlr")),
    ("full discriminative 2.6", dict(method="full", discriminative=2.6)),
    # A higher LR that overshoots, where "if the model stops improving, lower the LR" has work to do.
    ("full high LR", dict(method="full", lr_scale=3.0)),
    ("full high LR plateau", dict(method="full", lr_scale=3.0, lr_schedule="plateau")),
]
TEXT_ONLY = [("prompt", dict(method="prompt"))]

# Head-to-head questions the write-up answers from the numbers.
QUESTIONS = [
    ("Does LoRA match full fine-tuning?", "lora r=8", "full"),
    ("Does tied LoRA (sharing) keep LoRA's accuracy?", "lora tied", "lora r=8"),
    ("Does VeRA-style sharing keep LoRA's accuracy?", "lora vera", "lora r=8"),
    ("Bottom-up (the source document) vs top-down (ULMFiT), full", "full bottom-up", "full top-down"),
    ("Bottom-up vs top-down, LoRA", "lora bottom-up", "lora top-down"),
    ("Reduce-on-plateau (the source document) vs constant LR", "full plateau", "full"),
    ("STLR (ULMFiT) vs constant LR", "full stlr", "full"),
    ("Discriminative LRs vs one LR", "full discriminative 2.6", "full"),
    ("Reduce-on-plateau at a high LR vs the same constant high LR", "full high LR plateau", "full high LR"),
]


@dataclass
class Suite:
    name: str
    base: dict
    metric: str  # final_metrics key of the test metric
    variants: list[tuple[str, dict]]


SUITES = [
    Suite("image: mnist-cnn → digits (20 labels/class)", IMAGE, "test_accuracy", VARIANTS),
    Suite("text: tiny-bert → sms-spam (1,500 rows)", TEXT, "test_accuracy", VARIANTS + TEXT_ONLY),
]


def run_study(runs_dir: str | Path, out_dir: str | Path = "docs", seeds: int = 3, quick: bool = False,
              log: Callable[[str], None] = print) -> pd.DataFrame:
    manager = RunManager(runs_dir)
    rows = []
    suites = SUITES[:1] if quick else SUITES
    for suite in suites:
        variants = suite.variants[:4] if quick else suite.variants
        for label, options in variants:
            for seed in range(seeds):
                config = study_config(suite.base, options, seed, label)
                run_id = manager.start(config)
                status = manager.wait(run_id)
                record = manager.store.get_run(run_id)
                final = record.final_metrics
                rows.append({"suite": suite.name, "variant": label, "seed": seed, "status": status,
                             "lr_cuts": lr_cuts(manager.store, run_id),
                             "trainable_params": record.trainable_params, "total_params": record.total_params,
                             "val_loss": final.get("best_val_loss"), "val_accuracy": final.get("val_accuracy"),
                             "test_metric": final.get(suite.metric), "wall_s": record.wall_s, "run_id": run_id})
                log(f"{suite.name} | {label} | seed {seed}: {status} test={final.get(suite.metric)}")
    frame = pd.DataFrame(rows)
    write_report(frame, Path(out_dir), seeds)
    return frame


def study_config(base: dict, options: dict, seed: int, label: str) -> TrainConfig:
    """`lr_scale` multiplies the method's default LR (so one row works for both suites)."""
    options = dict(options)
    scale = options.pop("lr_scale", None)
    config = TrainConfig(**{**base, **options, "seed": seed, "name": f"study {label} s{seed}", "tags": ["study"]})
    if scale:
        modality = "image" if base["model"] == "mnist-cnn" else "text"
        config = TrainConfig(**{**config.to_dict(), "lr": config.resolved_lr(modality) * scale})
    return config


def lr_cuts(store, run_id: str) -> int:
    """How often the LR dropped by a plateau cut (schedules that decay every step are not counted)."""
    lrs = store.metrics(run_id, keys=["train/lr"]).value.to_numpy()
    if len(lrs) < 2:
        return 0
    drops = np.diff(lrs) < 0
    return int(drops.sum()) if drops.mean() < 0.2 else 0


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    done = frame[frame.status == "completed"]
    grouped = done.groupby(["suite", "variant"], sort=False)
    table = grouped.agg(trainable_params=("trainable_params", "first"), total_params=("total_params", "first"),
                        test_mean=("test_metric", "mean"), test_std=("test_metric", "std"),
                        val_loss_mean=("val_loss", "mean"), val_loss_std=("val_loss", "std"),
                        wall_s=("wall_s", "mean"), seeds=("seed", "count"),
                        lr_cuts=("lr_cuts", "mean")).reset_index()
    table["trainable_pct"] = 100 * table.trainable_params / table.total_params
    return table


def verdict(a: pd.Series, b: pd.Series) -> str:
    """Compare two variants' test metric: a clear win needs a gap larger than both spreads."""
    gap = a.test_mean - b.test_mean
    spread = max(_nz(a.test_std), _nz(b.test_std))
    if abs(gap) <= spread or abs(gap) < 0.005:
        return f"no clear difference ({a.test_mean:.3f} vs {b.test_mean:.3f}; gap {gap:+.3f} within ±{spread:.3f})"
    winner = a.variant if gap > 0 else b.variant
    return f"**{winner}** wins ({a.test_mean:.3f} vs {b.test_mean:.3f}; gap {gap:+.3f}, spread ±{spread:.3f})"


def _nz(value: float) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def write_report(frame: pd.DataFrame, out_dir: Path, seeds: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / "results.csv", index=False)
    table = summarize(frame)
    lines = [
        "# Results study: the three principles on CPU-friendly models",
        "",
        f"Generated by `make study` (`workbench study`) on {time.strftime('%Y-%m-%d')}, device: {device_name()}, "
        f"{_cores()} cores, Python {platform.python_version()}, Keras {keras.__version__} "
        f"({keras.backend.backend()}). {seeds} seeds per row (mean ± std); test metric = accuracy on the held-out "
        "test split. Raw rows: `results.csv`.",
        "",
        "These numbers are small-data, few-epoch runs: they show what happens *here*, not a general ranking.",
        "Wall times are indicative only: other jobs may have shared the two cores (see `make bench` for speed).",
        "Hierarchical rows split the run evenly into stages (no `stage_epochs` given); schedule rows use the",
        "method's default LR (full: 1e-3 for the CNN, 5e-5 for tiny-bert). Plateau uses patience 1, factor 0.5;",
        "the `LR cuts` column counts how often it actually fired (mean over seeds).",
        "",
    ]
    for suite, part in table.groupby("suite", sort=False):
        lines += [f"## {suite}", "",
                  "| variant | trainable params | trainable % | test accuracy | best val loss | LR cuts | wall s |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for row in part.itertuples():
            lines.append(f"| {row.variant} | {row.trainable_params:,} | {row.trainable_pct:.2f} | "
                         f"{row.test_mean:.3f} ± {_nz(row.test_std):.3f} | {row.val_loss_mean:.3f} ± "
                         f"{_nz(row.val_loss_std):.3f} | {row.lr_cuts:.1f} | {row.wall_s:.1f} |")
        lines += ["", "What wins here (a win needs a gap larger than the seed spread):", ""]
        by_variant = part.set_index("variant", drop=False)
        for question, a, b in QUESTIONS:
            if a in by_variant.index and b in by_variant.index:
                lines.append(f"- {question} {verdict(by_variant.loc[a], by_variant.loc[b])}")
        best = part.sort_values("test_mean", ascending=False).iloc[0]
        cheapest = part[part.test_mean >= best.test_mean - _nz(best.test_std)].sort_values("trainable_params").iloc[0]
        lines += [f"- Best mean test accuracy: **{best.variant}** ({best.test_mean:.3f}); the cheapest variant within "
                  f"one std of it: **{cheapest.variant}** ({cheapest.trainable_params:,} trainable parameters).", ""]
    failed = frame[frame.status != "completed"]
    if len(failed):
        lines += ["## Runs that did not complete", ""]
        lines += [f"- {r.suite} / {r.variant} / seed {r.seed}: {r.status}" for r in failed.itertuples()]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / "results.json").write_text(json.dumps(json.loads(table.to_json(orient="records")), indent=1))


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


__all__ = ["QUESTIONS", "SUITES", "run_study", "summarize", "verdict"]
