"""Learning-rate schedules: values at known steps match the documented formulas."""

import math

import pytest

from workbench.errors import ConfigError
from workbench.schedules import (
    SCHEDULE_NAMES,
    SCHEDULES,
    PlateauState,
    constant,
    discriminative_multipliers,
    lr_at,
    plateau_curve,
    schedule_curve,
    stlr,
    warmup_cosine,
)

approx = pytest.approx


def _is_monotone_down(values: list[float]) -> bool:
    return all(b <= a + 1e-15 for a, b in zip(values, values[1:], strict=False))


# --- constant ---------------------------------------------------------------------------------


def test_constant_is_base_lr_everywhere():
    assert schedule_curve("constant", base_lr=3e-4, total_steps=7) == [3e-4] * 7
    assert constant(10_000, base_lr=3e-4, total_steps=7) == 3e-4


# --- warmup-cosine ----------------------------------------------------------------------------

WC = dict(base_lr=1.0, total_steps=100, warmup_frac=0.1, min_lr_ratio=0.1)  # W = 10


def test_warmup_cosine_known_steps():
    assert warmup_cosine(0, **WC) == approx(0.1)  # base_lr / W: small but not a wasted 0
    assert warmup_cosine(4, **WC) == approx(0.5)
    assert warmup_cosine(9, **WC) == approx(1.0)  # end of warmup is the peak
    assert warmup_cosine(54, **WC) == approx((1 + 0.1) / 2)  # progress (54 - 10 + 1) / 90 = 0.5
    assert warmup_cosine(99, **WC) == approx(0.1)  # last step is the floor
    assert warmup_cosine(500, **WC) == approx(0.1)  # past the end: final value


def test_warmup_cosine_formula_between_known_points():
    progress = (30 - 10 + 1) / 90
    expected = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    assert warmup_cosine(30, **WC) == approx(expected)


def test_warmup_cosine_shape():
    curve = schedule_curve("warmup-cosine", **WC)
    assert len(curve) == 100
    assert curve[:10] == sorted(curve[:10]) and max(curve) == approx(1.0)
    assert _is_monotone_down(curve[9:])
    assert min(curve) == approx(0.1)


def test_warmup_cosine_defaults_decay_to_zero_and_short_runs():
    assert warmup_cosine(999, base_lr=2e-5, total_steps=1000) == approx(0.0, abs=1e-20)
    assert warmup_cosine(0, base_lr=2e-5, total_steps=1) == approx(2e-5)  # W = max(1, 0) = 1
    assert warmup_cosine(0, base_lr=1.0, total_steps=10, warmup_frac=0.0) == approx(1.0)  # no warmup


# --- stlr -------------------------------------------------------------------------------------

ST = dict(base_lr=0.01, total_steps=1000, cut_frac=0.1, ratio=32.0)  # cut = 100


def test_stlr_matches_paper_formula():
    assert stlr(0, **ST) == approx(0.01 / 32)
    assert stlr(50, **ST) == approx(0.01 * (1 + 0.5 * 31) / 32)  # p = 50/100
    assert stlr(100, **ST) == approx(0.01)  # peak at t = cut
    assert stlr(550, **ST) == approx(0.01 * (1 + 0.5 * 31) / 32)  # p = 1 - 450 / (100 * 9)
    assert stlr(999, **ST) == approx(0.01 * (1 + 31 / 900) / 32)  # p = 1 - 899/900
    assert stlr(1000, **ST) == approx(0.01 / 32)


def test_stlr_shape():
    curve = schedule_curve("stlr", **ST)
    assert len(curve) == 1000
    assert max(curve) == approx(0.01) and curve.index(max(curve)) == 100
    assert curve[:101] == sorted(curve[:101])
    assert _is_monotone_down(curve[100:])
    assert curve[-1] == approx(0.01 / 32, rel=0.05)


def test_stlr_never_below_floor_when_cut_is_not_whole():
    # T * cut_frac = 1.5 -> cut = 1, and the paper's decay would reach p = 0 at t = 10, then go negative
    curve = schedule_curve("stlr", base_lr=1.0, total_steps=15, cut_frac=0.1, ratio=32.0)
    assert min(curve) == approx(1 / 32)
    assert all(lr > 0 for lr in curve)


def test_stlr_short_run_guards_cut_zero():
    curve = schedule_curve("stlr", base_lr=1.0, total_steps=5, cut_frac=0.1)  # floor(0.5) = 0 -> 1
    assert curve[0] == approx(1 / 32) and curve[1] == approx(1.0)
    assert stlr(0, base_lr=1.0, total_steps=1) == approx(1 / 32)


# --- dispatch and validation ------------------------------------------------------------------


def test_names_and_dispatch():
    assert SCHEDULE_NAMES == ("constant", "plateau", "warmup-cosine", "stlr")
    assert set(SCHEDULES) == {"constant", "warmup-cosine", "stlr"}
    assert lr_at("constant", 5, base_lr=1e-3, total_steps=10) == 1e-3
    assert lr_at("plateau", 5, base_lr=1e-3, total_steps=10) == 1e-3
    assert lr_at("warmup-cosine", 54, **WC) == warmup_cosine(54, **WC)
    assert lr_at("stlr", 550, **ST) == stlr(550, **ST)
    assert schedule_curve("plateau", base_lr=1e-3, total_steps=4) == [1e-3] * 4


def test_unknown_schedule_message():
    expected = (
        "Unknown lr_schedule 'x': use one of constant, plateau, warmup-cosine, stlr. "
        "Received: lr_schedule='x'"
    )
    with pytest.raises(ValueError) as err:
        lr_at("x", 0, base_lr=1e-3, total_steps=10)
    assert str(err.value) == expected
    assert isinstance(err.value, ConfigError)  # the CLI and app answer it as a user error
    with pytest.raises(ValueError, match="Unknown lr_schedule"):
        schedule_curve("x", base_lr=1e-3, total_steps=10)


@pytest.mark.parametrize(
    "call, received",
    [
        (lambda: constant(0, base_lr=0.0, total_steps=10), "base_lr=0.0"),
        (lambda: constant(0, base_lr=math.inf, total_steps=10), "base_lr=inf"),
        (lambda: constant(0, base_lr=math.nan, total_steps=10), "base_lr=nan"),
        (lambda: constant(0, base_lr=1e-3, total_steps=0), "total_steps=0"),
        (lambda: constant(0, base_lr=1e-3, total_steps=2.5), "total_steps=2.5"),
        (lambda: constant(-1, base_lr=1e-3, total_steps=10), "step=-1"),
        (lambda: warmup_cosine(0, base_lr=1e-3, total_steps=10, warmup_frac=1.0), "warmup_frac=1.0"),
        (lambda: warmup_cosine(0, base_lr=1e-3, total_steps=10, warmup_frac=-0.1), "warmup_frac=-0.1"),
        (lambda: warmup_cosine(0, base_lr=1e-3, total_steps=10, min_lr_ratio=2.0), "min_lr_ratio=2.0"),
        (lambda: stlr(0, base_lr=1e-3, total_steps=10, cut_frac=0.0), "cut_frac=0.0"),
        (lambda: stlr(0, base_lr=1e-3, total_steps=10, cut_frac=1.0), "cut_frac=1.0"),
        (lambda: stlr(0, base_lr=1e-3, total_steps=10, ratio=0.5), "ratio=0.5"),
        (lambda: stlr(0, base_lr="1e-3", total_steps=10), "base_lr='1e-3'"),
    ],
)
def test_bad_arguments_are_one_line_value_errors(call, received):
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert isinstance(err.value, ConfigError)
    assert "\n" not in message
    assert message.endswith(f"Received: {received}")


# --- plateau ----------------------------------------------------------------------------------

STALLS = [1.0, 0.8, 0.81, 0.82, 0.9, 0.7, 0.75, 0.76]


def _feed(state: PlateauState, losses: list[float], lr: float) -> list[float]:
    out = []
    for loss in losses:
        lr = state.update(loss, lr)
        out.append(lr)
    return out


def test_plateau_cuts_after_patience_not_before():
    state = PlateauState(factor=0.5, patience=2)
    lrs = _feed(state, STALLS, 1e-3)
    # 0.81 (wait 1), 0.82 (wait 2 -> cut), 0.9 (wait 1), 0.7 improves, 0.75 (wait 1), 0.76 (wait 2 -> cut)
    assert lrs == approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4, 2.5e-4])
    assert state.best == 0.7 and state.wait == 0 and state.scale == approx(0.25)


def test_plateau_patience_three_waits_longer():
    lrs = _feed(PlateauState(factor=0.5, patience=3), STALLS, 1e-3)
    assert lrs == approx([1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4])


def test_plateau_never_below_min_lr_and_never_raises():
    state = PlateauState(factor=0.5, patience=1, min_lr=3e-4)
    lrs = _feed(state, [1.0] + [1.0] * 5, 1e-3)
    assert lrs == approx([1e-3, 5e-4, 3e-4, 3e-4, 3e-4, 3e-4])
    assert state.scale == approx(0.3)
    assert PlateauState(patience=1, min_lr=1e-3).update(math.inf, 1e-4) == 1e-4  # already below: kept


def test_plateau_nan_is_no_improvement():
    state = PlateauState(factor=0.5, patience=2)
    assert _feed(state, [1.0, math.nan, math.nan], 1.0) == [1.0, 1.0, 0.5]
    assert state.best == 1.0
    assert _feed(state, [0.99], 0.5) == [0.5] and state.best == 0.99


def test_plateau_min_delta():
    lrs = _feed(PlateauState(factor=0.5, patience=2, min_delta=0.1), [1.0, 0.95, 0.92], 1.0)
    assert lrs == [1.0, 1.0, 0.5]  # drops smaller than min_delta do not count


@pytest.mark.parametrize(
    "kwargs, received",
    [
        (dict(factor=1.0), "factor=1.0"),
        (dict(factor=0.0), "factor=0.0"),
        (dict(factor=math.nan), "factor=nan"),
        (dict(patience=0), "patience=0"),
        (dict(min_lr=-1e-6), "min_lr=-1e-06"),
        (dict(min_delta=-0.1), "min_delta=-0.1"),
    ],
)
def test_plateau_validation(kwargs, received):
    with pytest.raises(ValueError) as err:
        PlateauState(**kwargs)
    assert "\n" not in str(err.value) and str(err.value).endswith(f"Received: {received}")


def test_plateau_curve_drops_at_the_right_epochs():
    curve = plateau_curve(STALLS, base_lr=1e-3, steps_per_epoch=3, factor=0.5, patience=2)
    assert len(curve) == len(STALLS) * 3
    per_epoch = curve[::3]
    assert per_epoch == approx([1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4])  # cut decided after epoch 3
    assert curve[11] == approx(1e-3) and curve[12] == approx(5e-4)
    assert plateau_curve([], base_lr=1e-3, steps_per_epoch=3) == []
    with pytest.raises(ValueError, match=r"Received: steps_per_epoch=0$"):
        plateau_curve(STALLS, base_lr=1e-3, steps_per_epoch=0)


# --- discriminative fine-tuning ---------------------------------------------------------------


def test_discriminative_multipliers():
    groups = ["embeddings", "block_0", "block_1", "head"]
    m = discriminative_multipliers(groups, 2.6)
    assert list(m) == groups
    assert m["head"] == 1.0
    for lower, upper in zip(groups, groups[1:], strict=False):
        assert m[upper] / m[lower] == approx(2.6)
    assert m["embeddings"] == approx(2.6**-3)
    assert discriminative_multipliers(groups, 1.0) == dict.fromkeys(groups, 1.0)
    assert discriminative_multipliers([], 2.6) == {}


@pytest.mark.parametrize("factor, received", [(0.5, "factor=0.5"), (math.nan, "factor=nan")])
def test_discriminative_bad_factor(factor, received):
    with pytest.raises(ValueError) as err:
        discriminative_multipliers(["a", "b"], factor)
    assert "\n" not in str(err.value) and str(err.value).endswith(f"Received: {received}")


def test_discriminative_duplicate_groups():
    with pytest.raises(ValueError, match="must be unique"):
        discriminative_multipliers(["a", "a"], 2.0)
