"""Seeded train/validation/test splits, stratified for classification.

Why stratified and seeded: PEFT comparisons in the workbench differ by a few points of accuracy, so
every method must see exactly the same rows (same seed -> same split), and small or imbalanced
classes (spam is ~13%) must appear in every split, or a test score means little. Only a local
``np.random.default_rng(seed)`` is used: several training threads run at once and the global numpy
RNG would make their splits depend on timing.

``limit_per_class`` trims only the training split (few-label experiments), so validation and test
rows, and their order, are identical with and without it and scores stay comparable.

A split that cannot train or score is refused here, after subsampling (`max_rows` can leave one
row of one class): training needs 2 classes for classification, and validation and test must each
hold a row, or Keras fits without validation ("input ran out of data") and reports no score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workbench.data.loading import DataError, Dataset


@dataclass
class Split:
    """Arrays of the three splits; `indices` holds the row numbers into the source `Dataset`."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    indices: dict[str, np.ndarray] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def _counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(test, val) sizes for a group of n rows: at least one each when n >= 3, training keeps >= 1."""
    n_test = int(np.floor(n * test_fraction + 0.5))
    n_val = int(np.floor(n * val_fraction + 0.5))
    if n >= 3:
        n_test = max(n_test, 1) if test_fraction > 0 else 0
        n_val = max(n_val, 1) if val_fraction > 0 else 0
    elif n == 2 and test_fraction > 0:
        n_test, n_val = 1, 0
    while n_test + n_val > max(n - 1, 0):
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n_test, n_val


def _quotas(sizes: np.ndarray, total: int, min_each: int) -> np.ndarray:
    """Proportional per-group sample sizes summing to `total` (largest remainder), each group
    raised to min(size, min_each) when the budget allows, so subsampling never erases a class."""
    exact = sizes * total / sizes.sum()
    q = np.floor(exact).astype(int)
    order = np.argsort(-(exact - q), kind="stable")
    q[order[: total - q.sum()]] += 1
    floor = np.minimum(sizes, min_each)
    for k in np.flatnonzero(q < floor):
        while q[k] < floor[k]:
            donor = int(np.argmax(q - floor))
            if q[donor] <= floor[donor]:
                return q
            q[donor] -= 1
            q[k] += 1
    return q


def split_dataset(ds: Dataset, *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15,
                  limit_per_class: int | None = None, max_rows: int | None = None) -> Split:
    """Split `ds` into train/val/test.

    Classification: each class is split proportionally (every split gets >= 1 row of a class with
    >= 3 rows). Regression: a random split. `max_rows` subsamples the whole dataset first
    (stratified), `limit_per_class` keeps at most that many training rows per class.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"val_fraction and test_fraction must be >= 0 and sum to less than 1. "
                        f"Received: val_fraction={val_fraction}, test_fraction={test_fraction}")
    for label, value in (("limit_per_class", limit_per_class), ("max_rows", max_rows)):
        if value is not None and int(value) < 1:
            raise DataError(f"{label} must be a positive integer or None. Received: {label}={value!r}")
    classification = ds.card.task == "classification"
    if limit_per_class is not None and not classification:
        raise DataError(f"limit_per_class only applies to classification; {ds.card.name!r} is regression. "
                        f"Use max_rows instead. Received: limit_per_class={limit_per_class}")
    rng = np.random.default_rng(seed)
    y = np.asarray(ds.y)
    if classification:
        groups = [np.flatnonzero(y == k) for k in range(ds.num_classes or int(y.max()) + 1)]
    else:
        groups = [np.arange(len(y))]
    groups = [rng.permutation(g) for g in groups]
    if max_rows is not None and max_rows < len(y):
        sizes = np.array([len(g) for g in groups])
        quotas = _quotas(sizes, int(max_rows), 3 if classification else 0)
        groups = [g[:q] for g, q in zip(groups, quotas, strict=True)]
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for g in groups:
        n_test, n_val = _counts(len(g), val_fraction, test_fraction)
        parts["test"].append(g[:n_test])
        parts["val"].append(g[n_test:n_test + n_val])
        train = g[n_test + n_val:]
        parts["train"].append(train if limit_per_class is None else train[: int(limit_per_class)])
    # Shuffle test and val before train: the train size (changed by limit_per_class) must not
    # change the random stream that orders val and test.
    idx = {name: rng.permutation(np.concatenate(parts[name])) for name in ("test", "val", "train")}
    _check_usable(ds, idx, max_rows)
    x = ds.x
    return Split(x_train=x[idx["train"]], y_train=y[idx["train"]], x_val=x[idx["val"]], y_val=y[idx["val"]],
                 x_test=x[idx["test"]], y_test=y[idx["test"]], indices=idx)


def _check_usable(ds: Dataset, idx: dict[str, np.ndarray], max_rows: int | None) -> None:
    """Refuse a split that cannot train or be scored, with its numbers and the fix (one line)."""
    y = np.asarray(ds.y)
    sizes = {name: len(idx[name]) for name in ("train", "val", "test")}
    classification = ds.card.task == "classification"
    train_classes = len(np.unique(y[idx["train"]])) if classification else 0
    empty = [label for name, label in (("val", "validation"), ("test", "test")) if not sizes[name]]
    if not empty and (not classification or train_classes >= 2):
        return
    counts = f"train={sizes['train']}, val={sizes['val']}, test={sizes['test']}"
    if classification and train_classes < 2:
        problem = "classification needs at least 2 classes"
        kept = f"{sizes['train']} training example{'s' if sizes['train'] != 1 else ''} of {train_classes} class"
    else:
        problem = f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty"
        kept = f"{sizes['train']} training, {sizes['val']} validation and {sizes['test']} test rows"
    if max_rows is not None and max_rows < len(y):
        classes = len(np.unique(y)) if classification else 0
        enough = max(20, 3 * classes)  # 3 rows per class reach train, validation and test
        fix = f"use --max-rows {enough} or more" if enough < len(y) else "drop --max-rows"
        raise DataError(f"--max-rows {max_rows} leaves {kept}: {problem}; {fix}. Received: max_rows={max_rows}, "
                        f"split {counts}")
    if classification:
        sizes_per_class = np.bincount(y, minlength=ds.num_classes or 0)
        small = int(((sizes_per_class > 0) & (sizes_per_class < 3)).sum())
        why = (f"{small} of {int((sizes_per_class > 0).sum())} classes have fewer than 3 rows, so they cannot "
               f"reach train, validation and test" if small else "too few rows")
        raise DataError(f"Cannot split {ds.card.name!r} for training: {problem} ({why}); add rows (at least 3 per "
                        f"class) or merge rare classes. Received: {len(y)} rows, split {counts}")
    raise DataError(f"Cannot split {ds.card.name!r} for training: {problem}; it needs at least 3 rows. "
                    f"Received: {len(y)} rows, split {counts}")
