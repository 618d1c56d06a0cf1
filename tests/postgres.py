"""A real PostgreSQL server for the tests (loopback only, a fresh database per test): see `runs.pg_local`.

Why a real server and not a mock: what the PostgreSQL store must get right is what a mock cannot
show (placeholders, types, locks, a writer holding a transaction while readers read). PostgreSQL
not installed is a failure that says how to install it, never a silent skip.
"""

from __future__ import annotations

from workbench.runs.pg_local import INSTALL_HINT, PostgresNotInstalled, PostgresServer, find_bin_dir

__all__ = ["INSTALL_HINT", "PostgresNotInstalled", "PostgresServer", "find_bin_dir"]
