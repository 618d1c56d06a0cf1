"""Where the shipped sample data lives: one resolver for datasets and models alike.

`WORKBENCH_SAMPLE_DATA` overrides it (tests, installed copies); the default is the repository's
`sample_data/` found relative to this package, so it works from any working directory. A module of
its own, importing nothing of the workbench, so data and model code can both use it without
importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path


def sample_data_dir() -> Path:
    """Folder holding `manifest.json`, `datasets/` and `models/`."""
    env = os.environ.get("WORKBENCH_SAMPLE_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[1] / "sample_data"


def models_dir() -> Path:
    """The built-in models' weights, vocabularies and cards."""
    return sample_data_dir() / "models"
