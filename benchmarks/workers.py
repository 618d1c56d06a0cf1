"""Driving worker processes (workbench or peer) that answer tagged JSON lines."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, TAG, quiet_env


class WorkerError(RuntimeError):
    pass


class Worker:
    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None, wait: bool = True) -> None:
        """Start the process; with `wait=False` the caller collects its ready line later (`ready()`)."""
        self.name = name
        self.log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=quiet_env(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log.open("w"), text=True, bufsize=1)
        self.info: dict[str, Any] = self.read() if wait else {}

    def ready(self) -> dict[str, Any]:
        if not self.info:
            self.info = self.read()
        return self.info

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(TAG):
                return json.loads(line[len(TAG):])
        tail = self.log.read_text()[-3000:]
        raise WorkerError(f"worker {self.name} ended (rc={self.proc.wait()}):\n{tail}")

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def send(self, **request: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
            self.proc.kill()
            self.proc.wait()
