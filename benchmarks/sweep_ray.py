"""Sweep throughput on Ray: the same sweep of tiny runs with 2 Ray worker processes vs 1, on this machine.

    .venv/bin/python -m benchmarks.sweep_ray            # prints one tagged JSON line (see benchmarks.common)

Each size gets a fresh one-node Ray cluster on 127.0.0.1 (`tests.ray_cluster`) and a fresh runs
directory. A warm-up sweep first lets every worker process import TensorFlow and build its first
model (a cost a long-lived cluster pays once); the timed sweep then runs `runs` trials of the
mnist-cnn LoRA classroom model on digits. Reported: runs per minute for each size and their ratio.
On 2 cores the ideal is 2×; what is lost goes to the driver, the store and Ray's own processes.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import reply
from tests.ray_cluster import LOOPBACK_ENV, LocalRayCluster

BASE = dict(model="mnist-cnn", data="digits", method="lora", epochs=2, batch_size=16, limit_per_class=20,
            export_model=False)


def _sweep(manager, runs: int, lr_values: list[float]) -> float:
    """Seconds for a grid sweep of `runs` trials (seeds × learning rates), start to last end."""
    from workbench.sweeps import SweepSpec, run_sweep

    seeds = list(range(max(1, runs // len(lr_values))))
    spec = SweepSpec(base=dict(BASE), params={"lr": lr_values, "seed": seeds}, search="grid")
    t = time.perf_counter()
    run_sweep(manager, spec)
    return time.perf_counter() - t


def measure(workers: int, runs: int) -> dict:
    from workbench.runs import RunManager

    cluster = LocalRayCluster(num_cpus=workers)
    try:
        address = cluster.start()
        with tempfile.TemporaryDirectory() as tmp:
            manager = RunManager(Path(tmp) / "runs", executor="ray", ray_address=address)
            _sweep(manager, workers * 2, [1e-3, 3e-3])  # warm-up: every worker has imported and traced once
            seconds = _sweep(manager, runs, [1e-3, 2e-3, 3e-3, 4e-3])
            statuses = [r.status for r in manager.list()]
            manager.close()  # its bridge leaves the cluster before the cluster goes
        return {"workers": workers, "runs": runs, "seconds": round(seconds, 2),
                "runs_per_min": round(60 * runs / seconds, 1), "failed": statuses.count("failed")}
    finally:
        cluster.stop()


def main(runs: int = 12) -> dict:
    os.environ.update(LOOPBACK_ENV)
    os.environ.setdefault("WORKBENCH_EXPLAIN", "0")  # throughput of training, not of the explain probes
    one = measure(1, runs)
    two = measure(2, runs)
    return {"one_worker": one, "two_workers": two,
            "ratio": round(two["runs_per_min"] / one["runs_per_min"], 2)}


if __name__ == "__main__":
    reply(**main())
