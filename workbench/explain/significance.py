"""Is the gap real? Welch's t-test on two groups' final-metric samples, and the one-line verdict.

Why here, once: the study's head-to-head lines, the Compare page's seed groups and the CLI all ask the
same question ("lora beat full by 0.02 — or is that seed noise?"), so they share this answer.
Welch's test (no equal-variance assumption) because two methods rarely have the same seed spread.

scipy is not a runtime dependency, so the Student-t distribution is computed here: its CDF through the
regularized incomplete beta function (Lentz's continued fraction, Numerical Recipes §6.4), its quantile
by bisection on that CDF. `tests/test_significance.py` checks both against `scipy.stats` to 1e-6.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # a gap is "real" when p < ALPHA (the 95 % interval then excludes 0)
MIN_SEEDS = 2  # a sample of one has no spread: nothing to test against
# Metrics where lower is better: a token of the metric's name (test_loss, best_val_loss, test/mae…).
LOWER_IS_BETTER = frozenset({"loss", "mae", "mse", "rmse", "error", "err", "perplexity"})


def lower_is_better(metric: str) -> bool:
    """True for losses and errors (test_loss, best_val_loss, test_mae, val/rmse), False for scores."""
    return any(token in LOWER_IS_BETTER for token in re.split(r"[/_\s.]+", metric.lower()))


def metric_label(metric: str) -> str:
    """How a verdict names the metric: 'test_accuracy' -> 'accuracy', 'final_val_loss' -> 'val loss'."""
    name = re.sub(r"^(test|final)[_/]", "", metric)
    return re.sub(r"[_/]+", " ", name).strip() or metric


# -- the Student-t distribution ------------------------------------------------------------------
def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), converging fast for x < (a+1)/(a+b+2)."""
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b  # the symmetry I_x(a,b) = 1 - I_1-x(b,a)


def t_two_sided(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom (df may be fractional, as Welch's is)."""
    if math.isinf(t):
        return 0.0
    return min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t)))


def t_quantile(q: float, df: float) -> float:
    """The `q` quantile (0.5 < q < 1) of Student's t: bisection on the two-sided tail, to ~1e-12."""
    tail = 2.0 * (1.0 - q)
    hi = 1.0
    while t_two_sided(hi, df) > tail:
        hi *= 2.0
    lo = 0.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if t_two_sided(mid, df) > tail else (lo, mid)
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


# -- Welch's test ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Welch:
    """Welch's t-test of mean(a) - mean(b): the gap, its confidence interval, p-value and df."""

    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    n_a: int
    n_b: int
    diff: float  # mean_a - mean_b
    low: float  # the `confidence` interval of diff
    high: float
    p: float  # two-sided
    df: float  # Welch–Satterthwaite (NaN when neither side varies: the gap is then exact)
    t: float

    @property
    def exact(self) -> bool:
        """Every seed gave the same value on both sides: no noise to test the gap against."""
        return self.sd_a == 0.0 and self.sd_b == 0.0


def clean(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The finite values of a sample (a failed or unfinished run has NaN there, not a result)."""
    array = np.asarray([np.nan if v is None else v for v in values], dtype=float).ravel()
    return array[np.isfinite(array)]


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 1 - ALPHA) -> Welch | None:
    """Welch's test on two samples (non-finite values dropped); None when a side has under 2 values."""
    a, b = clean(a), clean(b)
    if len(a) < MIN_SEEDS or len(b) < MIN_SEEDS:
        return None
    return welch_from_stats(float(a.mean()), float(a.std(ddof=1)), len(a), float(b.mean()), float(b.std(ddof=1)),
                            len(b), confidence)


def welch_from_stats(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int,
                     confidence: float = 1 - ALPHA) -> Welch:
    """Welch's test from each side's mean, sample standard deviation (ddof=1) and size (each >= 2)."""
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    diff, se = mean_a - mean_b, math.sqrt(va + vb)
    if se == 0.0:  # no seed noise on either side: the gap is what it is
        p = 1.0 if diff == 0.0 else 0.0
        t = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        return Welch(mean_a, mean_b, sd_a, sd_b, n_a, n_b, diff, diff, diff, p, math.nan, t)
    df = (va + vb) ** 2 / ((va**2 / (n_a - 1) if va else 0.0) + (vb**2 / (n_b - 1) if vb else 0.0))
    t = diff / se
    half = t_quantile(0.5 + confidence / 2.0, df) * se
    return Welch(mean_a, mean_b, sd_a, sd_b, n_a, n_b, diff, diff - half, diff + half, t_two_sided(t, df), df, t)


# -- the verdict ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """The answer for people: `text` is one line; `winner` is None when there is no clear winner."""

    a: str
    b: str
    metric: str
    text: str
    test: Welch | None  # None: too few seeds on a side to test
    winner: str | None = None
    significant: bool | None = None  # None: cannot tell (too few seeds)

    @property
    def markdown(self) -> str:
        """`text` with the winner in bold (the study's report)."""
        if self.winner is None:
            return self.text
        return self.text.replace(self.winner, f"**{self.winner}**", 1)


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def compare(a: Sequence[float], b: Sequence[float], *, metric: str = "test_accuracy", a_name: str = "a",
            b_name: str = "b", alpha: float = ALPHA) -> Verdict:
    """Is `a` better than `b` on `metric`, beyond seed noise? Welch's test at level `alpha`.

    `a` and `b` are the per-seed final values (NaN for a run without one). The direction comes from the
    metric's name: a lower loss/mae/rmse wins, a higher accuracy wins.
    """
    test = welch(a, b, confidence=1 - alpha)
    label, low = metric_label(metric), lower_is_better(metric)
    if test is None:
        n_a, n_b = len(clean(a)), len(clean(b))
        return Verdict(a_name, b_name, metric, f"no verdict: needs ≥ {MIN_SEEDS} seeds per side "
                       f"({a_name} has {n_a}, {b_name} has {n_b})", None)
    seeds = f"{test.n_a} vs {test.n_b} seeds"
    means = f"{test.mean_a:.3f} vs {test.mean_b:.3f}"
    if test.p >= alpha:
        noise = "none: every seed gave the same value" if test.exact else f"{test.diff:+.3f} is within seed noise"
        return Verdict(a_name, b_name, metric, f"no clear difference between {a_name} and {b_name}: {label} "
                       f"{means}, gap {noise} ({_p(test.p)}, {seeds})", test, None, False)
    a_wins = (test.diff < 0) == low
    winner, loser, sign = (a_name, b_name, 1.0) if a_wins else (b_name, a_name, -1.0)
    lo, hi = sorted((sign * test.low, sign * test.high))
    detail = ("every seed gave the same value on each side, so the gap is exact" if test.exact
              else f"95 % CI {lo:+.3f}…{hi:+.3f}, {_p(test.p)}" if abs(alpha - 0.05) < 1e-12
              else f"{100 * (1 - alpha):g} % CI {lo:+.3f}…{hi:+.3f}, {_p(test.p)}")
    order = f"{test.mean_a:.3f} vs {test.mean_b:.3f}" if a_wins else f"{test.mean_b:.3f} vs {test.mean_a:.3f}"
    lower = "; lower is better" if low else ""
    return Verdict(a_name, b_name, metric, f"{winner} beats {loser} by {sign * test.diff:+.3f} {label} "
                   f"({order}; {detail}, {seeds}{lower})", test, winner, True)


__all__ = ["ALPHA", "MIN_SEEDS", "Verdict", "Welch", "betainc", "clean", "compare", "lower_is_better",
           "metric_label", "t_quantile", "t_two_sided", "welch", "welch_from_stats"]
