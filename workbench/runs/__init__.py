"""Runs: the SQLite run store and the process-wide RunManager."""

from workbench.runs.manager import RunManager
from workbench.runs.store import STATUSES, RunRecord, RunStore, default_runs_dir

__all__ = ["STATUSES", "RunManager", "RunRecord", "RunStore", "default_runs_dir"]
