"""LoRA+: LoRA's adapter and count, with B at λ × A's learning rate in its own optimizer slot.

What is checked: exact counts (closed form and by hand), output unchanged at step 0, only LoRA factors
and the head train, export/reload, the registry surfaces (CLI, study grid, preview, refusals), and the
mechanism itself: the recorded per-slot LRs, the optimizers' real LRs, and an SGD step that moves B by
exactly λ times plain LoRA's step (and A, the head, by the same amount), also under staging.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from conftest import small_image_config
from helpers import predict, prepared, train_here, weights

from workbench.config import TrainConfig
from workbench.errors import ConfigError
from workbench.peft import get_method

LAMBDA = 16.0
HEAD_CNN = 64 * 10 + 10  # mnist-cnn head: Dense 64 -> 10 digits
HEAD_BERT = 128 * 2 + 2  # tiny-bert head: Dense 128 -> 2 classes


def text_config(**overrides):
    return TrainConfig.from_dict({"model": "tiny-bert", "data": "sms-spam", "method": "loraplus", "max_rows": 200,
                                  "epochs": 1, "batch_size": 16, "export_model": False, **overrides})


def mlp_config(**overrides):
    return text_config(model="mlp", data="diabetes", **overrides)


def head_count(prep) -> int:
    return int(sum(int(np.prod(v.shape)) for v in prep.task_model.head_variables()))


def count_of(prep) -> int:
    return get_method("loraplus").count(prep.task_model, prep.config.options, prep.config.share)


def lora_paths(prep, kind: str) -> list[str]:
    return sorted(v.path for v in prep.task_model.model.trainable_variables if v.path.endswith(f"lora_kernel_{kind}"))


class AfterFirstStep(keras.callbacks.Callback):
    """Keeps the weights after the first training step (and, if asked, stops the run there)."""

    def __init__(self, stop: bool) -> None:
        super().__init__()
        self.stop, self.weights = stop, None

    def on_train_batch_end(self, batch, logs=None):
        if self.weights is None:
            self.weights = weights(self.model)
            if self.stop:
                self.model.stop_training = True


class OptimizerLRs(keras.callbacks.Callback):
    """Each step's learning rate per trainable variable, as its optimizer holds it when the step runs
    (read after the trainer's `LearningRateControl`, which sets them as each batch begins)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[dict[str, float]] = []

    def on_train_batch_begin(self, batch, logs=None):
        opt = self.model.optimizer
        owner = lambda v: opt._inner_optimizers[opt._var_to_optimizer_idx[opt._var_key(v)]]  # noqa: E731
        self.steps.append({v.path: float(keras.ops.convert_to_numpy(owner(v).learning_rate))
                           for v in opt._trainable_variables})


def train_with(prep, store, *callbacks):
    """Train through the real trainer with extra callbacks; returns (run_id, summary)."""
    from workbench.train.trainer import train

    run_id = store.create_run(prep.config.to_dict(), prep.config.display_name(), status="running")
    return run_id, train(prep, store=store, run_id=run_id, extra_callbacks=list(callbacks))


def train_capturing(prep, store, *, stop: bool = True):
    """Train through the real trainer; returns (run_id, weights after step 1)."""
    capture = AfterFirstStep(stop)
    run_id, _ = train_with(prep, store, capture)
    assert capture.weights is not None
    return run_id, capture.weights


def lr_table(store, run_id: str):
    """step -> {lr key: value} from the run's recorded metrics."""
    frame = store.metrics(run_id)
    frame = frame[frame.key.str.startswith("lr/") | (frame.key == "train/lr")]
    return frame.pivot_table(index="step", columns="key", values="value", aggfunc="last")


# -- 1, 2: counts and step 0 ---------------------------------------------------------------------------
def test_cnn_counts_exact_step_zero_unchanged_and_preview_agrees():
    from workbench.preview import preview

    full = prepared(small_image_config(method="full"))
    config = small_image_config(method="loraplus", rank=4)
    plus = prepared(config)
    np.testing.assert_allclose(predict(plus), predict(full), atol=1e-5)  # same seed: same head; B = 0
    assert count_of(plus) == 4 * (1568 + 64)  # features: Dense 1568 -> 64, r·(d_in + d_out)
    assert plus.report.trainable == count_of(plus) + head_count(plus) == 4 * (1568 + 64) + HEAD_CNN
    assert preview(config).report.trainable == plus.report.trainable
    assert lora_paths(plus, "a") == ["features/lora_kernel_a"] and lora_paths(plus, "b") == ["features/lora_kernel_b"]


def test_transformer_counts_step_zero_and_b_factors_get_lambda():
    from workbench.preview import preview

    config = text_config(rank=8)
    plus = prepared(config)
    # query and value in 2 blocks, each a 128 x 128 map: 4 layers x 8 x (128 + 128)
    assert count_of(plus) == 4 * 8 * (128 + 128) == 8192
    assert plus.report.trainable == count_of(plus) + head_count(plus) == 8192 + HEAD_BERT
    assert preview(config).report.trainable == plus.report.trainable
    paths = [v.path for v in plus.task_model.model.trainable_variables]
    assert all("/lora_kernel_" in p or p.startswith("head/") for p in paths), paths
    full = prepared(text_config(method="full"))
    np.testing.assert_allclose(predict(plus), predict(full), atol=1e-5)

    factors = get_method("loraplus").lr_multipliers(plus.task_model, plus.config.options)
    by_id = {id(v): v.path for v in plus.task_model.model.trainable_variables}
    assert sorted(by_id[i] for i in factors) == lora_paths(plus, "b") and len(factors) == 4
    assert set(factors.values()) == {LAMBDA}  # every B at λ; A and the head at the group's LR


# -- 3, 4 and the recorded LRs: a real AdamW run ---------------------------------------------------------
def test_training_moves_only_lora_and_head_records_lambda_and_reloads(store):
    from workbench.train.trainer import load_run_model

    config = small_image_config(method="loraplus", rank=4, epochs=2, lr=2e-3, lr_schedule="warmup-cosine")
    prep = prepared(config)
    trainable = {v.path for v in prep.task_model.model.trainable_variables}
    assert trainable == {"features/lora_kernel_a", "features/lora_kernel_b", "head/kernel", "head/bias"}
    before = weights(prep.task_model.model)
    seen = OptimizerLRs()
    run_id, summary = train_with(prep, store, seen)
    after = weights(prep.task_model.model)
    frozen = [p for p in before if p not in trainable]
    assert frozen and all(np.array_equal(before[p], after[p]) for p in frozen)
    assert all(not np.array_equal(before[p], after[p]) for p in trainable)

    # The recorded LRs: B's slot is λ × A's at every step, while the schedule moves them.
    lrs = lr_table(store, run_id)
    assert {"lr/block_3", "lr/block_3 ×16", "lr/head", "train/lr"} <= set(lrs.columns)
    assert len(lrs) == summary["steps"] and lrs["lr/block_3"].nunique() > 2  # warmup and decay: not flat
    np.testing.assert_allclose(lrs["lr/block_3 ×16"], LAMBDA * lrs["lr/block_3"], rtol=1e-6)
    np.testing.assert_allclose(lrs["lr/block_3"], lrs["train/lr"], rtol=1e-6)
    np.testing.assert_allclose(lrs["lr/head"], lrs["train/lr"], rtol=1e-6)
    # ...and what each variable's optimizer used at each step: B's is λ × A's, and the records are true.
    used = {p: np.array([step[p] for step in seen.steps]) for p in trainable}
    a, b = used["features/lora_kernel_a"], used["features/lora_kernel_b"]
    assert len(a) == summary["steps"] and a.max() > 0
    np.testing.assert_allclose(b, LAMBDA * a, rtol=1e-6)
    np.testing.assert_allclose(a, lrs["lr/block_3"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(used["head/kernel"], a, rtol=1e-6)

    run_dir = store.run_dir(run_id)
    with np.load(run_dir / "adapter.npz", allow_pickle=False) as saved:
        assert set(saved.files) == trainable
    expected = predict(prep)
    np.testing.assert_allclose(predict(load_run_model(run_dir)), expected, atol=1e-5)
    # mergeable: a plain Keras model (the workbench's registered LoRA layers, merged kernel).
    merged = keras.saving.load_model(run_dir / "model.keras", safe_mode=True, compile=False)
    got = keras.ops.convert_to_numpy(merged.predict(prep.inputs["test"], verbose=0))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_export_loads_with_default_compile(store):
    """The export carries no compile config: B's own optimizer slot (a grouped optimizer) must not stop
    `load_model` with its default compile=True."""
    prep = prepared(small_image_config(method="loraplus", rank=4))
    run_id, _ = train_here(prep, store)
    merged = keras.saving.load_model(store.run_dir(run_id) / "model.keras", safe_mode=True)
    got = keras.ops.convert_to_numpy(merged.predict(prep.inputs["test"], verbose=0))
    np.testing.assert_allclose(got, predict(prep), atol=1e-4)


# -- the mechanism, exactly: one SGD step, LoRA+ against LoRA --------------------------------------------
def deltas(before: dict, after: dict, paths) -> dict[str, np.ndarray]:
    return {p: after[p] - before[p] for p in paths}


def assert_step(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal steps up to float32 rounding: a step is after − before, so an entry that moved little
    carries the rounding of the weight itself (atol: a small fraction of the largest move)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * float(np.abs(expected).max()) + 1e-12)


@pytest.mark.parametrize("start", ["zero", "random"])
def test_one_sgd_step_moves_b_lambda_times_lora_and_a_the_same(store, start):
    """Same seed, same batch, same LR: the step-0 gradients are equal, so SGD moves B by λ× LoRA's step.

    "zero" is the paper's start (B = 0: A gets no gradient at step 0, so both leave A alone); "random"
    gives B a common non-zero start so that A's gradient is non-zero too, and must move equally.
    """
    runs = {}
    for method, options in (("lora", {}), ("loraplus", {"lr_ratio": LAMBDA})):
        prep = prepared(small_image_config(method=method, rank=4, optimizer="sgd", lr=0.05, **options))
        if start == "random":
            b = next(v for v in prep.task_model.model.trainable_variables if v.path.endswith("lora_kernel_b"))
            b.assign(np.random.default_rng(7).normal(scale=0.05, size=b.shape).astype("float32"))
        before = weights(prep.task_model.model)
        _, first = train_capturing(prep, store)
        runs[method] = deltas(before, first, [v.path for v in prep.task_model.model.trainable_variables])
    lora, plus = runs["lora"], runs["loraplus"]
    assert set(lora) == set(plus) == {"features/lora_kernel_a", "features/lora_kernel_b", "head/kernel", "head/bias"}
    b = "features/lora_kernel_b"
    assert np.abs(lora[b]).max() > 1e-6  # B did move: the comparison below is not 0 == 0
    assert_step(plus[b], LAMBDA * lora[b])
    for path in ("features/lora_kernel_a", "head/kernel", "head/bias"):
        assert_step(plus[path], lora[path])
    a = "features/lora_kernel_a"
    if start == "zero":
        assert not np.any(plus[a]) and not np.any(lora[a])
    else:
        assert np.abs(lora[a]).max() > 1e-6


def test_lambda_one_is_plain_lora_on_one_optimizer():
    """λ = 1 asks for no slot of its own: the trainer keeps its single optimizer, as for LoRA."""
    from workbench.train.lr_control import make_optimizer, optimizer_slots
    from workbench.train.trainer import trainable_groups

    for ratio, grouped in ((1.0, False), (LAMBDA, True)):
        prep = prepared(small_image_config(method="loraplus", rank=4, lr_ratio=ratio))
        factors = get_method("loraplus").lr_multipliers(prep.task_model, prep.config.options)
        groups = trainable_groups(prep.task_model)
        optimizer, _ = make_optimizer(prep.config, 1e-3, groups, factors)
        assert (type(optimizer).__name__ == "GroupedOptimizer") is grouped
        slots = optimizer_slots(groups, factors)
        assert sorted(slots) == (["block_3", "block_3 ×16", "head"] if grouped else ["block_3", "head"])


def test_staging_and_discriminative_lrs_keep_b_at_lambda(store):
    """Bottom-up staging on the mlp (dense_1 + head, then dense_2 too) with discriminative LRs: B's slot
    stays at λ × its group's LR, a frozen group's B does not move until its stage, and step 1 moves
    dense_1's B by exactly λ× what LoRA's does (and the head by the same amount)."""
    common = dict(rank=4, optimizer="sgd", lr=1e-5, hierarchical="bottom-up",
                  stage_steps=2, discriminative=2.6, batch_size=32)
    runs = {}
    for method in ("lora", "loraplus"):
        prep = prepared(mlp_config(method=method, **common))
        before = weights(prep.task_model.model)
        run_id, first = train_capturing(prep, store, stop=method == "lora")
        runs[method] = (prep, run_id, before, first, weights(prep.task_model.model))
    _, _, before_l, first_l, _ = runs["lora"]
    prep, run_id, before, first, end = runs["loraplus"]
    b1, b2 = "dense_1/lora_kernel_b", "dense_2/lora_kernel_b"
    assert lora_paths(prep, "b") == [b1, b2]
    assert np.abs(first_l[b1] - before_l[b1]).max() > 1e-7
    assert_step(first[b1] - before[b1], LAMBDA * (first_l[b1] - before_l[b1]))
    assert_step(first["head/kernel"] - before["head/kernel"], first_l["head/kernel"] - before_l["head/kernel"])
    assert np.array_equal(first[b2], before[b2]) and np.array_equal(first_l[b2], before_l[b2])  # block_2 frozen
    assert not np.array_equal(end[b2], before[b2])  # ...until its stage starts

    lrs = lr_table(store, run_id)
    for group in ("block_1", "block_2"):
        np.testing.assert_allclose(lrs[f"lr/{group} ×16"], LAMBDA * lrs[f"lr/{group}"], rtol=1e-6)
    assert lrs["lr/block_1"].iloc[0] < lrs["lr/block_2"].iloc[0] < lrs["lr/head"].iloc[0]  # discriminative


# -- 5: where users look -----------------------------------------------------------------------------
def flag_owners(help_text: str) -> dict[str, list[str]]:
    """'--flag' -> the methods its help names ("... (method lora, loraplus)"), from `train --help`."""
    owners = {}
    for entry in re.split(r"\n  (?=-)", help_text):
        words = " ".join(entry.split())
        found = re.search(r"\(method ([^)]*)\)$", words)
        if found:
            owners[words.split()[0]] = found.group(1).split(", ")
    return owners


def test_registry_cli_study_names_and_refusals():
    from workbench import cli, peft
    from workbench.study import grid_variants

    method = get_method("loraplus")
    assert "loraplus" in peft.method_names() and "LoRA+" in method.description
    caps = method.capabilities
    assert caps.mergeable and caps.stageable and caps.share_modes == () and caps.what_trains == "LoRA weights"
    assert method.prefix == "lora_" and method.lr_multipliers is not None and method.layers is not None

    # LoRA's options verbatim (so --rank, --alpha, --lora-targets are shared flags), plus λ.
    lora_fields = {f.name: f for f in get_method("lora").option_fields()}
    mine = {f.name: f for f in method.option_fields()}
    assert list(mine) == ["rank", "alpha", "lora_targets", "top_blocks", "lr_ratio"]
    for name, f in lora_fields.items():
        assert (mine[name].default, dict(mine[name].metadata)) == (f.default, dict(f.metadata)), name
    ratio = mine["lr_ratio"]
    assert ratio.default == 16.0 and ratio.metadata["low"] == 1 and ratio.metadata["token"] == "λ{}"
    assert ratio.metadata["widget"] == (1, 2, 4, 8, 16, 32) and ratio.metadata["label"] == "B's LR ÷ A's LR λ"

    parser = cli.build_parser()
    train = next(a for a in parser._subparsers._group_actions if a.dest == "command").choices["train"]
    owners = flag_owners(train.format_help())
    assert owners["--lr-ratio"] == ["loraplus"]
    for flag in ("--rank", "--alpha", "--lora-targets"):  # one shared flag, owned by LoRA, naming LoRA+ too
        assert owners[flag][0] == "lora" and "loraplus" in owners[flag], (flag, owners[flag])
    args = parser.parse_args(["train", "--model", "mnist-cnn", "--data", "digits", "--method", "loraplus",
                              "--rank", "4", "--lr-ratio", "8"])
    config = cli._train_config(args)
    assert config.options == method.options(rank=4, alpha=16.0, lora_targets=None, lr_ratio=8.0)
    assert config.display_name().startswith("loraplus r4 λ8 ·")

    for text_rows in (True, False):
        assert ("loraplus λ=16", {"method": "loraplus"}) in grid_variants(text=text_rows)

    for bad, name in (({"rank": 0}, "rank"), ({"lr_ratio": 0.5}, "lr_ratio"), ({"alpha": 0}, "alpha"),
                      ({"lr_ratio": float("nan")}, "lr_ratio")):
        with pytest.raises(ConfigError, match=rf"{name}.*Received: {name}="):
            TrainConfig(model="mnist-cnn", data="digits", method="loraplus", method_options=bad)
    with pytest.raises(ConfigError, match="lr_ratio"):
        small_image_config(method="lora", lr_ratio=8.0)  # λ is LoRA+'s option, not LoRA's
    with pytest.raises(ConfigError, match="share"):
        small_image_config(method="loraplus", share="tied")


def test_refusals_that_need_the_model():
    with pytest.raises(ConfigError, match="rank 128 exceeds .*'features'.*Received: rank=128"):
        prepared(small_image_config(method="loraplus", rank=128))  # features: 1568 -> 64
    with pytest.raises(ConfigError, match="No layer matches the LoRA targets.*Received: lora_targets="):
        prepared(small_image_config(method="loraplus", lora_targets=["nope"]))
    prep = prepared(small_image_config(method="loraplus", rank=2))
    with pytest.raises(ConfigError, match="Received: share='tied'"):
        get_method("loraplus").apply(prep.task_model, prep.config.options, "tied")  # a caller past TrainConfig
