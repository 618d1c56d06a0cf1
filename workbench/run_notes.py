"""Notes a run's numbers need: when a toggle changed nothing, a result looks like evidence, so say so.

A plateau schedule that never cut the LR trained exactly like a constant LR; a staging mode with a
single stage trained exactly like hierarchical off. Both read as "plateau ≈ constant" or "bottom-up ≈
off" unless the page says why. These functions read what the trainer recorded (`train/lr`,
`val/loss`, `trainable/<group>` rows of the run store), never the config's intent alone, so they
also explain finished runs from before this module existed. Engine-only: no Streamlit, no Keras.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import received

_REL = 1e-6  # an LR counts as cut when it falls by more than this fraction (float32 round-trips)


def what_trains(method: str) -> str:
    """What unfreezing a group turns on, in the method's words (the notes and `StagePlan.no_effect`)."""
    from workbench.peft import METHODS

    return METHODS[method].capabilities.what_trains if method in METHODS else f"{method} parameters"


def _one_run(metrics: pd.DataFrame | None) -> pd.DataFrame | None:
    """The rows of the single run in `metrics` (None when there are none)."""
    if not isinstance(metrics, pd.DataFrame) or metrics.empty or not {"key", "step", "value"} <= set(metrics):
        return None
    if "run_id" in metrics and metrics["run_id"].nunique() > 1:
        ids = sorted(metrics["run_id"].unique())[:3]
        raise ValueError(f"A run note reads one run's metrics: filter the frame to one run_id first. "
                         f"{received(run_ids=ids)}")
    return metrics


def _series(m: pd.DataFrame, key: str) -> pd.DataFrame:
    return m[m["key"] == key].sort_values("step", kind="stable")


def plateau_fired(metrics: pd.DataFrame, run_id: str) -> bool | None:
    """Did the run's LR ever drop, by its recorded `train/lr` rows? None: no LR recorded (yet)."""
    if not isinstance(metrics, pd.DataFrame) or metrics.empty:
        return None
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["key"] == "train/lr")] if "run_id" in metrics else \
        metrics[metrics["key"] == "train/lr"]
    if rows.empty:
        return None
    lrs = rows.sort_values("step", kind="stable")["value"].to_numpy(float)
    return bool(np.any(lrs[1:] < lrs[:-1] * (1 - _REL)))


def plateau_note(config: dict[str, Any], metrics: pd.DataFrame) -> str | None:
    """Whether and why a plateau run's LR moved, from its recorded rows; None for other schedules or no data.

    Never fired, the run trained as with a constant LR, which the note says with the reason read
    from the validation losses: they kept improving, or the run was not longer than the patience,
    or the only plateau came at the last epoch (a cut decided then acts on no step).
    """
    if config.get("lr_schedule") != "plateau" or (m := _one_run(metrics)) is None:
        return None
    lr_rows = _series(m, "train/lr")
    if lr_rows.empty:
        return None
    lrs, steps = lr_rows["value"].to_numpy(float), lr_rows["step"].to_numpy()
    cuts = np.flatnonzero(lrs[1:] < lrs[:-1] * (1 - _REL)) + 1
    if len(cuts):
        where = ", ".join(str(int(s)) for s in steps[cuts][:5]) + (" …" if len(cuts) > 5 else "")
        return (f"plateau fired {len(cuts)} time{'s' if len(cuts) > 1 else ''} (at step {where}): "
                f"the LR went from {lrs[0]:.3g} to {lrs[-1]:.3g}")
    lr = f"{lrs[0]:.3g}"
    val = _series(m, "val/loss")["value"].to_numpy(float)
    patience = int(config.get("plateau_patience") or 1)
    if len(val) == 0:
        return f"plateau never fired: the run ended before its first validation, so the LR stayed at {lr}"
    if len(val) < patience + 2:  # epoch 1 always improves; a cut after epoch 1 + patience acts on the next one
        return (f"plateau never fired: {len(val)} epoch{'s are' if len(val) > 1 else ' is'} too few for a patience of "
                f"{patience} (a cut needs at least {patience + 2}), so the LR stayed at {lr} (a constant LR)")
    if float(config.get("min_lr") or 0.0) >= lrs[0]:
        return f"plateau never fired: the LR {lr} was already at min_lr, so it could not be cut"
    streak = _longest_stall(val[:-1])  # a stall ending at the last epoch would cut after the last step
    if streak == 0:
        tail = " (it stalled only at the last epoch, too late to act)" if _longest_stall(val) else ""
        return f"plateau never fired: validation loss kept improving{tail}, so the LR stayed at {lr} (a constant LR)"
    if streak < patience:
        return (f"plateau never fired: validation loss never stalled for {patience} epochs in a row before the last "
                f"one (at most {streak}), so the LR stayed at {lr} (a constant LR)")
    return f"plateau never fired, so the LR stayed at {lr} (a constant LR)"


def _longest_stall(val: np.ndarray) -> int:
    """The most epochs in a row whose validation loss did not beat the best so far (NaN never does)."""
    best, run, longest = np.inf, 0, 0
    for v in val:
        if not np.isnan(v) and v < best:
            best, run = v, 0
        else:
            run += 1
            longest = max(longest, run)
    return longest


def staging_note(config: dict[str, Any], metrics: pd.DataFrame, groups: Sequence[str] | None = None) -> str | None:
    """What a hierarchical run's stages were, by its `trainable/<group>` rows; None when staging is off or unrecorded.

    Says when staging changed nothing (one stage: everything that trains trained from step 0, as with
    hierarchical off) and, given the model's `groups` (bottom to top), which groups had nothing to
    train under the method and so were no stage (the trainer records only the groups it stages).
    """
    mode = config.get("hierarchical") or "off"
    if mode == "off" or (m := _one_run(metrics)) is None:
        return None
    rows = m[m["key"].str.startswith("trainable/")]
    if rows.empty:
        return None
    staged = [k[len("trainable/"):] for k in rows.sort_values("step", kind="stable")["key"].unique()]
    order = [g for g in groups if g in staged] if groups else staged
    method = config.get("method", "the method")
    skipped = [g for g in groups if g not in staged] if groups and not config.get("tie_layers") else []
    untrained = (f"; {', '.join(skipped)} {'has' if len(skipped) == 1 else 'have'} nothing to train under "
                 f"{method}, so no stage" if skipped else "")
    body = [g for g in order if g != "head"]
    n_stages = rows["step"].nunique()
    if n_stages == 1:
        if not body:
            return (f"{mode} changed nothing: nothing below the head trains under {method}, so the run had one "
                    f"stage, as with hierarchical off{untrained}")
        return (f"{mode} changed nothing: only {body[0]} has {what_trains(method)} to train, so it trained with the "
                f"head from step 0 (one stage, as with hierarchical off){untrained}")
    starts = sorted(int(s) for s in rows["step"].unique())
    return f"{n_stages} stages (starting at steps {', '.join(map(str, starts))}){untrained}"


def engine_note(config: dict[str, Any], metrics: pd.DataFrame, groups: Sequence[str] | None = None) -> str | None:
    """The work the engine skipped, by its `cache/groups` and `feed/trimmed_share` rows (None: none).

    Why say it: a cached prefix runs in inference mode (no dropout in those groups while frozen), so a
    user comparing a run with and without it must know which steps it covered."""
    if (m := _one_run(metrics)) is None:
        return None
    parts = []
    cuts = m[m["key"] == "cache/groups"].sort_values("step", kind="stable")
    if (cuts["value"] > 0).any():
        names = [g for g in (groups or []) if g != "head"]
        def span(n: int) -> str:
            if not n:
                return "nothing cached"
            if len(names) >= n:
                return names[0] if n == 1 else f"{names[0]} … {names[n - 1]}"
            return f"the lowest {n} groups"
        spans = ", ".join(f"from step {int(r.step)} {span(int(r.value))}" for r in cuts.itertuples())
        parts.append(f"frozen-prefix cache: the frozen lowest groups ran once per example, in inference mode "
                     f"(without their dropout), instead of every step ({spans})")
    trimmed = m[m["key"] == "feed/trimmed_share"]
    if not trimmed.empty and float(trimmed["value"].iloc[-1]) > 0:
        grouped = " grouped by length and" if config.get("length_buckets", True) else ""
        parts.append(f"token batches{grouped} trimmed to their longest row: {float(trimmed['value'].iloc[-1]):.0%} "
                     "of the padded positions were never computed")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] if parts else None


__all__ = ["engine_note", "plateau_fired", "plateau_note", "staging_note", "what_trains"]


def run_notes(config: dict[str, Any], metrics: pd.DataFrame, groups: Sequence[str] | None = None) -> list[str]:
    """Every note a finished run's page shows (plateau, staging)."""
    return [n for n in (plateau_note(config, metrics), staging_note(config, metrics, groups),
                        engine_note(config, metrics, groups)) if n]


def no_effect_notes(runs: pd.DataFrame, metrics: pd.DataFrame,
                    groups_of: Callable[[str], Sequence[str] | None]) -> list[tuple[str, str]]:
    """(run name, note) for the finished runs of a comparison whose toggle changed nothing.

    `runs` has id, name, status, model and config per run (the run store's `runs_frame`); `groups_of`
    gives a model's layer groups (None for a user's file)."""
    out = []
    for row in runs.itertuples():
        if row.status in ("queued", "running"):
            continue
        for note in run_notes(row.config, metrics[metrics["run_id"] == row.id], groups_of(row.model)):
            if "never fired" in note or "changed nothing" in note:
                out.append((row.name, note))
    return out

