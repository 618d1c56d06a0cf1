"""Runs as Ray tasks: many runs beyond one machine, on an existing distributed engine.

    RunManager(executor="ray", ray_address="10.0.0.5:6379")      # or WORKBENCH_EXECUTOR=ray, WORKBENCH_RAY_ADDRESS
    workbench train ... --executor ray --ray-address 10.0.0.5:6379

Why Ray, and why one task per run: a run is a self-contained job (a config in, rows in the run store
out), so the natural unit is a task with resource requests (`num_cpus`, `num_gpus`) that Ray places
on whichever node has room. This module plays the part the `WorkerPool` plays for local engine
processes: the `RunManager` keeps its queue and asks `idle_slot()` / `assign()` / `stop()`, and
hears back through `on_ready` and `on_done`. Everything else is shared with the other executors:
the task calls `runs.execute.execute`, which writes metrics, progress and the final status to the
run store, so a run on a cluster node shows live on the pages like a local one.

What crosses the cluster, and how:
- The run store: every node opens the same store, so it must be a server database
  (`WORKBENCH_STORE_URL=postgresql://…`); an embedded SQLite file works only when every worker runs
  on the machine that holds it (a one-machine Ray, as in the tests).
- Artifacts (exports, predictions, TensorBoard, checkpoints) go to `<runs_dir>/<run_id>/`; the
  runs directory must be the same path on every node (NFS or another shared mount).
- Stop: the manager writes `stop_requested` in the store (as for every run); the task polls it
  twice a second and sets its local stop event, so stop works from any process on any machine.
  Pause and steering already travel through the store (`runs.interventions`).
- A worker that dies (out of memory, `kill -9`, a node lost) makes the task fail in Ray: the run
  ends `interrupted` with its metrics so far and can be resumed from its last epoch checkpoint; the
  other runs (a sweep's other trials) carry on. Tasks are never retried by Ray: a retried run would
  start over under the same id.
- The `WORKBENCH_*`, `KERAS_*` and `TF_*` variables of the process that connects travel to the
  tasks (Ray's runtime env), so a worker trains with the settings the app or the CLI was given.

This process never imports Ray: a bridge process joins the cluster for it (`runs.ray_bridge`), so a
lost head node ends the bridge (its runs `interrupted`), never the app that serves the pages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError, received

ROOT = Path(__file__).resolve().parents[2]
JOIN_TIMEOUT_S = 120.0  # how long the first join may take (a cluster far away, an import on a slow disk)
MAX_START_FAILURES = 1  # a bridge that cannot join (again): the cluster is gone, say so (and keep trying)
RETRY_S = 15.0  # while it is gone, the bridge tries to join again this often (a restarted head is found again)
FORWARDED_ENV = ("WORKBENCH_", "KERAS_", "TF_")


def default_address() -> str | None:
    """WORKBENCH_RAY_ADDRESS, else None (Ray then reads RAY_ADDRESS, or starts a private local instance)."""
    return os.environ.get("WORKBENCH_RAY_ADDRESS") or None


def run_resources() -> dict[str, float]:
    """What each run asks Ray for: WORKBENCH_RAY_CPUS (default 1) and WORKBENCH_RAY_GPUS (default 0)."""
    values = {}
    for key, name, default in (("num_cpus", "WORKBENCH_RAY_CPUS", 1.0), ("num_gpus", "WORKBENCH_RAY_GPUS", 0.0)):
        text = os.environ.get(name, str(default))
        try:
            values[key] = float(text)
        except ValueError:
            raise WorkbenchError(f"{name} must be a number of {key[4:].upper()}s per run, e.g. 1. "
                                 f"{received(**{name: text})}") from None
        if values[key] < 0:
            raise WorkbenchError(f"{name} must be >= 0. {received(**{name: text})}")
    return values


class RayExecutor:
    """The manager's view of a Ray cluster: as many runs at once as it has room for, one task each, through
    a bridge process that a supervisor thread starts, reads and replaces (as `WorkerPool` does its workers)."""

    def __init__(self, store: Any, address: str | None, *, on_ready: Callable[[], None],
                 on_done: Callable[[str, dict[str, Any]], None], on_broken: Callable[[str | None], None]) -> None:
        """`on_broken(message)` when the cluster cannot be reached (queued runs fail with it, new ones are
        refused), `on_broken(None)` once it can be again."""
        self.store, self.address = store, address
        self.on_ready, self.on_done, self.on_broken = on_ready, on_done, on_broken
        self.resources = run_resources()  # (a bad WORKBENCH_RAY_CPUS is refused here, in one line)
        self.logs = Path(store.runs_dir) / "workers"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.running: dict[str, bool] = {}  # the runs the bridge trains now
        self.capacity_now = 0  # 0 until the bridge has joined
        self.process: subprocess.Popen | None = None
        self.closed = False
        self._joined, self._error = threading.Event(), None
        threading.Thread(target=self._supervise, name="ray-bridge", daemon=True).start()
        if not self._joined.wait(JOIN_TIMEOUT_S) or self._error:
            self.close()
            raise WorkbenchError(self._error or f"The Ray cluster did not answer in {JOIN_TIMEOUT_S:.0f} s: check that "
                                 f"it runs (`ray status`). {received(ray_address=address)}")

    # -- what the manager calls (the same verbs as `WorkerPool`) -----------------------------
    def capacity(self) -> int:
        """Runs that fit on the cluster at once (what the bridge last read; nodes come and go)."""
        return max(1, self.capacity_now)

    def idle_slot(self) -> str | None:
        with self.lock:
            return "ray" if self.capacity_now and len(self.running) < self.capacity_now else None

    def assign(self, slot: str, run_id: str, config: dict[str, Any], resume: bool = False) -> None:
        with self.lock:
            self.running[run_id] = True
        self._send({"cmd": "run", "run_id": run_id, "store_url": getattr(self.store, "url", None),
                    "runs_dir": str(Path(self.store.runs_dir).resolve()), "config": config, "resume": resume})

    def stop(self, run_id: str) -> None:
        """Nothing to send: the task reads `stop_requested` from the store (written by the manager)."""

    def pids(self) -> dict[str, int | None]:
        return {"bridge": self.process.pid if self.process is not None else None}

    def close(self) -> None:
        """End the bridge; its tasks end with it (Ray ends a driver's tasks when the driver goes)."""
        self.closed = True
        self._send({"cmd": "exit"})

    # -- supervision ------------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except (AttributeError, OSError, ValueError):
            pass  # the bridge is gone: its supervisor reports the runs

    def _spawn(self) -> Any:
        read_fd, write_fd = os.pipe()
        env = {**os.environ, "WORKBENCH_EVENTS_FD": str(write_fd),
               "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        log = (self.logs / "ray-bridge.log").open("a")
        try:
            self.process = subprocess.Popen([sys.executable, "-m", "workbench.runs.ray_bridge", self.address or ""],
                                            stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(write_fd,),
                                            env=env, text=True, cwd=str(ROOT))
        finally:
            os.close(write_fd)
            log.close()
        return os.fdopen(read_fd)

    def _supervise(self) -> None:
        failures, broken = 0, False
        while not self.closed:
            joined = False
            with self._spawn() as events:
                for line in events:  # ends when the bridge's end of the pipe closes: it exited or died
                    event = json.loads(line)
                    if event["event"] == "error":
                        self._error = event["message"]
                    elif event["event"] in ("ready", "capacity"):
                        joined, failures = True, 0
                        self.capacity_now = int(event.get("capacity", event.get("value", 1)))
                        self._joined.set()
                        if broken:
                            broken = False
                            self.on_broken(None)
                        self.on_ready()
                    elif event["event"] == "done":
                        with self.lock:
                            self.running.pop(event["run_id"], None)
                        self.on_done(event["run_id"], event["report"])
                        self.on_ready()
            code = self.process.wait()
            self.capacity_now = 0
            with self.lock:
                lost, self.running = list(self.running), {}
            where = f"the Ray cluster at {self.address or 'this machine'}"
            for run_id in lost:
                self.on_done(run_id, {"status": "died", "interrupted": True, "reason": (
                    f"the connection to {where} was lost (the bridge process exited with code {code}; log: "
                    f"{self.logs / 'ray-bridge.log'}): resume it from its last epoch checkpoint once the cluster is back")})
            if self.closed:
                return
            if not joined:
                failures += 1
                if not self._joined.is_set():  # the first join failed: `__init__` raises the error
                    self._error = self._error or (f"Could not join the Ray cluster (the bridge process exited with code "
                                                  f"{code}; log: {self.logs / 'ray-bridge.log'}). "
                                                  f"{received(ray_address=self.address)}")
                    self._joined.set()
                    return
                if failures >= MAX_START_FAILURES and not broken:
                    broken = True
                    self.on_broken(f"{where} cannot be reached (see {self.logs / 'ray-bridge.log'}): start the run "
                                   "again once the cluster is back (the workbench keeps trying to join it)")
            time.sleep(RETRY_S if broken else min(2.0 * (failures + 1), 10.0))
