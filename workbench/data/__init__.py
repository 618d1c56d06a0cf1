"""Real datasets for the workbench: registry, loading + cleaning, seeded splits, augmentation.

Everything here is numpy/pandas only (no TensorFlow import), so listing or loading data stays fast
for the app and the CLI. See ``sample_data/README.md`` for where each shipped file comes from.
"""

from workbench.data.augment import augment_images, augment_token_ids
from workbench.data.loading import CleaningReport, DataError, Dataset, load, load_csv, load_dataset
from workbench.data.manifest import DatasetCard, get_dataset_card, list_datasets, sample_data_dir
from workbench.data.split import Split, split_dataset

__all__ = [
    "CleaningReport",
    "DataError",
    "Dataset",
    "DatasetCard",
    "Split",
    "augment_images",
    "augment_token_ids",
    "get_dataset_card",
    "list_datasets",
    "load",
    "load_csv",
    "load_dataset",
    "sample_data_dir",
    "split_dataset",
]
