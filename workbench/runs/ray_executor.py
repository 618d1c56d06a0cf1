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
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError, received

STOP_POLL_S = 0.5  # how often a task looks for a stop request in the store
CAPACITY_TTL_S = 10.0  # the cluster's size is read again after this long (nodes come and go)
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


def connect(address: str | None) -> None:
    """Join the Ray cluster at `address` once per process (a second call is a no-op)."""
    import ray

    if ray.is_initialized():
        return
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    try:
        ray.init(address=address, namespace="peft-workbench", log_to_driver=False, runtime_env={"env_vars": env},
                 include_dashboard=False if address is None else None)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError…
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise WorkbenchError(f"Could not join the Ray cluster ({first}): start one with `ray start --head` and pass "
                             f"its address (--ray-address HOST:PORT or WORKBENCH_RAY_ADDRESS). "
                             f"{received(ray_address=address)}") from None


def train_task(store_url: str | None, runs_dir: str, run_id: str, config: dict[str, Any],
               resume: bool) -> dict[str, Any]:
    """The body of one Ray task: train `run_id` into the shared store and return its `Outcome` as a dict."""
    import keras

    from workbench.config import TrainConfig
    from workbench.runs.execute import Outcome, execute, record_outcome
    from workbench.runs.store import RunStore
    from workbench.train.callbacks import LiveState

    _fit_threads_to_request()
    store = RunStore(runs_dir, url=store_url) if store_url else RunStore(runs_dir)
    where = {"executor": "ray", "host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    with contextlib.suppress(Exception):  # where it runs is a convenience (tests, `runs show`), never a failure
        import ray

        where["node_id"] = ray.get_runtime_context().get_node_id()
        (store.run_dir(run_id) / "executor.json").write_text(json.dumps(where))
    stop, finished = threading.Event(), threading.Event()
    record = store.get_run(run_id)
    if record is not None and record.stop_requested:  # stopped while it waited for a worker
        return record_outcome(store, run_id, Outcome("stopped")).to_dict()
    threading.Thread(target=_watch_stop, args=(store, run_id, stop, finished), daemon=True,
                     name=f"stop-watch-{run_id}").start()
    try:
        outcome = execute(store, run_id, TrainConfig.from_dict(config), stop, LiveState(), resume=resume)
    finally:
        finished.set()
        keras.backend.clear_session()  # the worker process stays warm for the next task
    return outcome.to_dict()


def _fit_threads_to_request() -> None:
    """Size TensorFlow's thread pools to the CPUs Ray gave this task (once per worker process).

    Why: TensorFlow sizes its pools to the whole machine, so two runs on a two-core node would each
    spread over both cores and fight; with one thread pool per requested CPU they share the node."""
    with contextlib.suppress(Exception):  # JAX, or pools already made by an earlier task in this worker
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        if cpus and keras_backend() == "tensorflow":
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(max(1, int(cpus)))
            tf.config.threading.set_inter_op_parallelism_threads(max(1, int(cpus)))


def keras_backend() -> str:
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def _watch_stop(store: Any, run_id: str, stop: threading.Event, finished: threading.Event) -> None:
    """Set `stop` when someone, anywhere, asked the run to stop (the store's `stop_requested`)."""
    while not finished.wait(STOP_POLL_S):
        try:
            record = store.get_run(run_id)
        except Exception:  # noqa: BLE001 - a store hiccup: look again at the next poll
            continue
        if record is not None and record.stop_requested:
            stop.set()
            return


class RayExecutor:
    """The manager's view of a Ray cluster: as many runs at once as it has room for, one task each."""

    def __init__(self, store: Any, address: str | None, *, on_ready: Callable[[], None],
                 on_done: Callable[[str, dict[str, Any]], None]) -> None:
        import ray

        self.store, self.address = store, address
        self.on_ready, self.on_done = on_ready, on_done
        self.resources = run_resources()
        connect(address)
        options: dict[str, Any] = {"max_retries": 0, **self.resources}
        if self.resources["num_gpus"] > 0:
            options["max_calls"] = 1  # a fresh worker per GPU run: its accelerator memory is returned (as the pool does)
        self._task = ray.remote(train_task).options(**options)
        self.lock = threading.Lock()
        self.running: dict[str, Any] = {}  # run_id -> ObjectRef
        self._capacity: tuple[float, int] = (0.0, 1)

    # -- what the manager calls (the same verbs as `WorkerPool`) -----------------------------
    def capacity(self) -> int:
        """Runs that fit on the cluster at once: its CPUs (or GPUs) over what one run asks for."""
        import ray

        read_at, value = self._capacity
        if time.monotonic() - read_at > CAPACITY_TTL_S:
            total = ray.cluster_resources()
            fits = [int(total.get(name, 0.0) // need) for name, need in
                    (("CPU", self.resources["num_cpus"]), ("GPU", self.resources["num_gpus"])) if need > 0]
            value = max(1, min(fits)) if fits else 1
            self._capacity = (time.monotonic(), value)
        return value

    def idle_slot(self) -> str | None:
        with self.lock:
            return "ray" if len(self.running) < self.capacity() else None

    def assign(self, slot: str, run_id: str, config: dict[str, Any], resume: bool = False) -> None:
        ref = self._task.remote(getattr(self.store, "url", None), str(Path(self.store.runs_dir).resolve()),
                                run_id, config, resume)
        with self.lock:
            self.running[run_id] = ref
        threading.Thread(target=self._await, args=(run_id, ref), daemon=True, name=f"ray-{run_id}").start()

    def stop(self, run_id: str) -> None:
        """Nothing to send: the task reads `stop_requested` from the store (written by the manager)."""

    def pids(self) -> dict[str, int | None]:
        return {}

    def close(self) -> None:
        """Leave the cluster's tasks alone: they end when their driver (this process) ends."""

    # -- supervision ------------------------------------------------------------------------------
    def _await(self, run_id: str, ref: Any) -> None:
        import ray

        try:
            report = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a dead worker or node, a cancelled task, an unpicklable result
            report = {"status": "died", "interrupted": True, "reason": death_reason(exc)}
        except SystemExit:  # Ray's word for an exit it saw (its worker's, or this process leaving the cluster)
            report = {"status": "died", "interrupted": True,
                      "reason": "its Ray task ended with an exit while it trained (the worker exited, or this process "
                                "left the cluster): resume it from its last epoch checkpoint"}
        with self.lock:
            self.running.pop(run_id, None)
        self.on_done(run_id, report)
        self.on_ready()


def death_reason(exc: BaseException) -> str:
    """One line: what happened to the task's worker and what to do."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if "SIGKILL" in text or "killed" in text.lower() or "WorkerCrashed" in name or "ActorDied" in name:
        how = "the Ray worker running it died (killed, out of memory or crashed)"
    elif "NodeDied" in name or "node" in text.lower() and "died" in text.lower():
        how = "the Ray node running it was lost"
    else:
        how = f"its Ray task failed ({name}: {text[:160]})"
    return f"{how}: resume it from its last epoch checkpoint, or start it again"
