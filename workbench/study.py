"""`workbench study`: a small grid over the three principles on CPU-friendly models, written up honestly.

Runs method × sharing × hierarchical × LR schedule on the built-in models and shipped data, several
seeds each, through the RunManager (so the runs also appear in the app), then writes
`docs/results.md` and `docs/results.csv`: trainable parameters, validation/test metric mean ± std,
wall time, and head-to-head verdicts computed from the numbers — including where the source
document's claims do not hold here.

A toggle row whose numbers equal its baseline's (the same options without the toggle), seed by seed
to the last digit, did not test the toggle at all: the report marks it and says why, from the engine
(a stage plan with one stage, a plateau that never cut the LR, sharing with nothing to share).
`rerender_report` rewrites the report from the stored `results.csv` without training anything.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from workbench.config import TrainConfig
from workbench.runs import RunManager
from workbench.train.device import device_name

IMAGE = dict(model="mnist-cnn", data="digits", limit_per_class=20, epochs=6, batch_size=16, export_model=False)
TEXT = dict(model="tiny-bert", data="sms-spam", max_rows=1500, max_seq_len=48, epochs=3, batch_size=32,
            export_model=False)



def grid_variants(text: bool) -> list[tuple[str, dict]]:
    """(label, options): each method's own study rows (from the registry; the baseline's first, then the
    default method's, so `--quick` runs both), then the principle rows:
    staging on the baseline and the default method, schedules and discriminative LRs on the baseline."""
    from workbench.peft import method_with_role, methods

    full, lora = method_with_role("baseline").name, method_with_role("default").name
    ordered = sorted(methods(), key=lambda m: (m.name != full, m.name != lora))  # baseline, default, the rest
    rows = [(label, {"method": m.name, **options}) for m in ordered if text or not m.capabilities.text_only
            for label, options in m.study]
    rows += [(f"{name} {mode}", dict(method=name, hierarchical=mode))
             for name in (full, lora) for mode in ("bottom-up", "top-down")]
    rows += [(f"{full} {schedule}", dict(method=full, lr_schedule=schedule)) for schedule in ("plateau", "warmup-cosine", "stlr")]
    rows += [(f"{full} discriminative 2.6", dict(method=full, discriminative=2.6)),
             # A higher LR that overshoots, where "if the model stops improving, lower the LR" has work to do.
             (f"{full} high LR", dict(method=full, lr_scale=3.0)),
             (f"{full} high LR plateau", dict(method=full, lr_scale=3.0, lr_schedule="plateau"))]
    return rows


def questions(variants: list[tuple[str, dict]]) -> list[tuple[str, str, str]]:
    """Head-to-head questions the write-up answers from the numbers: (question, variant, other variant)."""
    from workbench.peft import method_with_role

    full, lora = method_with_role("baseline"), method_with_role("default")
    first = {}
    for label, options in variants:
        first.setdefault(options["method"], label)
    out = [(f"Does {lora.description.split(':')[0]} match {full.name} fine-tuning?", first[lora.name], first[full.name])]
    out += [(f"Does {label} (sharing) keep {first[o['method']]}'s accuracy?", label, first[o["method"]])
            for label, o in variants if o.get("share", "off") != "off" and len(o) == 2]
    out += [(f"Does {label} match {full.name} fine-tuning?", label, first[full.name])
            for name, label in first.items() if name not in (full.name, lora.name)]
    f = full.name
    out += [(f"Bottom-up (the source document) vs top-down (ULMFiT), {f}", f"{f} bottom-up", f"{f} top-down"),
            (f"Bottom-up vs top-down, {lora.name}", f"{lora.name} bottom-up", f"{lora.name} top-down"),
            ("Reduce-on-plateau (the source document) vs constant LR", f"{f} plateau", first[f]),
            ("STLR (ULMFiT) vs constant LR", f"{f} stlr", first[f]),
            ("Discriminative LRs vs one LR", f"{f} discriminative 2.6", first[f]),
            ("Reduce-on-plateau at a high LR vs the same constant high LR", f"{f} high LR plateau", f"{f} high LR")]
    return out


@dataclass
class Suite:
    name: str
    base: dict
    metric: str  # final_metrics key of the test metric
    variants: list[tuple[str, dict]]


SUITES = [
    Suite("image: mnist-cnn → digits (20 labels/class)", IMAGE, "test_accuracy", grid_variants(text=False)),
    Suite("text: tiny-bert → sms-spam (1,500 rows)", TEXT, "test_accuracy", grid_variants(text=True)),
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
    config = TrainConfig.from_dict({**base, **options, "seed": seed, "name": f"study {label} s{seed}", "tags": ["study"]})
    if scale:
        modality = "image" if base["model"] == "mnist-cnn" else "text"
        config = TrainConfig.from_dict({**config.to_dict(), "lr": config.resolved_lr(modality) * scale})
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


# The principle toggles: a variant with one of them has a baseline, the same options without it.
TOGGLES = ("share", "hierarchical", "lr_schedule", "discriminative")
SAME = ("test_metric", "val_loss", "val_accuracy")  # equal in all of these, seed by seed: the same run


@dataclass(frozen=True)
class Same:
    """A toggle row whose result equals its baseline's in `same` of `seeds` seeds, and why."""

    variant: str
    baseline: str
    same: int
    seeds: int
    why: str

    @property
    def always(self) -> bool:
        return self.same == self.seeds


def baseline_variant(label: str, variants: list[tuple[str, dict]]) -> str | None:
    """The row `label` toggles one principle on: its options without the toggles (None: not a toggle row)."""
    options = dict(variants).get(label)
    if options is None:
        return None
    base = {k: v for k, v in options.items() if k not in TOGGLES}
    return next((other for other, o in variants if o == base), None) if base != options else None


def same_as_baseline(frame: pd.DataFrame, suite: Suite) -> list[Same]:
    """The toggle rows of `suite` whose numbers equal their baseline's in at least one seed."""
    part = frame[(frame.suite == suite.name) & (frame.status == "completed")]
    out = []
    for label, options in suite.variants:
        base = baseline_variant(label, suite.variants)
        if base is None:
            continue
        mine, theirs = (part[part.variant == v].set_index("seed")[list(SAME)] for v in (label, base))
        seeds = [s for s in mine.index if s in theirs.index]
        same = [s for s in seeds if _equal(mine.loc[s], theirs.loc[s])]
        if same:
            cuts = part[(part.variant == label) & part.seed.isin(same)].lr_cuts
            out.append(Same(label, base, len(same), len(seeds), why_same(suite, options, cuts, len(same) < len(seeds))))
    return out


def _equal(a: pd.Series, b: pd.Series) -> bool:
    return all(x == y or (_nan(x) and _nan(y)) for x, y in zip(a, b, strict=True))


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def why_same(suite: Suite, options: dict, lr_cuts: pd.Series, some_seeds: bool) -> str:
    """The engine's reason a toggle changed nothing: its stage plan, the recorded LR cuts, what sharing shares."""
    from workbench.preview import model_facts
    from workbench.train.stages import plan_stages

    config = study_config(suite.base, options, 0, "why")
    facts = model_facts(config)
    reasons = []
    if options.get("hierarchical"):
        plan = plan_stages(facts.group_names, facts.trainable_groups, config.hierarchical)
        reasons += [why] if (why := plan.no_effect(config.method)) else []
    if options.get("lr_schedule") == "plateau" and (lr_cuts == 0).all():
        where = "in those seeds" if some_seeds else "in any seed"
        epochs = "one epoch" if config.plateau_patience == 1 else f"{config.plateau_patience} epochs in a row"
        reasons.append(f"plateau never cut the LR {where}: validation loss never stopped improving for {epochs} "
                       "before the last epoch, so the LR stayed constant")
    if options.get("share") and facts.plain_trainable == facts.report.trainable:
        reasons.append(f"{config.share} sharing changes nothing here: no two {config.method} layers of "
                       f"{config.model} have the same shape, so there is nothing to share")
    return "; ".join(reasons) or "the toggle left every recorded number unchanged"


def _verdict_note(question: tuple[str, str, str], same: list[Same]) -> str:
    _, a, b = question
    for s in same:
        if s.always and s.variant in (a, b):
            if s.baseline in (a, b):
                return f" — the same runs ({s.why})"
            return f" — but {s.variant} ran exactly as {s.baseline} ({s.why})"
    return ""


def write_report(frame: pd.DataFrame, out_dir: Path, seeds: int, generated: str | None = None) -> None:
    """results.md/.json from the per-seed rows (and results.csv, unless `generated` re-renders an old run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if generated is None:
        frame.to_csv(out_dir / "results.csv", index=False)
    table = summarize(frame)
    header = generated or (
        f"Generated by `make study` (`workbench study`) on {time.strftime('%Y-%m-%d')}, device: {device_name()}, "
        f"{_cores()} cores, Python {platform.python_version()}, Keras {keras.__version__} "
        f"({keras.backend.backend()}). {seeds} seeds per row (mean ± std); test metric = accuracy on the held-out "
        "test split. Raw rows: `results.csv`.")
    if generated is not None:
        header += (f" Re-rendered on {time.strftime('%Y-%m-%d')} from `results.csv` (nothing retrained) to mark "
                   "the rows identical to their baseline.")
    sameness = {suite.name: same_as_baseline(frame, suite) for suite in SUITES}
    lines = [
        "# Results study: the three principles on CPU-friendly models",
        "",
        header,
        "",
        "These numbers are small-data, few-epoch runs: they show what happens *here*, not a general ranking.",
        "Wall times are indicative only: other jobs may have shared the two cores (see `make bench` for speed).",
        "Hierarchical rows split the run evenly into stages (no `stage_epochs` given); schedule rows use the",
        "method's default LR (full: 1e-3 for the CNN, 5e-5 for tiny-bert). Plateau uses patience 1, factor 0.5;",
        "the `LR cuts` column counts how often it actually fired (mean over seeds).",
        "A row marked (= baseline) gave the same numbers as its baseline, seed by seed to the last digit: the",
        "toggle changed nothing there, so the row is no evidence about the toggle (the reason follows the table).",
        "",
    ]
    for suite, part in table.groupby("suite", sort=False):
        same = {s.variant: s for s in sameness.get(suite, [])}
        lines += [f"## {suite}", "",
                  "| variant | trainable params | trainable % | test accuracy | best val loss | LR cuts | wall s |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for row in part.itertuples():
            mark = ""
            if (s := same.get(row.variant)) is not None:
                mark = f" (= {s.baseline})" if s.always else f" (= {s.baseline} in {s.same} of {s.seeds} seeds)"
            lines.append(f"| {row.variant}{mark} | {row.trainable_params:,} | {row.trainable_pct:.2f} | "
                         f"{row.test_mean:.3f} ± {_nz(row.test_std):.3f} | {row.val_loss_mean:.3f} ± "
                         f"{_nz(row.val_loss_std):.3f} | {row.lr_cuts:.1f} | {row.wall_s:.1f} |")
        if same:
            lines += ["", "Rows identical to their baseline (same numbers, seed by seed), and why:", ""]
            lines += [f"- **{s.variant}** = **{s.baseline}** in {s.same} of {s.seeds} seeds: {s.why}."
                      for s in same.values()]
        lines += ["", "What wins here (a win needs a gap larger than the seed spread):", ""]
        by_variant = part.set_index("variant", drop=False)
        for question, a, b in questions(grid_variants(text=True)):
            if a in by_variant.index and b in by_variant.index:
                note = _verdict_note((question, a, b), list(same.values()))
                lines.append(f"- {question} {verdict(by_variant.loc[a], by_variant.loc[b])}{note}")
        distinct = part[~part.variant.isin([v for v, s in same.items() if s.always])]  # a copy is not a contender
        top = distinct[distinct.test_mean == distinct.test_mean.max()]  # exact ties are all named
        spread = max(_nz(v) for v in top.test_std)
        cheapest = distinct[distinct.test_mean >= top.test_mean.iloc[0] - spread].sort_values(
            "trainable_params", kind="stable").iloc[0]
        names = ", ".join(f"**{v}**" for v in top.variant) + (" (tied)" if len(top) > 1 else "")
        lines += [f"- Best mean test accuracy: {names} ({top.test_mean.iloc[0]:.3f}); the cheapest variant within "
                  f"one std of it: **{cheapest.variant}** ({cheapest.trainable_params:,} trainable parameters).", ""]
    failed = frame[frame.status != "completed"]
    if len(failed):
        lines += ["## Runs that did not complete", ""]
        lines += [f"- {r.suite} / {r.variant} / seed {r.seed}: {r.status}" for r in failed.itertuples()]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    notes = {(suite, s.variant): s for suite, found in sameness.items() for s in found}
    records = json.loads(table.to_json(orient="records"))
    for record in records:
        s = notes.get((record["suite"], record["variant"]))
        record.update(same_as=s.baseline if s else None, same_seeds=s.same if s else 0, same_why=s.why if s else None)
    (out_dir / "results.json").write_text(json.dumps(records, indent=1))


def rerender_report(out_dir: str | Path = "docs") -> None:
    """Rewrite results.md/.json from the stored results.csv (no training), keeping the original header."""
    out_dir = Path(out_dir)
    frame = pd.read_csv(out_dir / "results.csv")
    old = (out_dir / "results.md").read_text(encoding="utf-8").splitlines()
    generated = next((line.split(" Re-rendered on ")[0] for line in old if line.startswith("Generated by")), None)
    write_report(frame, out_dir, int(frame.seed.nunique()), generated=generated or "Generated by `workbench study`.")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


__all__ = ["SUITES", "grid_variants", "questions", "rerender_report", "run_study", "same_as_baseline", "summarize", "verdict"]

if __name__ == "__main__":  # python -m workbench.study: re-render docs/results.md from docs/results.csv
    rerender_report()
