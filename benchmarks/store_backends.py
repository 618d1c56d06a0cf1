"""The run store's two back ends under the same load: SQLite (the default) vs PostgreSQL (`WORKBENCH_STORE_URL`).

    .venv/bin/python -m benchmarks.store_backends      # prints the result as one tagged JSON line (row 10b)

Why: a cluster of workers shares one PostgreSQL store; this says what that costs or gains against the
embedded SQLite file on one machine. The load is `benchmarks.rows.store_concurrency`'s, unchanged:
`writers` processes append metric batches as the trainer's recorder does (3 keys a step, a flush every
10 steps) while `readers` threads poll like the Runs page (new loss rows + the run list, every 50 ms).
PostgreSQL is a throwaway local server (`workbench.runs.pg_local`: loopback, fsync off, as in the tests),
so the numbers compare the stores' locking and round trips, not a networked or durable server.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.rows import store_concurrency  # noqa: E402

KEEP = ("steps_written_per_s", "read_p95_ms", "queries_per_s", "steps_read_per_s", "seconds", "errors", "load")


def _one(url: str | None, writers: int, readers: int, seconds: float) -> dict[str, Any]:
    """store_concurrency with every store (this process's and the writer processes') on `url` (None: SQLite)."""
    before = os.environ.get("WORKBENCH_STORE_URL")
    if url:
        os.environ["WORKBENCH_STORE_URL"] = url  # spawned writers inherit it
    else:
        os.environ.pop("WORKBENCH_STORE_URL", None)
    try:
        result = store_concurrency(writers=writers, readers=readers, seconds=seconds)
    finally:
        if before is None:
            os.environ.pop("WORKBENCH_STORE_URL", None)
        else:
            os.environ["WORKBENCH_STORE_URL"] = before
    out = {k: result[k] for k in KEEP if k in result}
    out["error_count"] = result["lock_errors"]
    out["errors"] = result["errors"]
    return out


def store_backends(writers: int = 8, readers: int = 10, seconds: float = 8.0) -> dict:
    """{"sqlite": {...}, "postgresql": {...}, ...}: steps/s written, p95 read latency (ms) and errors of each."""
    from workbench.runs.pg_local import PostgresServer

    server = PostgresServer().start()
    try:
        out: dict[str, Any] = {"writers": writers, "readers": readers, "seconds": seconds}
        out["sqlite"] = _one(None, writers, readers, seconds)
        out["postgresql"] = _one(server.new_database(), writers, readers, seconds)
    finally:
        server.stop()
    out["write_ratio_pg_over_sqlite"] = out["postgresql"]["steps_written_per_s"] / out["sqlite"]["steps_written_per_s"]
    out["cpus"] = os.cpu_count()
    return out


if __name__ == "__main__":
    from benchmarks.common import reply

    reply(**json.loads(json.dumps(store_backends(), default=float)))  # one tagged line for `benchmarks.run`
    sys.stdout.flush()
    os._exit(0)
