"""An engine worker: a process that trains one run at a time for the app's `WorkerPool`.

    python -m workbench.runs.worker RUNS_DIR        (started by `workbench.runs.pool`, never by hand)

Why a process: in the app, pages render in the Streamlit server's Python interpreter. A training
loop in a thread of that same interpreter competes with every page refresh for the GIL, and a
watched run trained up to 50× slower than an unwatched one. A worker has its own interpreter, so
rendering a page costs training nothing but a share of the CPU.

Protocol, one JSON object a line:
- control, on stdin (from the pool): {"cmd": "run", "run_id", "config", "resume"} · {"cmd": "stop", "run_id"}
  · {"cmd": "exit"}. End of input (the app is gone, even after `kill -9`) ends the worker at once.
- events, on the file descriptor in WORKBENCH_EVENTS_FD (to the pool): {"event": "ready", "pid"} once
  the imports and a warm-up are done, and {"event": "done", "run_id", "recycle", **Outcome} per run.
Metrics, progress and the final status go through the run store, as for every run; an outcome the
store could not take (a full disk, `ulimit -f`) says `"recorded": false`, and the supervisor in the
app writes it (or keeps it in memory): the pipe needs no disk. After a run on
a GPU the worker exits (`recycle`) so that its accelerator memory is returned; the pool starts a
fresh one. On a CPU it stays warm for the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from typing import Any, TextIO


class _Events:
    """The event channel (written by the training thread and the main thread: one line at a time)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.lock = stream, threading.Lock()

    def send(self, **event: Any) -> None:
        with self.lock:
            self.stream.write(json.dumps(event) + "\n")
            self.stream.flush()


def warm_up() -> None:
    """Import the engine and touch the default run's data and model files, so Start answers fast."""
    import keras

    from workbench.config import TrainConfig
    from workbench.train import trainer

    with contextlib.suppress(Exception):  # a warm-up is an optimisation; a real run reports its own errors
        trainer.prepare(TrainConfig())  # the default classroom run: tokenizer, sample data, model file
    keras.backend.clear_session()


def _train(store, events: _Events, run_id: str, config: dict[str, Any], stop: threading.Event,
           resume: bool = False) -> None:
    from dataclasses import replace

    from workbench.config import TrainConfig
    from workbench.runs.execute import Outcome, execute
    from workbench.train.callbacks import LiveState
    from workbench.train.device import has_gpu

    live = LiveState()
    outcome = Outcome("failed", "the engine worker's training thread ended without an outcome (a bug: see its log)",
                      recorded=False)
    try:
        outcome = execute(store, run_id, TrainConfig.from_dict(config), stop, live, resume=resume)
    except BaseException:
        outcome = replace(outcome, error_step=live.step or None)
        raise
    finally:
        recycle = has_gpu()
        if not recycle:
            import keras

            keras.backend.clear_session()  # before "done": the next run may start right after it
        events.send(event="done", run_id=run_id, recycle=recycle, **outcome.to_dict())
        if recycle:
            os._exit(0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    events = _Events(os.fdopen(int(os.environ["WORKBENCH_EVENTS_FD"]), "w", buffering=1))
    from workbench.runs.store import RunStore

    store = RunStore(argv[0])
    warm_up()
    events.send(event="ready", pid=os.getpid())
    stop, current = threading.Event(), {"run_id": None}
    for line in sys.stdin:
        message = json.loads(line)
        if message["cmd"] == "run":
            stop.clear()
            current["run_id"] = message["run_id"]
            threading.Thread(target=_train, args=(store, events, message["run_id"], message["config"], stop,
                                                  bool(message.get("resume"))),
                             name=f"run-{message['run_id']}", daemon=True).start()
        elif message["cmd"] == "stop" and message["run_id"] == current["run_id"]:
            stop.set()
        elif message["cmd"] == "exit":
            break
    os._exit(0)  # the app closed the channel: do not wait for a training thread


if __name__ == "__main__":
    sys.exit(main())
