"""A throwaway Ray cluster on 127.0.0.1 for the tests: one head node with two worker processes.

Why one node: Ray refuses a second node on one machine unless every node listens on the machine's
network address, and the tests keep all traffic on the loopback interface
(`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes Ray bind 127.0.0.1). Two CPUs give two worker processes,
each running one run at a time, which is what the tests kill, stop and count.

The head runs as `ray start --head --block` in a process group of its own, so stopping the cluster
ends exactly its processes (`ray stop` would end every Ray process on the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.browser import free_port

# Loopback only; no token authentication (a throwaway cluster that nothing off this machine can reach:
# without this, a token that an earlier `ray.init()` left in ~/.ray switches it on for some processes only).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


class LocalRayCluster:
    """`start()` → address "127.0.0.1:PORT"; `stop()` ends the head and every process it started."""

    def __init__(self, num_cpus: int = 2) -> None:
        self.num_cpus = num_cpus
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp_dir = Path(tempfile.mkdtemp(prefix="wb-ray-", dir="/tmp"))  # short: Ray's sockets live here
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> str:
        ray = Path(sys.executable).with_name("ray")
        if not ray.exists():
            raise RuntimeError("the `ray` command is missing: install the cluster extra (pip install -e '.[cluster]')")
        env = {**os.environ, **LOOPBACK_ENV}
        self.log = (self.temp_dir / "head.log").open("w")
        self.process = subprocess.Popen(
            [str(ray), "start", "--head", "--block", f"--port={self.port}", f"--num-cpus={self.num_cpus}",
             "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", "--object-store-memory=100000000",
             f"--temp-dir={self.temp_dir}"], env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start failed: {(self.temp_dir / 'head.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                if "Ray runtime started" in (self.temp_dir / "head.log").read_text():
                    return self.address
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Ray head did not start in {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError, TypeError):  # stragglers that left the group
            os.killpg(self.process.pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
