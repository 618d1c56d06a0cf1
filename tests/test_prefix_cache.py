"""The frozen-prefix cache and length-bucketed batches: same gradients, every row once per epoch."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import prepared, train_here

from workbench.config import TrainConfig
from workbench.errors import ConfigError
from workbench.run_notes import run_notes
from workbench.train import prefix_cache
from workbench.train.feed import bucketed_orders, epoch_orders, padded_lengths, training_feed, trimmed_share
from workbench.train.trainer import labels, trainable_groups


def tiny(**overrides) -> TrainConfig:
    values = dict(model="tiny-bert", data="sms-spam", method="lora", epochs=1, batch_size=16, max_rows=160,
                  max_seq_len=32, export_model=False)
    values.update(overrides)
    return TrainConfig.from_dict(values)


def gradients(model, x, y, variables):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        value = loss(y, model(x, training=False))
    return [np.asarray(g) for g in tape.gradient(value, variables)]


@pytest.mark.parametrize("setting", ["lora top block", "full top-down stage 2"])
def test_cached_prefix_gives_the_gradients_of_recomputing_with_dropout_off(setting):
    if setting == "lora top block":
        prep = prepared(tiny(method_options={"top_blocks": 1}))
    else:  # the stage of top-down staging that trains block_2 and the head
        prep = prepared(tiny(method="full"))
        for group, variables in trainable_groups(prep.task_model).items():
            for v in variables:
                v.trainable = group in ("block_2", "head")
    x = prefix_cache.with_index(prep.inputs["train"])
    cache = prefix_cache.plan(prep)
    assert cache is not None and cache.update() and cache.cut == 2  # embeddings and block_1 frozen
    rows = np.arange(7, 23)  # a batch, trimmed to its longest row as the feed cuts it
    width = int(padded_lengths(x)[rows].max())
    batch = {k: (v[rows][:, :width] if v.ndim == 2 else v[rows]) for k, v in x.items()}
    full = {k: v[rows] for k, v in x.items() if k != "example_index"}
    y = labels(prep, "train")[rows]
    trainable = prep.task_model.model.trainable_variables
    assert trainable and {id(v) for v in cache.model.trainable_variables} == {id(v) for v in trainable}
    cached = gradients(cache.model, batch, y, trainable)
    recomputed = gradients(prep.task_model.model, full, y, trainable)
    for a, b, v in zip(cached, recomputed, trainable, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=v.path)
    # Test batches (no example index) run the whole task model; validation rows are served from the cache
    # (after the training rows) and give the whole model's outputs: validation runs in inference mode anyway.
    np.testing.assert_allclose(cache.model(full, training=False), prep.task_model.model(full, training=False),
                               atol=1e-6)
    val = prefix_cache.indexed(cache, prep.inputs)["val"]
    assert val["example_index"][0] == len(x["padding_mask"])
    np.testing.assert_allclose(cache.model(val, training=False), prep.task_model.model(prep.inputs["val"], training=False),
                               atol=1e-5)


def test_top_down_staging_moves_the_cut_down_as_groups_unfreeze(store):
    prep = prepared(tiny(method="full", hierarchical="top-down", epochs=2, stage_steps=3))
    run_id, summary = train_here(prep, store)
    cuts = store.metrics(run_id, keys=["cache/groups"])
    # head alone: all three groups below it cached; then block_2 trains (2 cached), then block_1: the
    # embeddings alone are not worth caching (`PrefixGraph.min_cut`), so from there the whole model trains.
    assert cuts["value"].tolist() == [3.0, 2.0, 0.0]
    assert cuts["step"].tolist() == [0, 3, 6]
    assert "embeddings … block_2 cached" in summary["prefix_cache"] and "none cached" in summary["prefix_cache"]
    assert np.isfinite(summary["test_accuracy"]) and np.isfinite(summary["val_loss"])
    notes = run_notes(prep.config.to_dict(), store.metrics(run_id), prep.task_model.group_names)
    assert any("Frozen-prefix cache" in n and "from step 3 embeddings … block_1" in n for n in notes), notes


def test_the_embeddings_alone_are_not_cached():
    cache = prefix_cache.plan(prepared(tiny()))  # LoRA on every block: only the embeddings are frozen
    assert cache is not None and cache.frozen_groups() == 1
    assert not cache.update() and cache.cut == 0 and cache.states is None


def test_the_cache_is_off_where_it_would_not_be_exact_or_was_turned_off(monkeypatch):
    assert prefix_cache.plan(prepared(tiny(prefix_cache=False))) is None
    assert prefix_cache.plan(prepared(tiny(share="tied"))) is None  # a shared factor may train in any block
    assert prefix_cache.plan(prepared(tiny(method="prompt"))) is None  # the model was re-wired
    assert prefix_cache.plan(prepared(tiny(augment=True))) is None  # inputs change every epoch
    monkeypatch.setenv("WORKBENCH_PREFIX_CACHE", "0")
    assert prefix_cache.plan(prepared(tiny())) is None


def test_lora_on_the_top_blocks_only():
    prep = prepared(tiny(method_options={"top_blocks": 1}))
    adapted = {v.path.split("/")[-2] for v in prep.task_model.model.trainable_variables if "lora_" in v.path}
    assert adapted == {"query", "value"}
    owners = {v.path.split("/")[0] for v in prep.task_model.model.trainable_variables if "lora_" in v.path}
    assert owners == {"transformer_layer_1"}  # tiny-bert's top block (block_2)
    everywhere = prepared(tiny())
    assert prep.report.trainable < everywhere.report.trainable
    assert "top 1 blocks" in prep.config.display_name()
    with pytest.raises(ConfigError, match="has 2 blocks.*top_blocks 2 or less"):
        prepared(tiny(method_options={"top_blocks": 5}))


def test_length_buckets_keep_every_row_exactly_once_per_epoch():
    rng = np.random.default_rng(3)
    lengths = rng.integers(3, 64, size=1003)
    orders = epoch_orders(len(lengths), 4, seed=5)
    grouped = bucketed_orders(orders, lengths, batch_size=16, seed=5, chunk=10)
    for row in grouped:
        assert sorted(row.tolist()) == list(range(len(lengths)))
    np.testing.assert_array_equal(grouped, bucketed_orders(orders, lengths, 16, seed=5, chunk=10))  # deterministic
    assert not np.array_equal(grouped, bucketed_orders(orders, lengths, 16, seed=6, chunk=10))
    # A resume from epoch 2 regroups its epochs as the uninterrupted run did.
    np.testing.assert_array_equal(grouped[2:], bucketed_orders(orders[2:], lengths, 16, seed=5, first_epoch=2, chunk=10))
    # Rows of a batch have similar lengths: far less padding once each batch is trimmed to its longest.
    assert trimmed_share(lengths, grouped, 16, 64) > trimmed_share(lengths, orders, 16, 64) + 0.2
    spread = lambda o: np.mean([np.ptp(lengths[o[i:i + 16]]) for i in range(0, len(o) - 16, 16)])  # noqa: E731
    assert spread(grouped[0]) < spread(orders[0]) / 4


def test_the_bucketed_feed_yields_each_row_once_per_epoch_trimmed_to_its_batch():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 48, size=200)
    mask = np.arange(48)[None, :] < lengths[:, None]
    x = {"token_ids": np.where(mask, 7, 0).astype("int32"), "padding_mask": mask,
         "example_index": np.arange(200, dtype="int32")}
    data, steps = training_feed(x, np.zeros(200, "int32"), batch_size=16, epochs=2, seed=1, trim_padding=True,
                                length_buckets=True)
    batches = list(data)
    assert len(batches) == 2 * steps
    for epoch in range(2):
        seen = np.concatenate([xb["example_index"].numpy() for xb, _ in batches[epoch * steps:(epoch + 1) * steps]])
        assert sorted(seen.tolist()) == list(range(200))
    for xb, _ in batches:
        longest = int(lengths[xb["example_index"].numpy()].max())
        assert xb["token_ids"].shape[1] == min(-(-longest // 8) * 8, 48)
