"""How long will this run take here? An estimate from the runs this machine already finished.

Why measured, not modelled: the same LoRA run takes seconds on a GPU and minutes on a 2-core CPU,
and FLOP counts say little about Keras overheads on small models. Every completed run records its
steps, its training seconds (`fit_s`) and its wall time (`started` → `ended`), which is a free
calibration of this machine for that model × method:

    training seconds ≈ c + b · steps        (c: the first step's graph tracing, b: seconds per step)
    wall seconds     ≈ overhead + training  (overhead: loading data, building the model, evaluating, saving)

b comes from the earlier runs with the nearest batch size (× sequence length for text), scaled
linearly in that work when they differ; with runs of two or more lengths c and b are fitted by least
squares, else c = 0. With no completed run of the model × method there is no estimate (None): the
first run calibrates it. Calibrations are cached per runs directory × model × method × device and
rebuilt when that set of completed runs changes.
"""

from __future__ import annotations

import math
import statistics
import threading
from dataclasses import dataclass
from pathlib import Path

from workbench.config import TrainConfig
from workbench.runs.store import RunRecord, RunStore


@dataclass(frozen=True)
class Fit:
    """Seconds for `steps` training steps at one batch size × sequence length: c + b · steps."""

    batch_size: int
    seq_len: int
    per_step_s: float  # b
    first_step_s: float  # c
    runs: int


@dataclass(frozen=True)
class Calibration:
    """What this machine's completed runs of one model × method say about its speed."""

    model: str
    method: str
    fits: tuple[Fit, ...]
    overhead_s: float  # wall time outside training: data, model build, test evaluation, saving
    runs: int

    def nearest(self, batch_size: int, seq_len: int, text: bool = True) -> tuple[Fit, float]:
        """The fit measured closest (in work ratio) to this size, and the factor to scale its b by.

        Work per step is batch size × sequence length for text (attention and dense layers grow
        about linearly in both at these sizes), batch size alone otherwise; ties go to more runs.
        """
        work = lambda f: f.batch_size * (f.seq_len if text else 1)  # noqa: E731
        target = batch_size * (seq_len if text else 1)
        fit = min(self.fits, key=lambda f: (abs(math.log(target / work(f))), -f.runs))
        return fit, target / work(fit)


@dataclass(frozen=True)
class Estimate:
    """A predicted wall time and where it comes from (for the page to say so)."""

    seconds: float
    per_step_s: float
    startup_s: float
    runs: int  # the earlier runs the per-step time comes from
    model: str
    method: str
    scaled_from: str | None = None  # e.g. "batch size 16": the measured size, when it differs from this run's

    def describe(self) -> str:
        """'≈ 1m 20s on this machine (from 3 earlier lora runs of tiny-bert)'."""
        runs = f"{self.runs} earlier {self.method} run{'s' if self.runs != 1 else ''} of {Path(self.model).stem}"
        scaled = f", scaled from {self.scaled_from}" if self.scaled_from else ""
        return f"≈ {duration_text(self.seconds)} on this machine (from {runs}{scaled})"


def estimate_duration(config: TrainConfig, total_steps: int, store: RunStore, *, device: str | None = None,
                      modality: str | None = None) -> Estimate | None:
    """The expected wall time of `config` (`total_steps` training steps) on this machine, or None.

    `device` (e.g. `workbench.train.device.device_name()`) restricts the history to runs on that
    device; `modality` other than "text" makes the sequence length irrelevant to the cost.
    """
    cal = calibration(store, config.model, config.method, device=device)
    if cal is None:
        return None
    text = modality in (None, "text")
    fit, scale = cal.nearest(config.batch_size, config.max_seq_len, text=text)
    per_step = fit.per_step_s * scale
    scaled_from = None
    if scale != 1:
        scaled_from = f"batch size {fit.batch_size}" + (f", {fit.seq_len} tokens" if text else "")
    startup = cal.overhead_s + fit.first_step_s
    return Estimate(seconds=startup + per_step * max(int(total_steps), 0), per_step_s=per_step, startup_s=startup,
                    runs=fit.runs, model=config.model, method=config.method,
                    scaled_from=scaled_from)


_CACHE: dict[tuple[str, str, str, str | None], tuple[tuple[str, ...], Calibration | None]] = {}
_CACHE_LOCK = threading.Lock()


def calibration(store: RunStore, model: str, method: str, *, device: str | None = None) -> Calibration | None:
    """The cached calibration of `model` × `method` (None without a usable completed run)."""
    runs = [r for r in store.list_runs(("completed",)) if _usable(r, model, method, device)]
    key = (str(Path(store.runs_dir).resolve()), model, method, device)
    ids = tuple(sorted(r.id for r in runs))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None and cached[0] == ids:
            return cached[1]
    result = _calibrate(model, method, runs)
    with _CACHE_LOCK:
        _CACHE[key] = (ids, result)
    return result


def _usable(record: RunRecord, model: str, method: str, device: str | None) -> bool:
    metrics, config = record.final_metrics, record.config
    return (config.get("model") == model and config.get("method") == method
            and (device is None or record.device == device)
            and _positive(metrics.get("steps")) and _positive(metrics.get("fit_s"))
            and record.started is not None and record.ended is not None)


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _calibrate(model: str, method: str, runs: list[RunRecord]) -> Calibration | None:
    if not runs:
        return None
    groups: dict[tuple[int, int], list[RunRecord]] = {}
    for r in runs:
        size = (int(r.config.get("batch_size") or 32), int(r.config.get("max_seq_len") or 64))
        groups.setdefault(size, []).append(r)
    fits = tuple(_fit(bs, seq, members) for (bs, seq), members in groups.items())
    overhead = statistics.median(max(0.0, (r.ended - r.started) - r.final_metrics["fit_s"]) for r in runs)
    return Calibration(model=model, method=method, fits=fits, overhead_s=overhead, runs=len(runs))


def _fit(batch_size: int, seq_len: int, runs: list[RunRecord]) -> Fit:
    steps = [float(r.final_metrics["steps"]) for r in runs]
    seconds = [float(r.final_metrics["fit_s"]) for r in runs]
    b, c = sum(seconds) / sum(steps), 0.0
    if len(set(steps)) >= 2:  # least squares seconds = c + b·steps; keep it only when physical
        mean_x, mean_y = statistics.fmean(steps), statistics.fmean(seconds)
        slope = (sum((x - mean_x) * (y - mean_y) for x, y in zip(steps, seconds, strict=True))
                 / sum((x - mean_x) ** 2 for x in steps))
        intercept = mean_y - slope * mean_x
        if slope > 0 and intercept >= 0:
            b, c = slope, intercept
    return Fit(batch_size=batch_size, seq_len=seq_len, per_step_s=b, first_step_s=c, runs=len(runs))


def duration_text(seconds: float) -> str:
    """'45s', '1m 20s', '2h 05m' (the pages' format, kept here so the CLI can say the same)."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m"


__all__ = ["Calibration", "Estimate", "Fit", "calibration", "duration_text", "estimate_duration"]
