"""Runs on a real Ray cluster (127.0.0.1: a head with two worker processes), stored in a real PostgreSQL.

What a user moving from one laptop to a cluster relies on: a run on a worker writes the same store
(metrics, progress, status) as a local one; stop from the API reaches a run on a worker; a worker
that dies ends only its own run, `interrupted` with its metrics so far, and everything else goes on.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.browser import until
from tests.ray_cluster import LOOPBACK_ENV, LocalRayCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_address():
    os.environ.update(LOOPBACK_ENV)  # read when ray is imported: this process (the driver) stays on loopback too
    cluster = LocalRayCluster(num_cpus=2)
    address = cluster.start()
    yield address
    cluster.stop()


@pytest.fixture
def ray_manager(runs_dir, monkeypatch):
    """`make(**kwargs)` → a RunManager on Ray; each one is closed at the end (its bridge would otherwise
    keep trying to join a cluster the module stopped)."""
    from workbench.runs import RunManager

    for name, value in LOOPBACK_ENV.items():  # the manager's bridge process joins on loopback too
        monkeypatch.setenv(name, value)
    made = []

    def make(**kwargs):
        made.append(RunManager(runs_dir, executor="ray", **kwargs))
        return made[-1]
    yield make
    for manager in made:
        manager.close()


def _quick(seed: int = 0, **overrides):
    from workbench.config import TrainConfig

    values = dict(model="mnist-cnn", data="digits", method="lora", epochs=2, batch_size=16, limit_per_class=10,
                  export_model=False, seed=seed)
    return TrainConfig.from_dict({**values, **overrides})


def _long(**overrides):
    """Minutes of work unless stopped: the tests end it long before."""
    return _quick(data="mnist-5k", method="full", epochs=50, batch_size=8, limit_per_class=None, **overrides)


def _training_on_a_worker(manager, run_id: str) -> dict:
    """The run's `executor.json` once it has written training metrics (it is mid-run on a worker)."""
    path = manager.store.runs_dir / run_id / "executor.json"

    def ready():
        return (path.exists() and len(manager.store.metrics(run_id, keys=["train/loss"])) >= 3
                and json.loads(path.read_text()))
    return until(ready, 120, f"run {run_id} to train on a Ray worker")


def test_stop_and_a_killed_worker_on_a_cluster_with_postgres(ray_address, ray_manager, pg_url):
    manager = ray_manager(ray_address=ray_address, store_url=pg_url)
    assert manager.store.url == pg_url
    stopped, killed = manager.start(_long(seed=1)), manager.start(_long(seed=2))
    where_stopped, where_killed = _training_on_a_worker(manager, stopped), _training_on_a_worker(manager, killed)
    assert where_stopped["executor"] == "ray" and where_stopped["pid"] != where_killed["pid"] != os.getpid()

    assert manager.stop(stopped)
    assert manager.wait(stopped, timeout=60) == "stopped"
    os.kill(where_killed["pid"], signal.SIGKILL)
    assert manager.wait(killed, timeout=60) == "interrupted"
    record = manager.record(killed)
    assert "Ray worker running it died" in record.error and "resume" in record.error
    assert len(manager.store.metrics(killed, keys=["train/loss"])) >= 3  # its metrics so far stay

    # The cluster carries on: a new run takes the freed worker and completes, metrics and all.
    after = manager.start(_quick(seed=3))
    assert manager.wait(after, timeout=120) == "completed"
    assert manager.record(after).final_metrics["test_accuracy"] > 0.2
    assert len(manager.store.metrics(after, keys=["val/accuracy"])) == 2


def test_a_12_run_sweep_on_ray_with_postgres_survives_a_killed_worker(ray_address, ray_manager, pg_url):
    """The issue's Done-when: a 12-run sweep on the cluster, every run's metrics in PostgreSQL, one worker
    killed mid-run: its trial ends `interrupted`, the other eleven complete, the sweep completes."""
    from workbench.sweeps import SweepSpec, get_sweep, start_sweep, sweep_frame, wait_sweep

    manager = ray_manager(ray_address=ray_address, store_url=pg_url)
    assert manager.capacity() == 2  # two worker processes, one CPU per run
    base = _quick(epochs=3, limit_per_class=20).to_dict()
    spec = SweepSpec(base=base, params={"lr": [1e-3, 3e-3, 1e-2], "method_options.rank": [2, 4], "seed": [0, 1]},
                     search="grid", name="ray sweep")
    sweep_id = start_sweep(manager, spec)

    def a_trial_mid_run():
        frame = sweep_frame(manager.store, sweep_id)
        for run_id in frame[frame.state == "running"].run_id:
            path = manager.store.runs_dir / run_id / "executor.json"
            rows = manager.store.metrics(run_id, keys=["train/loss"])
            if path.exists() and len(rows) >= 2 and rows.epoch.max() == 0:  # in its first of 3 epochs: mid-run
                return run_id, json.loads(path.read_text())["pid"]
        return None
    victim, pid = until(a_trial_mid_run, 180, "a sweep trial training on a worker")
    os.kill(pid, signal.SIGKILL)

    assert wait_sweep(sweep_id, timeout=300)
    assert get_sweep(manager.store, sweep_id).status == "completed"
    frame = sweep_frame(manager.store, sweep_id)
    assert len(frame) == 12 and sorted(frame.seed.tolist()) == [0] * 6 + [1] * 6
    statuses = {r: manager.status(r) for r in frame.run_id}
    assert statuses.pop(victim) == "interrupted" and set(statuses.values()) == {"completed"}
    assert frame.set_index("run_id").loc[victim, "state"] == "failed"
    for run_id in frame.run_id:  # every run's curve is in the PostgreSQL store, the killed one's so far
        assert len(manager.store.metrics(run_id, keys=["train/loss"])) >= 2
    # Nothing is left in flight on the cluster (a run's status reaches the store a moment before its task's end).
    until(lambda: not manager.pool.running, 30, f"the cluster's last tasks to end: {manager.pool.running}")
    done = frame[frame.state == "complete"]
    assert len(done) == 11 and done.value.notna().all() and done.value.iloc[0] == done.value.max()


def test_a_lost_cluster_ends_its_runs_not_the_process_that_started_them(ray_manager):
    """Ray ends a driver whose head node is gone; the manager's driver is a bridge process, so the process
    that serves the pages lives on: the run ends `interrupted` with a reason, and a later run fails in one line."""
    from workbench.errors import WorkbenchError

    cluster = LocalRayCluster(num_cpus=1)
    manager = ray_manager(ray_address=cluster.start())
    try:
        run_id = manager.start(_long(seed=4))
        _training_on_a_worker(manager, run_id)
    finally:
        cluster.stop()
    assert manager.wait(run_id, timeout=90) == "interrupted"
    error = manager.record(run_id).error  # the node's loss or the bridge's, whichever Ray reports first
    assert ("Ray node running it was lost" in error or "connection to the Ray cluster" in error) and "resume" in error
    assert len(manager.store.metrics(run_id, keys=["train/loss"])) >= 3
    later = manager.start(_quick(seed=5))  # the bridge may not know yet: then it goes down with the bridge
    ended = manager.wait(later, timeout=180)
    error = manager.record(later).error
    assert (ended == "failed" and "cannot be reached" in error) or (ended == "interrupted" and "connection to" in error), (
        ended, error)
    assert "\n" not in error
    until(lambda: manager.unavailable, 90, "the manager to say the cluster cannot be reached")
    with pytest.raises(WorkbenchError, match="No run can start: the Ray cluster at .* cannot be reached"):
        manager.start(_quick(seed=6))
