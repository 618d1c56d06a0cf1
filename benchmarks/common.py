"""Small helpers shared by the benchmark rows and their worker processes (no TensorFlow here)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PROJECT_PYTHON = ROOT / ".venv" / "bin" / "python"
TAG = "@@"  # worker replies on stdout start with this (libraries may print too)


def quiet_env(env: dict[str, str] | None = None) -> dict[str, str]:
    out = dict(os.environ if env is None else env)
    out.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    out.setdefault("PYTHONWARNINGS", "ignore")
    out["PYTHONPATH"] = str(ROOT) + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    return out


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reply(**values: Any) -> None:
    """A worker's answer: one tagged JSON line on stdout."""
    sys.stdout.write(TAG + json.dumps(values) + "\n")
    sys.stdout.flush()


def commands():
    """A worker's requests: JSON lines on stdin until EOF or {"cmd": "quit"}."""
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        request = json.loads(line)
        if request.get("cmd") == "quit":
            return
        yield request


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def s(self) -> float:
        return time.perf_counter() - self.t0
