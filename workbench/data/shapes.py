"""Give a user's own model the data in the shape it was built for, when one obvious transform exists.

Why: a CNN built for scikit-learn digits' native 8×8×1 input, or a dense model reading digits' 64
pixel values, is a fair model for the `digits` dataset, yet the loader presents every image dataset
at MNIST's 28×28×1 (so one pretrained CNN fits them all). Refusing such a model would be a guess
dressed up as a rule; transforming the data silently would hide what the model saw. So the data is
transformed only when the transform is not a guess, and the returned note says which one it was:

- native resolution: digits are 8×8 in the file; a model taking (8, 8, 1) gets those pixels, not
  the 28×28 version shrunk back (which would blur them twice);
- resize: images to the model's H×W, from the native pixels, the dataset's border scaled along
  (one resampling, the framing the 28×28 version has); grey repeated to 3 channels, 3 averaged to 1;
- reshape: images flattened row by row to (H·W·C,) or (H·W·C, 1), at native or presented size;
  a table's F feature columns to (F, 1) or a square (s, s) / (s, s, 1) image when F = s².

Anything else (2 channels, a flat length matching neither size) is refused with the shapes that
would fit. Plain numpy, once per run, on the whole dataset; nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from workbench.data.augment import resize_images
from workbench.data.loading import Dataset
from workbench.errors import ModelError, received

#: Refuse a transform whose arrays would need more memory than this (224×224×3 of 5,000 images: 3 GB).
MAX_ADAPTED_BYTES = 2 * 2**30

Shape = tuple[int | None, ...]


def fits(have: Sequence[int], want: Sequence[int | None]) -> bool:
    """Same rank, and every dimension equal or left open (None) by the model."""
    return len(have) == len(want) and all(w is None or int(w) == int(h) for h, w in zip(have, want, strict=True))


def is_image_layout(x: np.ndarray) -> bool:
    """(N, H, W, C), or (N, H, W) with H, W > 1: what image augmentation (shifts) can work on."""
    return x.ndim == 4 or (x.ndim == 3 and min(x.shape[1:]) > 1)


def fit_to_model(ds: Dataset, want: Sequence[int | None], label: str) -> tuple[Dataset, str | None]:
    """`ds` with its inputs in the model's per-example shape `want`, and a note saying how (None: as is).

    Raises `ModelError` (one line: both shapes and the ones that would fit) when no obvious
    transform exists. `label` names the model in messages (its file name).
    """
    want = tuple(None if d is None else int(d) for d in want)
    have = tuple(ds.x.shape[1:])
    if fits(have, want):
        return ds, None
    modality = ds.card.modality
    out = _images(ds, want) if modality == "image" else _table(ds, want) if modality == "tabular" else None
    if out is None:
        raise ModelError(_refusal(ds, want, label))
    x, note = out
    return dataclasses.replace(ds, x=x, native=None, notes=[*ds.notes, note]), note


def _fmt(shape: Sequence[int | None]) -> str:
    return str(tuple(shape))


def _images(ds: Dataset, want: Shape) -> tuple[np.ndarray, str] | None:
    x, native, name = ds.x, ds.native, ds.card.name
    n, big_h, big_w, channels = x.shape
    sources = [(native, f"the native {native.shape[1]}×{native.shape[2]} images of {name}")] if native is not None else []
    sources.append((x, f"the {big_h}×{big_w}×{channels} images of {name}"))
    if len(want) == 1 or (len(want) == 2 and want[1] == 1):  # a dense model's flat vector (or a sequence)
        for source, what in sources:
            size = math.prod(source.shape[1:])
            if want[0] in (None, size):
                shape = (size,) if len(want) == 1 else (size, 1)
                _check_memory(n, shape, ds)
                extra = f", not upsampled to {big_h}×{big_w}" if source is native else ""
                return (np.ascontiguousarray(source).reshape(n, *shape),
                        f"your model takes {_fmt(want)}: {what} are fed flattened row by row "
                        f"({size} values){extra}")
        return None
    if len(want) not in (2, 3):
        return None
    height, width = want[0] or big_h, want[1] or big_w
    target_c = want[2] if len(want) == 3 else 0  # 0: the model has no channel axis (grey only)
    _check_memory(n, (height, width, max(target_c or channels, 1)), ds)
    if (height, width) == (big_h, big_w):
        source, how = x, ""
    elif native is not None and (height, width) == native.shape[1:3]:
        source = native
        how = (f"{name} is {height}×{width} natively, so your model gets those images, "
               f"not the {big_h}×{big_w} upsampled ones")
    else:
        base = native if native is not None else x
        pad = round(ds.card.image_pad * min(height / big_h, width / big_w)) if native is not None else 0
        if min(height, width) - 2 * pad < 1:
            return None
        source = np.stack([resize_images(base[..., c], (height, width), pad=pad) for c in range(base.shape[-1])],
                          axis=-1)
        border = f" (a {pad}-pixel border, as in the {big_h}×{big_w} version)" if pad else ""
        how = f"the images of {name} are resized from {base.shape[1]}×{base.shape[2]} to {height}×{width}{border}"
    have_c = source.shape[-1]
    if target_c in (None, have_c):
        changed, chan = source, ""
    elif target_c == 0 and have_c == 1:
        changed, chan = source[..., 0], "the channel axis is dropped"
    elif target_c == 3 and have_c == 1:
        changed, chan = np.repeat(source, 3, axis=-1), "the grey channel is repeated 3 times"
    elif target_c == 1 and have_c == 3:
        changed, chan = source.mean(axis=-1, keepdims=True), "the 3 colour channels are averaged to grey"
    else:
        return None
    parts = [part for part in (how, chan) if part]
    return np.ascontiguousarray(changed, dtype=np.float32), f"your model takes {_fmt(want)}: " + "; ".join(parts)


def _table(ds: Dataset, want: Shape) -> tuple[np.ndarray, str] | None:
    n, features = ds.x.shape
    filled = tuple(features if d is None and len(want) == 2 and i == 0 else d for i, d in enumerate(want))
    if any(d is None for d in filled) or math.prod(filled) != features:
        return None
    square = len(filled) in (2, 3) and filled[0] == filled[1] and filled[2:] in ((), (1,))
    if filled != (features, 1) and not square:
        return None
    return (ds.x.reshape(n, *filled),
            f"your model takes {_fmt(want)}: the {features} feature columns of {ds.card.name} are reshaped to "
            f"{_fmt(filled)}, row by row in column order")


def _check_memory(n: int, shape: Sequence[int], ds: Dataset) -> None:
    size = 4 * n * math.prod(shape)
    if size > MAX_ADAPTED_BYTES:
        raise ModelError(f"Feeding {n:,} examples of {ds.card.name} to your model as {_fmt(shape)} needs "
                         f"{size / 2**30:.1f} GiB of memory: use a model with a smaller input, or --max-rows. "
                         f"{received(shape=tuple(shape))}")


def _refusal(ds: Dataset, want: Shape, label: str) -> str:
    have = tuple(ds.x.shape[1:])
    fitting = [have]
    if ds.card.modality == "image":
        if ds.native is not None:
            fitting += [tuple(ds.native.shape[1:]), (math.prod(ds.native.shape[1:]),)]
        fitting += [(math.prod(have),), (*have[:2], 3)]
        what = "images"
    elif ds.card.modality == "tabular":
        side = math.isqrt(have[0])
        fitting += [(have[0], 1)] + ([(side, side, 1)] if side * side == have[0] else [])
        what = "features"
    else:
        what = "inputs"
    others = ", ".join(_fmt(s) for s in dict.fromkeys(fitting[1:]))
    options = f"shape={_fmt(have)}" + (f" (or {others})" if others else "")
    return (f"Your model's input shape {_fmt(want)} does not fit the {what} of {ds.card.name}, shaped {_fmt(have)}, "
            f"and no obvious transform exists: build its Input with {options}. {received(model=label)}")
