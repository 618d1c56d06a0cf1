"""Token batches for the source probes and the masked-LM head fit: masking, length buckets, gathers.

Kept apart from `source_probes` (what each probe measures): this is the plumbing that feeds a BERT
encoder fixed token rows cheaply — mask like the pretraining did, group rows by length and trim each
group to its longest row, and find the masked positions again inside the groups.
"""

from __future__ import annotations

import keras
import numpy as np

PROBE_MAX_LEN = 40  # probe texts hold at most this many tokens ([CLS] and [SEP] included): the rare
# long snippet would cost as much encoder time as several typical ones
CHUNK_ROWS = 128  # token rows per encoder call, trimmed to their longest (an eager call costs ~35 ms)
MASK_RATE, MASK_MAX = 0.15, 10  # as the tiny-bert pretraining masked (BertMaskedLMPreprocessor)


def mask_tokens(token_ids: np.ndarray, padding_mask: np.ndarray, rng: np.random.Generator, *, special: list[int],
                mask_id: int, vocab_size: int, keep_rate: float = 0.0, random_rate: float = 0.0):
    """Choose 15 % (at most 10) of each row's real tokens; returns (masked ids, rows, cols, labels).

    The probe masks every chosen token with [MASK]; head fitting uses BERT's 80/10/10 mix
    (`random_rate` 0.1 random tokens, `keep_rate` 0.1 unchanged), as the pretraining did.
    """
    ids = token_ids.copy()
    rows, cols = [], []
    candidates = padding_mask & ~np.isin(token_ids, special)
    for r in range(len(ids)):
        where = np.flatnonzero(candidates[r])
        if not len(where):
            continue
        k = min(MASK_MAX, max(1, int(round(MASK_RATE * len(where)))))
        chosen = np.sort(rng.choice(where, size=k, replace=False))
        rows.extend([r] * k)
        cols.extend(chosen.tolist())
    rows_a, cols_a = np.array(rows, "int64"), np.array(cols, "int64")
    labels = token_ids[rows_a, cols_a].astype("int64")
    draw = rng.random(len(rows_a))
    replaced = np.where(draw < random_rate, rng.integers(len(special), vocab_size, len(rows_a)), mask_id)
    replaced = np.where((draw >= random_rate) & (draw < random_rate + keep_rate), labels, replaced)
    ids[rows_a, cols_a] = replaced
    return ids, rows_a, cols_a, labels


def short_texts(encoded: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """The first `count` rows of at most `PROBE_MAX_LEN` tokens (in the given order)."""
    keep = np.flatnonzero(encoded["padding_mask"].sum(axis=1) <= PROBE_MAX_LEN)[:count]
    return {k: v[keep] for k, v in encoded.items()}


def chunk_by_length(encoded: dict[str, np.ndarray], rows: int | None = None) -> list[tuple[np.ndarray, dict]]:
    """Rows sorted by length, in chunks trimmed to their longest row: [(row indices, inputs), ...].

    TensorFlow runs eager ops at any shape for free, so short chunks skip the padding. JAX compiles
    each eager op once per shape (seconds for a BERT, on every new shape), so there the probe is one
    batch (default `rows`: `CHUNK_ROWS` on TensorFlow, every row on JAX).
    """
    jax = keras.backend.backend() == "jax"
    rows = rows or (max(len(encoded["token_ids"]), 1) if jax else CHUNK_ROWS)
    lengths = encoded["padding_mask"].sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    out = []
    for start in range(0, len(order), rows):
        idx = order[start:start + rows]
        width = max(int(lengths[idx].max()), 1)
        out.append((idx, {k: v[idx, :width] for k, v in encoded.items()}))
    return out


def gather_plan(chunks: list[tuple[np.ndarray, dict]], rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per chunk: which of the (row, col) picks fall in it, and their rows' positions inside the chunk."""
    out = []
    for idx, _ in chunks:
        position = np.full(int(max(idx.max(), rows.max(initial=0))) + 1, -1)
        position[idx] = np.arange(len(idx))
        take = np.isin(rows, idx)
        out.append((take, position[rows[take]]))
    return out
