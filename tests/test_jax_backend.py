"""The engine under KERAS_BACKEND=jax with only what the GPU machine has: no TensorFlow, no kagglehub, ...

The H200 machine has JAX but neither TensorFlow nor Keras; `benchmarks/gpu_device.sh` carries Keras and
keras-hub as wheels (`benchmarks/gpu_wheels.txt`). Each subprocess here hides every installed package that
is neither on the device image (`benchmarks/device_packages.txt`) nor carried: a `sitecustomize` makes their
imports fail as if they were absent. TensorFlow is among them, which matters: in this venv keras-hub imports
TensorFlow merely because it is installed (`keras_hub/src/utils/tensor_utils.py`); hidden, it goes without,
so `tensorflow_imported` is false only because the engine's JAX path truly needs no TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = '''
import importlib.abc, importlib.metadata, re, sys

_ALLOWED = {allowed!r}
_OWNERS = importlib.metadata.packages_distributions()


class _DeviceOnly(importlib.abc.MetaPathFinder):
    """Imports of installed packages that the device machine lacks fail as if they were not installed."""

    def find_spec(self, name, path=None, target=None):
        owners = _OWNERS.get(name.partition(".")[0])
        if owners and not any(re.sub(r"[-_.]+", "-", o).lower() in _ALLOWED for o in owners):
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden: not on the device machine)", name=name)
        return None


sys.meta_path.insert(0, _DeviceOnly())
'''


def _names(path: Path) -> set[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {re.sub(r"[-_.]+", "-", re.split(r"[=<>!~ ]", line)[0]).lower() for line in lines if line}


@pytest.fixture(scope="module")
def device_env(tmp_path_factory) -> dict[str, str]:
    allowed = (_names(ROOT / "benchmarks" / "device_packages.txt") | _names(ROOT / "benchmarks" / "gpu_wheels.txt")
               | {"peft-workbench"})
    assert "tensorflow" not in allowed and {"keras", "keras-hub", "jax"} <= allowed
    site = tmp_path_factory.mktemp("device-site")
    (site / "sitecustomize.py").write_text(BLOCKER.format(allowed=sorted(allowed)))
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    # XLA's CPU compile dominates these tiny runs: its backend optimizations off saves ~30 % of the file's time.
    return {**env, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(site),
            "XLA_FLAGS": "--xla_backend_optimization_level=0", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def run(args: list[str], env: dict[str, str], timeout: int = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_blocker_hides_tensorflow(device_env):
    proc = run(["-c", "try:\n    import tensorflow\nexcept ImportError:\n    print('hidden')"], device_env, timeout=60)
    assert proc.stdout.strip() == "hidden"


def test_gpu_benchmark_smoke_on_jax_without_tensorflow(device_env, tmp_path):
    """`benchmarks/gpu.py --stack keras` as the device runs it (one process per configuration), tiny shapes."""
    out = tmp_path / "gpu_keras.jsonl"
    run(["benchmarks/gpu.py", "--stack", "keras", "--smoke", "--out", str(out)], device_env)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["method"], r["prec"]) for r in records] == [("full", "fp32"), ("full", "bf16"), ("lora", "fp32"),
                                                           ("lora", "bf16")]
    for record in records:
        assert "error" not in record, record
        assert record["stack"].endswith("+ jax)") and "(jax)" in record["device"] and record["jit"] is True
        assert record["tensorflow_imported"] is False
        assert record["losses_recorded"] == 3 and record["loss_finite"] is True  # 1 warm-up + 2 timed steps
    assert records[2]["trainable"] < records[0]["trainable"] // 10  # LoRA trains a small share


def test_cli_trains_staged_lora_with_an_lr_schedule_on_jax(device_env, tmp_path):
    """The real CLI: hierarchical bottom-up stages, STLR and discriminative LRs; the run completes and records."""
    env = {**device_env, "WORKBENCH_RUNS_DIR": str(tmp_path / "runs")}
    proc = run(["-m", "workbench.cli", "train", "--model", "tiny-bert", "--data", "sms-spam", "--method", "lora",
                "--epochs", "2", "--limit-per-class", "20", "--batch-size", "8", "--hierarchical", "bottom-up",
                "--stage-steps", "3", "--lr-schedule", "stlr", "--discriminative", "2.6", "--no-export-model",
                "--json"], env)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["device"].endswith("(jax)"), summary
    from workbench.runs import RunStore

    frame = RunStore(tmp_path / "runs").metrics(summary["run_id"])
    loss = frame[frame.key == "train/loss"]
    losses = loss.value.tolist()
    assert len(losses) == summary["steps"] == 10 and all(math.isfinite(v) for v in losses)
    assert sorted(loss.step) == list(range(1, 11))  # one row per step, also with asynchronous end handlers
    timeline = frame[frame.key.str.startswith("trainable/")]
    starts = sorted(timeline.step.unique())
    assert len(starts) >= 2 and starts == [3 * i for i in range(len(starts))]
    assert {"val/loss", "test/accuracy"} <= set(frame.key)


def test_hierarchical_suite_passes_on_jax(device_env):
    """tests/test_hierarchical.py as is: each stage moves only its groups, optimizer state survives the switch,
    one trace per stage, and each group's optimizer runs the LR that was recorded."""
    proc = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_hierarchical.py"], device_env)
    assert re.search(r"\b5 passed\b", proc.stdout), proc.stdout[-2000:]


def test_steering_and_resume_pass_on_jax(device_env):
    """The backend-dependent tests of tests/test_steering.py and tests/test_resume.py as they are: pause, LR, unfreeze
    and freeze at a step (a freeze on a one-optimizer run is refused on JAX, with its reason), early stopping, and
    resume, whose curve equals the uninterrupted one on JAX too. (The others test store, queue and process plumbing.)"""
    chosen = ("pause_holds", "unfreeze_now", "freeze_stops", "group_lr", "early_stopping_ends", "continues_the",
              "apply_again")
    proc = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_steering.py", "tests/test_resume.py", "-k",
                " or ".join(chosen)], device_env, timeout=600)
    assert re.search(rf"\b{len(chosen)} passed\b", proc.stdout), proc.stdout[-2000:]


ASYNC_CHECK = """
import threading, keras
from workbench.train.callbacks import LiveState, Recorder, StopOnEvent
from workbench.train.lr_control import LearningRateControl
from workbench.train.stages import StagedUnfreezing
from workbench.train.steering import EarlyStop, Steering
from workbench.train.checkpoint import Checkpointer, Restore
from workbench.config import TrainConfig

recorder = Recorder(None, "r", LiveState(), n_train=8, batch_size=4, lr_reader=dict)
lr, staging = LearningRateControl(TrainConfig(), 1e-3, 10, {}), StagedUnfreezing({}, [[]], 1, recorder)
stop = threading.Event()
engine = [Steering(None, "r", lr_control=lr, staging=staging, recorder=recorder, live=LiveState(), stop_event=stop),
          lr, staging, Restore(None, [], None), recorder, EarlyStop("val/loss", 2, True, [], None, "r", recorder),
          Checkpointer(".", [], None, 1, 1, recorder, {}), StopOnEvent(stop)]
print(keras.callbacks.CallbackList(engine)._async_train)
"""


def test_engine_callbacks_leave_keras_free_to_dispatch_asynchronously(device_env):
    """On JAX a per-step end handler that is not `async_safe` makes Keras wait for every step's result before it
    dispatches the next one (a GPU then idles between steps); the engine's callbacks must not do that."""
    proc = run(["-c", ASYNC_CHECK], device_env, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "True"
