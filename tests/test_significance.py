"""Welch's t-test without scipy: the p-value, interval and df match scipy's; verdicts read right."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats

from workbench.explain.significance import (
    betainc,
    compare,
    lower_is_better,
    metric_label,
    t_quantile,
    welch,
    welch_from_stats,
)

SAMPLES = [  # (a, b): small seed counts as the workbench has them, unequal sizes and spreads
    ([0.91, 0.93, 0.92], [0.88, 0.90, 0.86]),
    ([0.91, 0.93], [0.88, 0.90, 0.86, 0.87, 0.95]),
    ([0.5, 0.52, 0.49, 0.51], [0.5, 0.6, 0.4, 0.55]),
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2.5, 2.6]),
    ([0.1, 0.1000001], [0.2, 0.5, 0.9]),  # one side almost without spread
    ([3.2, 1.1, 4.8], [3.0, 1.5, 4.4]),  # the same location: p near 1
]


@pytest.mark.parametrize("a, b", SAMPLES)
def test_matches_scipy_welch(a, b):
    ours, theirs = welch(a, b), scipy.stats.ttest_ind(a, b, equal_var=False)
    interval = theirs.confidence_interval(0.95)
    assert ours.p == pytest.approx(theirs.pvalue, abs=1e-6)
    assert ours.df == pytest.approx(theirs.df, rel=1e-9) and ours.t == pytest.approx(theirs.statistic, rel=1e-9)
    assert (ours.low, ours.high) == (pytest.approx(interval.low, abs=1e-6), pytest.approx(interval.high, abs=1e-6))


def test_student_t_pieces_match_scipy_on_a_grid():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b, x = rng.uniform(0.05, 40), rng.uniform(0.05, 40), rng.uniform()
        assert betainc(a, b, x) == pytest.approx(scipy.special.betainc(a, b, x), abs=1e-10)
    for df in (1.0, 1.37, 2.0, 4.5, 10.0, 59.3, 1e4):
        for q in (0.9, 0.975, 0.995):
            assert t_quantile(q, df) == pytest.approx(scipy.stats.t.ppf(q, df), rel=1e-9)


def test_a_large_gap_is_a_clear_win_with_its_interval():
    v = compare([0.93, 0.94, 0.935], [0.90, 0.91, 0.905], a_name="lora", b_name="full")
    assert v.significant and v.winner == "lora" and v.test.p < 0.01
    assert v.text.startswith("lora beats full by +0.030 accuracy (0.935 vs 0.905; 95 % CI +0.0")
    assert v.text.endswith("3 vs 3 seeds)") and "\n" not in v.text
    assert v.markdown.startswith("**lora** beats full")
    flipped = compare([0.90, 0.91, 0.905], [0.93, 0.94, 0.935], a_name="full", b_name="lora")
    assert flipped.winner == "lora" and flipped.text.startswith("lora beats full by +0.030 accuracy")


def test_overlapping_samples_are_no_clear_difference():
    v = compare([0.90, 0.95, 0.85, 0.92], [0.91, 0.86, 0.93, 0.90], a_name="lora", b_name="full")
    assert v.significant is False and v.winner is None and v.test.p > 0.5
    assert v.text.startswith("no clear difference between lora and full: accuracy 0.905 vs 0.900, gap +0.005 "
                             "is within seed noise (p = 0.")


@pytest.mark.parametrize("metric", ["test_loss", "best_val_loss", "test_mae", "val/rmse", "final_val_loss"])
def test_lower_is_better_metrics_pick_the_lower_side(metric):
    v = compare([0.30, 0.31, 0.29], [0.40, 0.42, 0.41], metric=metric, a_name="lora", b_name="full")
    assert lower_is_better(metric) and v.winner == "lora"
    assert v.text.startswith("lora beats full by -0.110") and "lower is better" in v.text
    lo, hi = (float(x) for x in v.text.split("95 % CI ")[1].split(",")[0].split("…"))
    assert lo < hi < 0  # the winner's gap over the loser, negative like the gap itself


@pytest.mark.parametrize("metric", ["test_accuracy", "val_accuracy", "source_after", "test_f1"])
def test_higher_is_better_metrics_pick_the_higher_side(metric):
    v = compare([0.30, 0.31, 0.29], [0.40, 0.42, 0.41], metric=metric, a_name="lora", b_name="full")
    assert not lower_is_better(metric) and v.winner == "full"


def test_too_few_seeds_give_no_verdict():
    v = compare([0.9], [0.8, 0.82, 0.81], a_name="lora", b_name="full")
    assert v.significant is None and v.test is None and v.winner is None
    assert v.text == "no verdict: needs ≥ 2 seeds per side (lora has 1, full has 3)"
    nan_only = compare([0.9, float("nan")], [0.8, None], a_name="x", b_name="y")
    assert nan_only.text == "no verdict: needs ≥ 2 seeds per side (x has 1, y has 1)"


def test_nans_are_left_out_not_counted():
    with_nan = compare([0.93, 0.94, float("nan"), 0.935], [0.90, 0.91, 0.905])
    assert with_nan.test.n_a == 3 and with_nan.test == compare([0.93, 0.94, 0.935], [0.90, 0.91, 0.905]).test
    assert "3 vs 3 seeds" in with_nan.text


def test_zero_variance_on_both_sides():
    same = compare([0.9, 0.9], [0.9, 0.9, 0.9])
    assert same.significant is False and same.test.p == 1.0 and same.test.exact
    assert "gap none: every seed gave the same value (p = 1" in same.text
    apart = compare([0.9, 0.9], [0.8, 0.8])
    assert apart.winner == "a" and apart.test.p == 0.0 and apart.test.low == apart.test.high
    assert "the gap is exact" in apart.text
    one_side = welch([0.5, 0.5, 0.5], [0.25, 0.5, 0.625])  # only one side varies: a proper, finite test
    with warnings.catch_warnings():  # scipy warns about the constant side; the result is still exact
        warnings.simplefilter("ignore", RuntimeWarning)
        theirs = scipy.stats.ttest_ind([0.5, 0.5, 0.5], [0.25, 0.5, 0.625], equal_var=False)
    assert one_side.p == pytest.approx(theirs.pvalue, abs=1e-6) and math.isfinite(one_side.df)


def test_from_summary_statistics_equals_from_samples():
    a, b = [0.91, 0.93, 0.92, 0.95], [0.88, 0.90, 0.86]
    direct = welch(a, b)
    stats = welch_from_stats(np.mean(a), np.std(a, ddof=1), 4, np.mean(b), np.std(b, ddof=1), 3)
    assert stats.p == pytest.approx(direct.p, abs=1e-12) and stats.low == pytest.approx(direct.low)


def test_metric_labels_read_as_words():
    assert [metric_label(m) for m in ("test_accuracy", "final_val_loss", "best_val_loss", "test/mae")] == [
        "accuracy", "val loss", "best val loss", "mae"]
