"""Engine speed options: cached linear-probe features, mixed precision, XLA, trimmed token batches.

Fast and timing-free: each test checks that an option gives the same *kind* of run (what trains,
what is recorded, what is exported), never how fast it was.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import small_image_config
from helpers import predict, prepared, train_here, weights

from workbench.config import TrainConfig
from workbench.train import features
from workbench.train.feed import padded_lengths, training_feed, trimmed_share
from workbench.train.trainer import trims_padding


def changed(before, after):
    return {p for p in before if not np.array_equal(before[p], after[p])}


def train_watching(prep, store):
    """Train through the engine; also return the name(s) of the model(s) that `fit` ran on."""
    from workbench.train.trainer import train

    seen = set()

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.add(self.model.name)

    run_id = store.create_run(prep.config.to_dict(), prep.config.display_name(), status="running")
    return run_id, train(prep, store=store, run_id=run_id, extra_callbacks=[Watch()]), seen


def recorded(store, run_id):
    frame = store.metrics(run_id)
    return frame, sorted(set(frame.key))


def test_linear_probe_trains_the_head_on_cached_features(store, monkeypatch):
    config = small_image_config(method="linear", lr=1e-2, epochs=2)
    prep = prepared(config)
    plan = features.plan(prep)
    assert plan is not None, "a linear probe on a built-in model caches its features"
    assert {v.path for v in plan.head.trainable_variables} == {"head/kernel", "head/bias"}
    assert not any(v.trainable for v in plan.extractor.variables)
    assert features.plan(prep) is not None  # planning again (as train() does) still finds the split

    before = weights(prep.task_model.model)
    run_id, summary, fitted = train_watching(prep, store)
    assert fitted == {plan.head.name}  # fit ran on the head model, fed by cached features
    after = weights(prep.task_model.model)
    assert changed(before, after) == {"head/kernel", "head/bias"}  # frozen backbone untouched
    assert prep.report.trainable == 64 * 10 + 10

    frame, keys = recorded(store, run_id)
    loss = frame[frame.key == "train/loss"]
    assert list(loss.step) == list(range(1, summary["steps"] + 1))  # one true batch loss per step
    assert np.isfinite(loss.value).all()
    assert {"val/loss", "val/accuracy", "test/accuracy", "train/lr"} <= set(keys)

    # The export is the full task model with the trained head, predicting like the in-memory one.
    saved = keras.saving.load_model(store.run_dir(run_id) / "model.keras", compile=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(saved.predict(prep.inputs["test"], verbose=0)),
                               predict(prep), rtol=1e-5, atol=1e-5)

    # Same kind of run as recomputing the backbone every step: same keys, steps and summary fields.
    monkeypatch.setenv("WORKBENCH_FEATURE_CACHE", "0")
    slow = prepared(config)
    assert features.plan(slow) is None
    slow_id, slow_summary, fitted = train_watching(slow, store)
    assert fitted == {slow.task_model.model.name}
    assert recorded(store, slow_id)[1] == keys
    assert slow_summary["steps"] == summary["steps"]
    assert set(slow_summary) == set(summary)


def test_text_linear_probe_keeps_the_head_dropout_in_the_trained_part(store):
    prep = prepared(TrainConfig(model="tiny-bert", data="sms-spam", method="linear", epochs=1, batch_size=32,
                                max_rows=240, max_seq_len=32, export_model=False))
    plan = features.plan(prep)
    assert plan is not None
    assert [layer.name for layer in plan.head.layers[1:]] == ["head_dropout", "head"]
    assert plan.extractor.outputs[0].shape[-1] == 128
    before = weights(prep.task_model.model)
    _, _, fitted = train_watching(prep, store)
    assert fitted == {plan.head.name}
    assert changed(before, weights(prep.task_model.model)) == {"head/kernel", "head/bias"}


@pytest.mark.parametrize("method", ["lora", "full", "bitfit"])
def test_other_methods_do_not_cache(method):
    assert features.plan(prepared(small_image_config(method=method))) is None


def test_augmented_linear_probe_does_not_cache():
    assert features.plan(prepared(small_image_config(method="linear", augment=True))) is None


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_runs_complete_with_finite_losses(runs_dir, policy):
    from workbench.runs import RunManager

    manager = RunManager(runs_dir)
    ids = [manager.start(small_image_config(method=method, epochs=2, mixed_precision=policy))
           for method in ("lora", "linear")]
    for run_id in ids:
        assert manager.wait(run_id, timeout=300) == "completed", manager.store.get_run(run_id).error
        loss = manager.store.metrics(run_id, keys=["train/loss"]).value
        assert len(loss) > 0 and np.isfinite(loss).all()
        assert np.isfinite(manager.store.get_run(run_id).final_metrics["test_loss"])


def test_mixed_precision_head_outputs_float32():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        prep = prepared(small_image_config(method="lora", mixed_precision="mixed_float16"))
        assert prep.task_model.groups["head"][0].compute_dtype == "float32"
        assert predict(prep).dtype == np.float32
    finally:
        keras.config.set_dtype_policy("float32")


def test_jit_compile_run_completes(store):
    prep = prepared(small_image_config(method="lora", jit_compile=True))
    _, summary = train_here(prep, store)
    assert prep.task_model.model.jit_compile is True
    assert np.isfinite(summary["train_loss"])


def test_trimmed_token_batches_are_exact(store):
    prep = prepared(TrainConfig(model="tiny-bert", data="sms-spam", method="lora", epochs=1, batch_size=16,
                                max_rows=200, max_seq_len=64, export_model=False))
    x = prep.inputs["train"]
    lengths = padded_lengths(x)
    assert lengths is not None and lengths.max() <= 64
    data, _ = training_feed(x, np.zeros(len(lengths), "int32"), batch_size=16, epochs=1, seed=0, trim_padding=True)
    widths = [int(xb["token_ids"].shape[1]) for xb, _ in data]
    assert all(w % 8 == 0 or w == 64 for w in widths) and min(widths) < 64
    # Masked padding: a trimmed batch gives the model's outputs for the full-length one.
    xb, _ = next(iter(data))
    width = int(xb["token_ids"].shape[1])
    full = {k: v[:16] for k, v in x.items()}
    model = prep.task_model.model
    rows = np.nonzero(lengths[:16] <= width)[0]
    trimmed = model.predict({k: v[:, :width] for k, v in full.items()}, verbose=0)
    np.testing.assert_allclose(trimmed[rows], model.predict(full, verbose=0)[rows], atol=1e-5)
    assert not trims_padding(prep)  # tiny-bert is bound by per-op overhead: full-length batches
    _, summary = train_here(prep, store)
    assert np.isfinite(summary["train_loss"])


def test_trimming_needs_enough_padding_to_remove():
    mask = np.ones((64, 16), bool)
    mask[:, 12:] = False  # every row 12 long: batches of width 16 (rounded up to 8) remove nothing
    orders = np.stack([np.arange(64)])
    assert trimmed_share(mask.sum(1), orders, 16, 16) == 0.0
    x = {"token_ids": np.ones((64, 16), "int32"), "padding_mask": mask}
    data, _ = training_feed(x, np.zeros(64, "int32"), batch_size=16, epochs=1, seed=0, trim_padding=True)
    assert {int(xb["token_ids"].shape[1]) for xb, _ in data} == {16}


def test_left_padded_or_maskless_inputs_are_not_trimmed():
    mask = np.array([[False, True, True], [True, True, True]])
    assert padded_lengths({"token_ids": np.ones((2, 3), "int32"), "padding_mask": mask}) is None
    assert padded_lengths(np.ones((2, 3), "float32")) is None


def test_stop_during_the_feature_pass_ends_the_run_after_one_step(store):
    import threading

    from workbench.train.trainer import train

    prep = prepared(small_image_config(method="linear", epochs=2))
    stop = threading.Event()
    stop.set()  # pressed while the features were being computed
    run_id = store.create_run(prep.config.to_dict(), "stopped", status="running")
    summary = train(prep, store=store, run_id=run_id, stop_event=stop)
    assert summary["steps"] == 1
