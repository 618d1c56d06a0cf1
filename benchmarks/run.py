"""`make bench`: run every row, write `benchmarks/results.md` and `benchmarks/results.json`.

    python -m benchmarks.run                 # all rows; the peer rows only if .venv-peer exists
    python -m benchmarks.run --peer yes      # fail instead of skipping the peer rows
    python -m benchmarks.run --only charts,store

Each row runs in its own process (fresh TensorFlow state, its own peak memory) one after another,
never two heavy measurements at once. The machine is small (2 cores) and may be shared, so every
comparison is measured side by side in one run and reported as a median ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import report  # noqa: E402
from benchmarks.common import PEER_PYTHON, PROJECT_PYTHON, ROOT, TAG, quiet_env  # noqa: E402

ROWS = ["charts", "store", "engine", "start", "start-cold", "probe", "minilm", "prefix", "jax", "explain", "live",
        "sweep-ray", "store-backends"]
OUT = ROOT / "benchmarks"


def tagged_process(args: list[str], what: str, timeout: float) -> dict[str, Any]:
    """Run a measurement in its own process (and session: on a timeout the whole group goes, an app
    server and its engine worker included) and return its tagged JSON reply."""
    t = time.perf_counter()
    proc = subprocess.Popen([str(PROJECT_PYTHON), *args], cwd=ROOT, env=quiet_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    for line in reversed(stdout.splitlines()):
        if line.startswith(TAG):
            result = json.loads(line[len(TAG):])
            result["elapsed_s"] = round(time.perf_counter() - t, 1)
            return result
    raise RuntimeError(f"{what} failed (rc={proc.returncode}):\n{stderr[-2500:]}")


def row_process(name: str, timeout: float = 420) -> dict[str, Any]:
    return tagged_process(["-m", "benchmarks.rows", name], f"row {name}", timeout)


def jax_row(timeout: float = 300) -> dict[str, Any]:
    """Row 1c: `benchmarks/gpu.py` on this CPU under JAX (the GPU machine's backend), MiniLM dims at batch
    8 × 32: the engine vs bare Keras on the same model, LoRA and full, in one process (engine, then bare)."""
    t = time.perf_counter()
    done = subprocess.run([str(PROJECT_PYTHON), "benchmarks/gpu.py", "--stack", "keras", "--cpu-shape", "--in-process",
                           "--methods", "lora,full", "--precisions", "fp32"], cwd=ROOT,
                          env=quiet_env({**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}),
                          capture_output=True, text=True, timeout=timeout)
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or len(records) != 2 or any("error" in r for r in records):
        raise RuntimeError(f"gpu.py --cpu-shape failed (rc={done.returncode}): {records}\n{done.stderr[-2000:]}")
    return {"records": records, "elapsed_s": round(time.perf_counter() - t, 1)}


def live_row(timeout: float = 1200) -> dict[str, Any]:
    """Row 7: the app in real Chromium (`benchmarks/live.py`), its own process (a server and a browser)."""
    return tagged_process(["-m", "benchmarks.live"], "benchmarks.live", timeout)


VECTOR_FLAGS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512F", "avx512_vnni": "AVX-512 VNNI",
                "avx512_bf16": "AVX-512 BF16", "amx_tile": "AMX", "amx_bf16": "AMX-BF16"}


def vector_extensions() -> dict[str, Any]:
    """The CPU's vector extensions and its family for the targets: 'avx512' or 'avx2' (step times on the
    two differ ~3× for both stacks, so a target holds per family and every run says which it saw)."""
    flags: set[str] = set()
    with contextlib.suppress(OSError, StopIteration):
        flags = set(next(line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")))
    return {"vector": " ".join(name for flag, name in VECTOR_FLAGS.items() if flag in flags) or "unknown",
            "cpu_family": "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other"}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    versions = subprocess.run([str(PROJECT_PYTHON), "-c", "import keras, tensorflow as tf, keras_hub, numpy; "
                               "print(keras.__version__, tf.__version__, keras_hub.__version__, numpy.__version__)"],
                              capture_output=True, text=True, env=quiet_env(), cwd=ROOT).stdout.split()
    info = {"cpu": cpu, **vector_extensions(), "cores": os.cpu_count(), "python": platform.python_version(),
            "keras": versions[0] if versions else "?", "tensorflow": versions[1] if len(versions) > 1 else "?",
            "keras_hub": versions[2] if len(versions) > 2 else "?", "load_start": round(os.getloadavg()[0], 2),
            "date": time.strftime("%Y-%m-%d %H:%M")}
    if PEER_PYTHON.exists():
        peer = subprocess.run([str(PEER_PYTHON), "-c", "import torch, transformers, peft; "
                               "print(torch.__version__, transformers.__version__, peft.__version__)"],
                              capture_output=True, text=True).stdout.split()
        if len(peer) == 3:
            info.update(torch=peer[0], transformers=peer[1], peft=peer[2])
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", choices=["auto", "yes", "no"], default="auto")
    parser.add_argument("--only", default=",".join(ROWS))
    parser.add_argument("--rounds", type=int, default=8, help="rotations of the MiniLM row")
    parser.add_argument("--budget", type=float, default=540, help="seconds for the whole run (MiniLM rotations stop early)")
    args = parser.parse_args()
    wanted = [r for r in args.only.split(",") if r]
    peer = PEER_PYTHON.exists() if args.peer == "auto" else args.peer == "yes"
    if peer and not PEER_PYTHON.exists():
        sys.exit("no .venv-peer: run `make bench-peer` (it builds the peer venv first)")
    t0 = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "peer": peer, "rows": {}}
    previous = OUT / "results.json"
    if set(wanted) != set(ROWS) and previous.is_file():  # a partial run keeps the other rows' last results
        results["rows"] = json.loads(previous.read_text()).get("rows", {})
    print(f"machine: {results['machine']}", flush=True)
    for name in wanted:
        print(f"[{time.perf_counter() - t0:5.0f} s] {name} …", flush=True)
        try:
            if name == "minilm":
                from benchmarks import minilm

                # `make bench` must stay under 10 minutes on a shared 2-core machine.
                result = minilm.run(peer=peer, rounds=args.rounds, deadline=t0 + args.budget - 60,
                                    log=lambda m: print(m, flush=True))
            elif name == "prefix":
                from benchmarks import prefix

                result = {"speed": prefix.speed(peer=peer, deadline=time.perf_counter() + 240,
                                                log=lambda m: print(m, flush=True)),
                          "accuracy": row_process("prefix-accuracy", timeout=900)}
            elif name == "jax":
                result = jax_row()
            elif name == "live":
                result = live_row()
            elif name == "sweep-ray":
                result = tagged_process(["-m", "benchmarks.sweep_ray"], "benchmarks.sweep_ray", 900)
            elif name == "store-backends":
                result = tagged_process(["-m", "benchmarks.store_backends"], "benchmarks.store_backends", 300)
            elif name == "explain":
                result = tagged_process(["-m", "benchmarks.explain"], "benchmarks.explain", 900)
            else:
                result = row_process(name)
        except Exception as exc:  # noqa: BLE001 - a broken row is reported, the others still run
            result = {"error": f"{type(exc).__name__}: {exc}"[:3000]}
        results["rows"][name] = result
        print(f"    {json.dumps(result, default=str)[:600]}", flush=True)
    results["history"] = json.loads(previous.read_text()).get("history", []) if previous.is_file() else []
    minilm_row = results["rows"].get("minilm", {})
    if "minilm" in wanted and "lora_over_full_step" in minilm_row:
        results["history"] = (results["history"] + [{
            "date": results["machine"]["date"], "load_start": results["machine"]["load_start"],
            "rounds": minilm_row["rounds"], "lora_over_full_step": round(minilm_row["lora_over_full_step"], 3),
            "vs_peer_lora": round(minilm_row["vs_peer_lora"], 3) if "vs_peer_lora" in minilm_row else None}])[-12:]
    results["machine"]["load_end"] = round(os.getloadavg()[0], 2)
    results["total_s"] = round(time.perf_counter() - t0, 1)
    (OUT / "results.json").write_text(json.dumps(results, indent=1, default=str))
    markdown = report.render(results)
    (OUT / "results.md").write_text(markdown)
    print(report.table(results))
    print(f"wrote {OUT / 'results.md'} and results.json in {results['total_s']:.0f} s")


if __name__ == "__main__":
    main()
