"""Pure-numpy array transforms: cheap augmentation for few-label fine-tuning, and image resizing.

Why numpy and a passed-in generator: augmentation runs inside training loops of several threads at
once; each run owns its ``np.random.Generator`` so results are reproducible per seed and never
depend on the global RNG. No TensorFlow here: these run on a batch before it is fed to the model.
`resize_images` is deterministic; the loader uses it to fit small images (8x8 digits) to MNIST size.
"""

from __future__ import annotations

import numpy as np


def _check_rng(rng: np.random.Generator) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)). Received: {type(rng).__name__}")


def _check_prob(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1. Received: {name}={value}")


def augment_token_ids(ids: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, drop_prob: float = 0.1,
                      swap_prob: float = 0.1, pad_id: int = 0,
                      return_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Token dropout and adjacent swaps on right-padded token ids (B, T).

    Each inner token (not position 0, the CLS token, and not the last real token, SEP) is removed
    with probability `drop_prob`; the rest shift left and the freed tail is filled with `pad_id`,
    so padding stays at the end. Then non-overlapping adjacent inner pairs are swapped with
    probability `swap_prob`. A sentence never loses all of its inner tokens.

    Dropout shortens sequences, so the old `mask` over-counts real tokens: pass
    ``return_mask=True`` to get ``(ids, mask)`` back, or recompute the mask as ``ids != pad_id``.
    Positions beyond the original real length are returned unchanged.
    """
    _check_rng(rng)
    _check_prob("drop_prob", drop_prob)
    _check_prob("swap_prob", swap_prob)
    ids = np.asarray(ids)
    mask = np.asarray(mask)
    if ids.ndim != 2 or ids.shape != mask.shape:
        raise ValueError(f"ids and mask must both be (batch, length). Received: ids {ids.shape}, mask {mask.shape}")
    out = ids.copy()
    new_mask = mask.copy()
    real = mask.astype(bool)
    lengths = real.sum(axis=1)
    for b, length in enumerate(lengths):
        if not real[b, :length].all():
            raise ValueError(f"mask must be right-padded (ones, then zeros). Received: row {b} = {mask[b].tolist()}")
        if length <= 3:  # CLS, at most one inner token, SEP: nothing can change safely
            continue
        inner = ids[b, 1:length - 1]
        keep = rng.random(inner.size) >= drop_prob
        if not keep.any():
            keep[rng.integers(inner.size)] = True
        inner = inner[keep].copy()
        if swap_prob > 0 and inner.size > 1:
            swaps = rng.random(inner.size - 1) < swap_prob
            i = 0
            while i < inner.size - 1:
                if swaps[i]:
                    inner[i], inner[i + 1] = inner[i + 1], inner[i]
                    i += 2
                else:
                    i += 1
        new_len = inner.size + 2
        out[b, 1:new_len - 1] = inner
        out[b, new_len - 1] = ids[b, length - 1]
        out[b, new_len:length] = pad_id
        new_mask[b, new_len:length] = 0
    return (out, new_mask) if return_mask else out


def augment_images(x: np.ndarray, rng: np.random.Generator, *, max_shift: int = 2,
                   noise_std: float = 0.05) -> np.ndarray:
    """Random integer shifts (zero fill) of up to `max_shift` pixels per axis plus gaussian noise.

    Input (N, H, W, C) or (N, H, W) in [0, 1]; output float32 of the same shape, clipped to [0, 1].
    Images sharing a shift are moved together, so the cost is at most (2*max_shift+1)^2 slices.
    """
    _check_rng(rng)
    if max_shift < 0 or noise_std < 0:
        raise ValueError(f"max_shift and noise_std must be >= 0. Received: max_shift={max_shift}, noise_std={noise_std}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim not in (3, 4):
        raise ValueError(f"Images must be (N, H, W) or (N, H, W, C). Received: shape {x.shape}")
    n, h, w = x.shape[:3]
    if max_shift == 0:
        out = x.copy()
    else:
        out = np.zeros_like(x)
        dy = rng.integers(-max_shift, max_shift + 1, size=n)
        dx = rng.integers(-max_shift, max_shift + 1, size=n)
        for sy, sx in set(zip(dy.tolist(), dx.tolist(), strict=True)):
            if abs(sy) >= h or abs(sx) >= w:
                continue  # shifted fully out of the frame: stays zero
            sel = np.flatnonzero((dy == sy) & (dx == sx))
            out[sel, max(sy, 0):h + min(sy, 0), max(sx, 0):w + min(sx, 0)] = \
                x[sel, max(-sy, 0):h - max(sy, 0), max(-sx, 0):w - max(sx, 0)]
    if noise_std > 0:
        out += rng.normal(0.0, noise_std, size=out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def _resize_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights, rows summing to 1 so [0, 1] is kept: bilinear when enlarging, area when shrinking.

    Why area for shrinking: bilinear weights read only the 2 nearest source pixels, so shrinking
    28 -> 7 would skip most pixels (aliasing); averaging the covered area keeps every stroke.
    """
    if dst < src:
        edges = np.arange(dst + 1) * src / dst
        lo, hi = edges[:-1, None], edges[1:, None]
        cells = np.arange(src)[None, :]
        overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0, None)
        return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)
    pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, src - 1)
    m = np.zeros((dst, src), dtype=np.float32)
    np.add.at(m, (np.arange(dst), lo), 1 - (pos - lo))
    np.add.at(m, (np.arange(dst), hi), pos - lo)
    return m


def resize_images(x: np.ndarray, size: tuple[int, int], *, pad: int = 0) -> np.ndarray:
    """Resize (N, H, W) images to `size` minus a `pad`-pixel zero border on each side.

    Bilinear when enlarging, area-averaging when shrinking (see `_resize_matrix`).
    Half-pixel centres as in ``tf.image.resize``. With ``size=(28, 28), pad=4`` an 8x8 digit becomes
    20x20 inside a 4-pixel border: the framing MNIST digits have, so one CNN fits both datasets.
    """
    x = np.asarray(x, dtype=np.float32)
    box = (size[0] - 2 * pad, size[1] - 2 * pad)
    if box != x.shape[1:3]:
        x = _resize_matrix(x.shape[1], box[0]) @ x @ _resize_matrix(x.shape[2], box[1]).T
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    return np.clip(x, 0.0, 1.0).astype(np.float32)
