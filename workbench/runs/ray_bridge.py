"""The Ray bridge: the one process of this machine that joins the Ray cluster, for a `RayExecutor`.

    python -m workbench.runs.ray_bridge ADDRESS        (started by `runs.ray_executor`, never by hand)

Why a process of its own: a Ray driver is hostage to its cluster. When the head node goes away, Ray
ends the driver's process once it gives up reconnecting; in the app that process would be the
Streamlit server, and every open tab and every local run would go with it. So the app never imports
Ray: this bridge joins the cluster, submits one task per run, waits for them, and reports back.
If the cluster is lost, the bridge dies, its runs end `interrupted`, and the app goes on.

Protocol, one JSON object a line (as `runs.worker`'s):
- control, on stdin: {"cmd": "run", "run_id", "store_url", "runs_dir", "config", "resume"} · {"cmd": "exit"}.
  End of input (the app is gone, even after `kill -9`) ends the bridge, and with it its driver's tasks.
- events, on the file descriptor in WORKBENCH_EVENTS_FD: {"event": "ready", "capacity"} once joined,
  or {"event": "error", "message"} (one line, then exit); {"event": "capacity", "value"} when the
  cluster's room changes; {"event": "done", "run_id", "report"} per run (an `Outcome` as a dict, or
  {"status": "died", "interrupted": true, "reason"} when its worker or node died).

`train_task` is the body of each task, run on a Ray worker: it trains the run into the shared store
(`runs.execute`), exactly as a local engine worker does.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from typing import Any

from workbench.errors import WorkbenchError, received
from workbench.runs.ray_executor import FORWARDED_ENV, run_resources

STOP_POLL_S = 0.5  # how often a task looks for a stop request in the store
CAPACITY_EVERY_S = 5.0  # how often the bridge reads the cluster's size (nodes come and go)
GCS_GIVE_UP_S = "10"  # how long the bridge waits for a lost head node before Ray ends it (Ray's default: 60)


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


class _Events:
    """The event channel (written by several threads: one line at a time)."""

    def __init__(self) -> None:
        self.stream = os.fdopen(int(os.environ["WORKBENCH_EVENTS_FD"]), "w", buffering=1)
        self.lock = threading.Lock()

    def send(self, **event: Any) -> None:
        with self.lock:
            self.stream.write(json.dumps(event) + "\n")
            self.stream.flush()


def capacity(resources: dict[str, float]) -> int:
    """Runs that fit on the cluster at once: its CPUs (or GPUs) over what one run asks for."""
    import ray

    total = ray.cluster_resources()
    fits = [int(total.get(name, 0.0) // need) for name, need in
            (("CPU", resources["num_cpus"]), ("GPU", resources["num_gpus"])) if need > 0]
    return max(1, min(fits)) if fits else 1


def _await(events: _Events, run_id: str, ref: Any) -> None:
    import ray

    try:
        report = ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - a dead worker or node, a cancelled task, an unpicklable result
        report = {"status": "died", "interrupted": True, "reason": death_reason(exc)}
    except SystemExit:  # Ray's word for an exit it saw (the worker's, or the cluster's)
        report = {"status": "died", "interrupted": True,
                  "reason": "its Ray task ended with an exit while it trained: resume it from its last epoch checkpoint"}
    events.send(event="done", run_id=run_id, report=report)


def _watch_capacity(events: _Events, resources: dict[str, float], value: int) -> None:
    while True:
        time.sleep(CAPACITY_EVERY_S)
        with contextlib.suppress(Exception):  # the cluster is going: the bridge ends soon
            now = capacity(resources)
            if now != value:
                value = now
                events.send(event="capacity", value=value)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    events = _Events()
    address = (argv[0] if argv else "") or None
    try:
        import ray

        resources = run_resources()
        connect(address)
        options: dict[str, Any] = {"max_retries": 0, **resources}
        if resources["num_gpus"] > 0:
            options["max_calls"] = 1  # a fresh worker per GPU run: its accelerator memory is returned (as the pool does)
        task = ray.remote(train_task).options(**options)
        value = capacity(resources)
    except Exception as exc:  # noqa: BLE001 - one line to the app, which says it where the user looks
        events.send(event="error", message=str(exc) if isinstance(exc, WorkbenchError) else
                    f"Could not join the Ray cluster ({type(exc).__name__}: {exc}). {received(ray_address=address)}")
        return 1
    events.send(event="ready", capacity=value)
    threading.Thread(target=_watch_capacity, args=(events, resources, value), daemon=True).start()
    for line in sys.stdin:
        message = json.loads(line)
        if message["cmd"] == "run":
            ref = task.remote(message["store_url"], message["runs_dir"], message["run_id"], message["config"],
                              bool(message.get("resume")))
            threading.Thread(target=_await, args=(events, message["run_id"], ref), daemon=True,
                             name=f"ray-{message['run_id']}").start()
        elif message["cmd"] == "exit":
            break
    os._exit(0)  # the app closed the channel: its tasks end with this driver


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


if __name__ == "__main__":
    os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", GCS_GIVE_UP_S)
    sys.exit(main())
