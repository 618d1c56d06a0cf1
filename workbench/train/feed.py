"""Feeding batches to `Model.fit`: seeded per-epoch shuffles, optional augmentation, prefetch.

Shuffle orders come from `np.random.default_rng(seed)` only, never from global seeds: several runs
train in threads of one process, and TensorFlow's global seed is shared between them.
With TensorFlow and no augmentation the batches come from `tf.data` (gather + prefetch, no Python
per batch; token batches optionally trimmed to their longest row); otherwise (augmentation, or the
JAX backend on the GPU machine) from a `PyDataset`.

Length buckets (`length_buckets`, with trimming): each epoch's shuffled order is cut into chunks of
`BUCKET_CHUNK` batches, each chunk sorted by length and cut into batches, and the batches shuffled
again, so a batch holds rows of similar length and trimming removes most of its padding. It is
Hugging Face's `group_by_length` (mega-batches of 50 batches), with the batches of all chunks shuffled
so that the curve does not swing from long to short texts inside every chunk. Every row still comes
exactly once per epoch, and the order is a function of (seed, epoch) alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

Inputs = np.ndarray | dict[str, np.ndarray]


def take(x: Inputs, idx: np.ndarray) -> Inputs:
    return {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]


def length(x: Inputs) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def epoch_orders(n: int, epochs: int, seed: int) -> np.ndarray:
    """One permutation of range(n) per epoch (epochs × n), reproducible from the seed."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(epochs)]) if n else np.zeros((epochs, 0), "int64")


class ShuffledBatches(keras.utils.PyDataset):
    """Batches in a fresh seeded order every epoch, augmented on the fly when asked."""

    def __init__(self, x: Inputs, y: np.ndarray, batch_size: int, orders: np.ndarray,
                 augment: Callable[[Inputs, np.random.Generator], Inputs] | None = None, seed: int = 0,
                 first_epoch: int = 0) -> None:
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=8)
        self.x, self.y, self.batch_size, self.orders = x, y, batch_size, orders
        self.augment = augment
        self.seed, self.first_epoch = seed, first_epoch
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[Any, np.ndarray]:
        order = self.orders[min(self.epoch, len(self.orders) - 1)]
        idx = order[index * self.batch_size:(index + 1) * self.batch_size]
        xb = take(self.x, idx)
        if self.augment is not None:  # draws per (seed, epoch, batch): the same whatever the prefetch order,
            rng = np.random.default_rng((self.seed + 1, self.first_epoch + self.epoch, index))  # or a resume
            xb = self.augment(xb, rng)
        return xb, self.y[idx]

    def on_epoch_end(self) -> None:
        self.epoch += 1


BUCKET_CHUNK = 50  # batches per chunk sorted by length (Hugging Face's mega-batch)


def bucketed_orders(orders: np.ndarray, lengths: np.ndarray, batch_size: int, seed: int,
                    first_epoch: int = 0, chunk: int = BUCKET_CHUNK) -> np.ndarray:
    """Each epoch's order regrouped into batches of similar length (see the module docstring).

    The batches are consecutive `batch_size` slices of the returned order (what the feeds cut), the
    short remainder batch last; row i of the result is still a permutation of range(n).
    """
    out = np.empty_like(orders)
    for row, order in enumerate(orders):
        rng = np.random.default_rng((seed + 2, first_epoch + row))  # per (seed, epoch): a resume sees the same
        size = chunk * batch_size
        pieces = []
        for start in range(0, len(order), size):
            part = order[start:start + size]
            part = part[np.argsort(-lengths[part], kind="stable")]
            pieces += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
        full = [p for p in pieces if len(p) == batch_size]
        short = [p for p in pieces if len(p) < batch_size]
        batches = [full[i] for i in rng.permutation(len(full))] + short
        out[row] = np.concatenate(batches) if batches else order
    return out


def padded_lengths(x: Inputs) -> np.ndarray | None:
    """Each row's real length when `x` is right-padded token input with a `padding_mask`, else None."""
    if not isinstance(x, dict) or "padding_mask" not in x:
        return None
    mask = np.asarray(x["padding_mask"]).astype(bool)
    if mask.ndim != 2:
        return None
    lengths = mask.sum(axis=1)
    if not np.array_equal(mask, np.arange(mask.shape[1])[None, :] < lengths[:, None]):
        return None  # not right-padded: trimming could cut real tokens
    return lengths


def trimmed_share(lengths: np.ndarray, orders: np.ndarray, batch_size: int, full: int) -> float:
    """The share of token positions that trimming removes over all the run's batches."""
    if full == 0 or lengths.size == 0:
        return 0.0
    kept = 0
    for order in orders:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            kept += len(rows) * min(-(-int(lengths[rows].max()) // 8) * 8, full)
    return 1.0 - kept / (orders.size * full)


def training_feed(x: Inputs, y: np.ndarray, *, batch_size: int, epochs: int, seed: int,
                  augment: Callable | None = None, trim_padding: bool = False, length_buckets: bool = False,
                  min_trim: float = 0.03, first_epoch: int = 0,
                  report: dict | None = None) -> tuple[Any, int]:
    """Returns (data for `fit`, steps per epoch).

    `trim_padding` (token inputs, TensorFlow, no augmentation): each batch is cut to its longest
    row, rounded up to a multiple of 8, instead of the full `max_seq_len`. Exact for models that mask
    padding (attention and pooling ignore padded positions), and less work per step; the caller
    decides it (not under XLA, where every new length would compile the step again).
    `length_buckets` (with `trim_padding`): batches of rows of similar length (`bucketed_orders`).
    `first_epoch`: a resumed run's feed starts at that epoch (with the order it would have had).
    `report`, if given, receives what the feed did: `trimmed` (share of token positions cut), `buckets`.
    """
    n = length(x)
    steps = math.ceil(n / batch_size)
    orders = epoch_orders(n, epochs, seed)[first_epoch:]  # a resumed run's epochs: the orders it would have had
    if augment is None and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        xs = {k: tf.constant(v) for k, v in x.items()} if isinstance(x, dict) else tf.constant(x)
        ys = tf.constant(y)
        lengths = padded_lengths(x) if trim_padding else None
        grouped = bucketed_orders(orders, lengths, batch_size, seed, first_epoch) if (
            lengths is not None and length_buckets) else orders
        if lengths is not None and trimmed_share(lengths, grouped, batch_size, x["padding_mask"].shape[1]) < min_trim:
            lengths = None  # (and the plain shuffle: grouping by length without trimming would gain nothing)
        else:
            orders = grouped
        if report is not None and lengths is not None:
            report.update(trimmed=trimmed_share(lengths, orders, batch_size, x["padding_mask"].shape[1]),
                          buckets=bool(length_buckets))
        # Sequence-shaped inputs are cut along their second axis (token ids, segment ids, the mask).
        seq_keys = ([k for k, v in x.items() if np.ndim(v) >= 2 and v.shape[1] == x["padding_mask"].shape[1]]
                    if lengths is not None else [])
        lens = tf.constant(lengths.astype("int32")) if lengths is not None else None
        full = int(x["padding_mask"].shape[1]) if lengths is not None else 0

        def gather(idx):
            xb = {k: tf.gather(v, idx) for k, v in xs.items()} if isinstance(xs, dict) else tf.gather(xs, idx)
            if lens is not None:
                longest = tf.reduce_max(tf.gather(lens, idx))
                keep = tf.minimum((longest + 7) // 8 * 8, full)
                xb = {k: (v[:, :keep] if k in seq_keys else v) for k, v in xb.items()}
            return xb, tf.gather(ys, idx)

        data = (tf.data.Dataset.from_tensor_slices(orders)
                .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
                .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .prefetch(tf.data.AUTOTUNE))
        return data, steps
    return ShuffledBatches(x, y, batch_size, orders, augment, seed, first_epoch), steps
