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

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.config import TrainConfig
from workbench.errors import ConfigError, received
from workbench.presets import FORGETTING_LABELS, forgetting_variants
from workbench.runs import RunManager

IMAGE = dict(model="mnist-cnn", data="digits", limit_per_class=20, epochs=6, batch_size=16, export_model=False)
TEXT = dict(model="tiny-bert", data="sms-spam", max_rows=1500, max_seq_len=48, epochs=3, batch_size=32,
            export_model=False)
FORGET = dict(model="mnist-cnn", data="digits", method="full", export_model=False)  # + the preset's settings
SPEECH = dict(model="spoken-digit-cnn", data="fsdd-new-voice", limit_per_class=5, epochs=20, batch_size=16,
              export_model=False)
BEFORE = "no adaptation (as shipped)"  # the speech suite's row of the pretrained classifier on each seed's test split



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
    key: str = ""  # `workbench study --suites <key>`
    asks: list[tuple[str, str, str]] = field(default_factory=list)  # its questions (default: the grid's)
    about: str = ""  # a paragraph for the report: what the suite asks and how
    before: bool = False  # add the `BEFORE` row: each seed's `test_accuracy_before` of its first variant


def forgetting_questions(variants: list[tuple[str, dict]]) -> list[tuple[str, str, str]]:
    """Each variant of the forgetting scenario against full fine-tuning, on the target *and* the source task."""
    full = variants[0][0]
    return [(f"{label} vs {full}", label, full) for label, _ in variants[1:]]


_FORGET_VARIANTS = forgetting_variants(TrainConfig(**FORGET))
_SPEECH_VARIANTS = [("lora r=8", {"method": "lora"}), ("full", {"method": "full"}),
                    ("linear probe", {"method": "linear"}), ("adapter", {"method": "adapter"}),
                    ("bitfit", {"method": "bitfit"}), ("from scratch", {"method": "full", "from_scratch": True})]
_SPEECH_QUESTIONS = [("Do 5 recordings per digit through LoRA beat the model as shipped?", "lora r=8", BEFORE),
                     ("LoRA vs full fine-tuning", "lora r=8", "full"), ("LoRA vs a linear probe", "lora r=8", "linear probe"),
                     ("LoRA vs adapters", "lora r=8", "adapter"), ("LoRA vs BitFit", "lora r=8", "bitfit"),
                     ("Pretrained + LoRA vs the same model trained from scratch on the recordings", "lora r=8",
                      "from scratch")]
SUITES = [
    Suite("image: mnist-cnn → digits (20 labels/class)", IMAGE, "test_accuracy", grid_variants(text=False), "image"),
    Suite("text: tiny-bert → sms-spam (1,500 rows)", TEXT, "test_accuracy", grid_variants(text=True), "text"),
    Suite(f"forgetting: mnist-cnn → digits ({FORGETTING_LABELS} labels/class, high LR)", FORGET, "test_accuracy",
          _FORGET_VARIANTS, "forgetting", forgetting_questions(_FORGET_VARIANTS),
          about="The class preset \"Forgetting: full vs LoRA vs staged\": few labels and a learning rate 10× full "
                "fine-tuning's default, the same for every variant. *Source kept* is the pretrained CNN's own task "
                "(MNIST digits, held-out mnist-5k images, through its source head) before → after fine-tuning: what "
                "the fine-tuned backbone still knows. *Moved most* is the layer group whose weights changed most "
                "(relative change ‖W−W₀‖/‖W₀‖ at the end)."),
    Suite("speech: spoken-digit-cnn → a new voice (5 recordings/digit)", SPEECH, "test_accuracy", _SPEECH_VARIANTS,
          "speech", _SPEECH_QUESTIONS, before=True,
          about="Speaker adaptation: the spoken-digit CNN was pretrained on five FSDD voices; `fsdd-new-voice` is the "
                "sixth (nicolas), whom it never heard. Each run trains on 5 of his recordings per digit (50 in all) "
                "and is tested on his recordings it did not train on. *No adaptation* is the pretrained classifier "
                "as shipped, on each seed's same test split. Every pretrained variant's head starts as the pretraining's "
                "own 10-digit head (step 0 = the shipped model); *from scratch* is the same architecture with random "
                "weights trained on the same 50 recordings."),
]


def run_study(runs_dir: str | Path, out_dir: str | Path = "docs", seeds: int = 3, quick: bool = False,
              log: Callable[[str], None] = print, suites: Sequence[str] | None = None) -> pd.DataFrame:
    """Train the suites (all, or those whose `key` is in `suites`) and write the report; rows of suites not
    run this time are kept from the stored `results.csv`, so one suite can be redone alone."""
    from workbench.study_report import write_report

    unknown = sorted(set(suites or ()) - {s.key for s in SUITES})
    if unknown:
        raise ConfigError(f"Unknown study suite {unknown[0]!r}: use one or more of "
                          f"{', '.join(s.key for s in SUITES)}. {received(suites=','.join(suites))}")
    manager = RunManager(runs_dir)
    rows = []
    chosen = SUITES[:1] if quick else [s for s in SUITES if suites is None or s.key in suites]
    for suite in chosen:
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
                             "test_metric": final.get(suite.metric), "wall_s": record.wall_s, "run_id": run_id,
                             "date": time.strftime("%Y-%m-%d"), **{k: final.get(k) for k in EXPLAINED}})
                log(f"{suite.name} | {label} | seed {seed}: {status} test={final.get(suite.metric)} "
                    f"source={final.get('source_before')}→{final.get('source_after')}")
                if suite.before and label == variants[0][0] and final.get("test_accuracy_before") is not None:
                    rows.append({**rows[-1], "variant": BEFORE, "test_metric": final["test_accuracy_before"],
                                 "trainable_params": 0, "val_loss": None, "val_accuracy": None, "wall_s": 0.0,
                                 "source_after": final.get("source_before"), "change_max_group": None})
    frame = pd.DataFrame(rows)
    stored = Path(out_dir) / "results.csv"
    if suites is not None and not quick and stored.is_file():  # keep the other suites' rows
        old = pd.read_csv(stored)
        frame = pd.concat([old[~old.suite.isin([s.name for s in chosen])], frame], ignore_index=True)
    write_report(frame, Path(out_dir), seeds)
    return frame


# What the explain parts add to a study row: the source task before/after (retention) and the change map's verdict.
EXPLAINED = ("source_before", "source_after", "source_removed", "change_max_group", "explain_s_changes",
             "explain_s_retention")


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
    """One row per (suite, variant): means ± std over the seeds; the source task's before/after where recorded
    (a results.csv written before retention existed has no such columns: they stay NaN)."""
    done = frame[frame.status == "completed"].copy()
    for column in EXPLAINED:
        if column not in done:
            done[column] = np.nan
    done["source_before"] = pd.to_numeric(done["source_before"], errors="coerce")
    done["source_after"] = pd.to_numeric(done["source_after"], errors="coerce")
    grouped = done.groupby(["suite", "variant"], sort=False)
    table = grouped.agg(trainable_params=("trainable_params", "first"), total_params=("total_params", "first"),
                        test_mean=("test_metric", "mean"), test_std=("test_metric", "std"),
                        val_loss_mean=("val_loss", "mean"), val_loss_std=("val_loss", "std"),
                        wall_s=("wall_s", "mean"), seeds=("seed", "count"),
                        lr_cuts=("lr_cuts", "mean"), source_before=("source_before", "mean"),
                        source_mean=("source_after", "mean"), source_std=("source_after", "std"),
                        moved_most=("change_max_group", _mode)).reset_index()
    table["trainable_pct"] = 100 * table.trainable_params / table.total_params
    return table


def _mode(values: pd.Series) -> str | None:
    """The most frequent value over the seeds (the group that moved most), None when none was recorded."""
    values = values.dropna()
    return str(values.mode().iloc[0]) if len(values) else None


def verdict(a: pd.Series, b: pd.Series, a_values: Sequence[float], b_values: Sequence[float],
            metric: str = "test_accuracy") -> str:
    """Two variants (summary rows) head to head on their per-seed test values: Welch's t-test, the winner
    in bold only when the gap is beyond seed noise (`workbench.explain.significance`)."""
    from workbench.explain.significance import compare

    return compare(a_values, b_values, metric=metric, a_name=a.variant, b_name=b.variant).markdown


def _nz(value: float) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


# The principle toggles: a variant with one of them has a baseline, the same options without it.
TOGGLES = ("share", "hierarchical", "lr_schedule", "discriminative")
OFF = {"share": "off", "hierarchical": "off", "lr_schedule": "constant", "discriminative": None}  # each toggle's "off"
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
    off = {k: v for k, v in options.items() if k not in TOGGLES or v == OFF[k]}  # toggles left at "off" stay
    if off == options:
        return None
    plain = lambda o: {k: v for k, v in o.items() if k not in TOGGLES}  # noqa: E731
    return next((other for other, o in variants if other != label and plain(o) == plain(options)
                 and all(o.get(t, OFF[t]) == OFF[t] for t in TOGGLES)), None)


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


def rerender_report(out_dir: str | Path = "docs") -> None:
    """Rewrite results.md/.json from the stored results.csv (no training): `workbench.study_report`."""
    from workbench.study_report import rerender_report as rerender

    rerender(out_dir)


__all__ = ["SUITES", "grid_variants", "questions", "rerender_report", "run_study", "same_as_baseline", "summarize", "verdict"]

if __name__ == "__main__":  # python -m workbench.study: re-render docs/results.md from docs/results.csv
    rerender_report()
