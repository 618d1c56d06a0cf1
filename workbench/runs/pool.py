"""A small pool of engine worker processes, each supervised by one background thread of the app.

The pool starts its workers when it is created (with the app), so imports and a warm-up are done
before anyone presses Start. Each slot's supervisor thread starts its worker, waits for its events
(ready, done) and notices its death: a worker that ends while it trains a run (out of memory,
segfault, `kill -9`) leaves that run `interrupted` (killed) or `failed` (crashed) with the reason,
and a fresh worker takes the slot. The run manager decides what runs where; the pool only carries
out "run this", "stop that", and reports back through the callbacks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MAX_START_FAILURES = 3  # a worker that dies this often before it is ready will not start: say so


@dataclass
class Slot:
    index: int
    state: str = "starting"  # starting | idle | busy | broken | closed
    run_id: str | None = None
    process: subprocess.Popen | None = None
    failures: int = 0  # consecutive deaths before "ready"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class WorkerPool:
    """`size` engine workers; `on_ready()` when a slot can take a run, `on_done(run_id, report)` when a
    run ends (report: the worker's "done" event, an `Outcome` as a dict, or {"status": "died", "reason"}
    when its worker died), `on_broken(message)` when no worker can start."""

    def __init__(self, runs_dir: Path, size: int, *, on_ready: Callable[[], None],
                 on_done: Callable[[str, dict[str, Any]], None], on_broken: Callable[[str], None]) -> None:
        self.runs_dir = Path(runs_dir)
        self.logs = self.runs_dir / "workers"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.on_ready, self.on_done, self.on_broken = on_ready, on_done, on_broken
        self.lock = threading.Lock()
        self.slots = [Slot(i) for i in range(size)]
        self.closed = False
        for slot in self.slots:
            threading.Thread(target=self._supervise, args=(slot,), name=f"engine-worker-{slot.index}",
                             daemon=True).start()

    # -- what the manager calls -------------------------------------------------------------
    def idle_slot(self) -> Slot | None:
        with self.lock:
            return next((s for s in self.slots if s.state == "idle"), None)

    def broken(self) -> bool:
        return all(s.state == "broken" for s in self.slots)

    def assign(self, slot: Slot, run_id: str, config: dict[str, Any], resume: bool = False) -> None:
        with self.lock:
            slot.state, slot.run_id = "busy", run_id
        self._send(slot, {"cmd": "run", "run_id": run_id, "config": config, "resume": resume})

    def stop(self, run_id: str) -> None:
        for slot in self.slots:
            if slot.run_id == run_id:
                self._send(slot, {"cmd": "stop", "run_id": run_id})

    def pids(self) -> dict[str, int | None]:
        """Worker pid per slot state, e.g. for a test that kills one: {"0:busy": 1234}."""
        return {f"{s.index}:{s.state}": s.pid for s in self.slots}

    def close(self) -> None:
        self.closed = True
        for slot in self.slots:
            self._send(slot, {"cmd": "exit"})

    # -- supervision --------------------------------------------------------------------------
    def _send(self, slot: Slot, message: dict[str, Any]) -> None:
        try:
            slot.process.stdin.write(json.dumps(message) + "\n")
            slot.process.stdin.flush()
        except (AttributeError, OSError, ValueError):
            pass  # the worker is gone: its supervisor reports the run

    def _spawn(self, slot: Slot) -> tuple[subprocess.Popen, Any]:
        read_fd, write_fd = os.pipe()
        env = {**os.environ, "WORKBENCH_EVENTS_FD": str(write_fd),
               "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        log = (self.logs / f"worker-{slot.index}.log").open("a")
        try:
            process = subprocess.Popen([sys.executable, "-m", "workbench.runs.worker", str(self.runs_dir)],
                                       stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(write_fd,),
                                       env=env, text=True, cwd=str(ROOT))
        finally:
            os.close(write_fd)
            log.close()
        return process, os.fdopen(read_fd)

    def _supervise(self, slot: Slot) -> None:
        while not self.closed:
            process, events = self._spawn(slot)
            with self.lock:
                slot.process, slot.state = process, "starting"
            ready = False
            with events:
                for line in events:  # ends when the worker's end of the pipe closes: it exited or died
                    event = json.loads(line)
                    if event["event"] == "ready":
                        ready, slot.failures = True, 0
                        with self.lock:
                            slot.state = "idle"
                        self.on_ready()
                    elif event["event"] == "done":
                        with self.lock:
                            run_id, slot.run_id = slot.run_id, None
                            slot.state = "starting" if event.get("recycle") else "idle"
                        self.on_done(run_id, event)
                        if not event.get("recycle"):
                            self.on_ready()
            code = process.wait()
            with self.lock:
                run_id, slot.run_id = slot.run_id, None
            if run_id is not None:
                self.on_done(run_id, {"status": "died", "reason": death_reason(code, slot.index, self.logs)})
            if self.closed:
                slot.state = "closed"
                return
            if not ready:
                slot.failures += 1
                if slot.failures >= MAX_START_FAILURES:
                    with self.lock:
                        slot.state = "broken"
                    self.on_broken(f"the engine worker could not start ({death_reason(code, slot.index, self.logs)})")
                    return
                time.sleep(min(2.0 * slot.failures, 10.0))


def death_reason(code: int, index: int, logs: Path) -> str:
    """One line: how the worker ended and what to do."""
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
        how = f"was killed by {name}" + (" (out of memory, or kill -9)" if name == "SIGKILL" else "")
    else:
        how = f"exited with code {code}"
    return f"the engine worker {how}: start the run again (log: {logs / f'worker-{index}.log'})"
