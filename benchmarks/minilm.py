"""Row 2: MiniLM-L6 on the CPU — LoRA vs full in the workbench, and against the peer (HF + peft).

Every configuration is a long-lived worker process that trains in blocks of `k` steps on request;
the blocks run one at a time in a fixed rotation (A B C … A B C …), so no two stacks compete for
the two cores and each sees the same background load. Reported: per-step medians, the median of
the per-round ratios (robust to load drifting between rounds) and each process's peak RSS.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import PEER_PYTHON, PROJECT_PYTHON, ROOT, median
from benchmarks.workers import Worker

DATA = Path(tempfile.gettempdir()) / "wb-bench-minilm-train.npz"  # the token ids both stacks train on


def _workbench(name: str, *args: str, wait: bool = False) -> Worker:
    return Worker(name, [str(PROJECT_PYTHON), "benchmarks/minilm_worker.py", *args], wait=wait)


def _peer(name: str, method: str, model_dir: str, env: dict[str, str] | None = None, extra: list[str] | None = None) -> Worker:
    return Worker(name, [str(PEER_PYTHON), "benchmarks/peer_torch.py", "--method", method, "--model-dir", model_dir,
                         "--data", str(DATA), *(extra or [])], env={**os.environ, **(env or {})}, wait=False)


def minilm_dir() -> str:
    import subprocess

    code = "from workbench.models.bert import minilm_dir; print(minilm_dir())"
    return subprocess.run([str(PROJECT_PYTHON), "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout.strip().splitlines()[-1]


def rotate(workers: dict[str, Worker], *, rounds: int, k: int, warmup: int, deadline: float | None,
           log=print) -> tuple[dict, dict, dict, dict, dict, int]:
    """Warm every worker up, then rotate blocks of `k` steps (A B C … A B C …) for `rounds` rounds (at
    least 3 before `deadline`); returns (step times, per-round medians, CPU s per step, peak RSS MiB,
    each worker's ready info, rounds done)."""
    for name, worker in workers.items():
        log(f"  {name}: ready {worker.ready()}")
        worker.send(cmd="steps", n=warmup)
    for name, worker in workers.items():
        log(f"  {name}: warm-up steps {[round(t, 2) for t in worker.read()['times']]} s")
    times: dict[str, list[float]] = {n: [] for n in workers}
    per_round: dict[str, list[float]] = {n: [] for n in workers}
    cpu: dict[str, list[float]] = {n: [] for n in workers}
    done = 0
    for r in range(rounds):
        if deadline is not None and r >= 3 and time.perf_counter() > deadline:
            log(f"  time budget reached after {r} rotations")
            break
        done += 1
        for name, worker in workers.items():
            res = worker.ask(cmd="steps", n=k)
            times[name] += res["times"]
            per_round[name].append(median(res["times"]))
            cpu[name].append(res["cpu_s"] / k)
        log(f"  round {r + 1}: " + " ".join(f"{n}={1000 * per_round[n][-1]:.0f}ms" for n in workers))
    memory = {n: w.ask(cmd="mem")["peak_rss_mb"] for n, w in workers.items()}
    info = {n: w.info for n, w in workers.items()}
    return times, per_round, cpu, memory, info, done


def run(*, peer: bool, rounds: int = 6, k: int = 2, warmup: int = 2, deadline: float | None = None,
        log=print) -> dict[str, Any]:
    """`deadline` (a `time.perf_counter()` value): stop rotating once past it (after 3 rotations at least)."""
    workers: dict[str, Worker] = {}
    t0 = time.perf_counter()
    try:
        # Start-up and the first (tracing) steps overlap; only the rotations below are measured.
        workers["wb_lora"] = _workbench("wb_lora", "--method", "lora", wait=True)
        workers["wb_lora"].ask(cmd="dump", path=str(DATA))  # the peer trains on these very token ids
        workers["wb_full"] = _workbench("wb_full", "--method", "full")
        workers["wb_lora_merged"] = _workbench("wb_lora_merged", "--method", "lora", "--lora-merged")
        if peer:
            model_dir = minilm_dir()
            workers["wb_lora_64"] = _workbench("wb_lora_64", "--method", "lora", "--trim", "0")
            workers["peer_lora"] = _peer("peer_lora", "lora", model_dir)
            # OpenMP threads spin while they wait; on a shared 2-core machine that can cost the peer
            # several times its step time. The passive variant shows the peer at its best here.
            workers["peer_lora_passive"] = _peer("peer_lora_passive", "lora", model_dir, {"OMP_WAIT_POLICY": "PASSIVE"})
            workers["peer_full"] = _peer("peer_full", "full", model_dir)
        times, per_round, cpu, memory, info, done = rotate(workers, rounds=rounds, k=k, warmup=warmup,
                                                           deadline=deadline, log=log)
    finally:
        for worker in workers.values():
            worker.close()

    def ratio(a: str, b: str) -> float:
        """median over rounds of a/b step time."""
        return median([x / y for x, y in zip(per_round[a], per_round[b], strict=True)])

    out: dict[str, Any] = {
        "step_ms": {n: 1000 * median(v) for n, v in times.items()},
        "cpu_ms_per_step": {n: 1000 * median(v) for n, v in cpu.items()},
        "peak_rss_mb": memory, "info": info, "rounds": done, "k": k,
        "lora_over_full_step": ratio("wb_lora", "wb_full"),
        "lora_over_full_rss": memory["wb_lora"] / memory["wb_full"],
        "lora_merged_over_full_step": ratio("wb_lora_merged", "wb_full"),
        "factored_over_merged_step": ratio("wb_lora", "wb_lora_merged"),
        "trainable_percent": {"lora": info["wb_lora"]["percent"], "full": info["wb_full"]["percent"]},
        "trainable": {"lora": info["wb_lora"]["trainable"], "full": info["wb_full"]["trainable"]},
        "seconds": time.perf_counter() - t0, "load_end": os.getloadavg()[0],
    }
    if peer:
        # Throughput ratio workbench/peer = peer step time / workbench step time, per round.
        best_peer = [min(a, b) for a, b in zip(per_round["peer_lora"], per_round["peer_lora_passive"], strict=True)]
        out["vs_peer_lora"] = median([p / w for p, w in zip(best_peer, per_round["wb_lora"], strict=True)])
        out["vs_peer_lora_default_omp"] = 1 / ratio("wb_lora", "peer_lora")
        out["vs_peer_lora_same_shapes"] = median([p / w for p, w in zip(best_peer, per_round["wb_lora_64"], strict=True)])
        out["vs_peer_full"] = 1 / ratio("wb_full", "peer_full")
        out["vs_peer_lora_merged"] = median([p / w for p, w in zip(best_peer, per_round["wb_lora_merged"], strict=True)])
        out["peer_lora_over_full_step"] = ratio("peer_lora", "peer_full")
        out["peer_lora_over_full_rss"] = memory["peer_lora"] / memory["peer_full"]
    return out
