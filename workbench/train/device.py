"""Which device trains, and defaults that depend on it (XLA on GPU, eager graphs on CPU)."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import keras


@functools.cache
def device_name() -> str:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"GPU: {details.get('device_name', gpus[0].name)} (tensorflow)"
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return f"GPU: {device.device_kind} (jax)"
    return f"CPU: {_cpu_model()} ({backend})"


def has_gpu() -> bool:
    return device_name().startswith("GPU")


def use_xla() -> bool:
    """XLA pays off on a GPU; on a CPU its compile time outweighs the gain for short runs.

    Measured on the 2-core CPU (benchmarks/results.md): MiniLM-L6 LoRA spends the same CPU time per
    step with or without XLA (it fuses the element-wise ops, but its CPU dots trail oneDNN's) and
    the first step compiles 10–15 s longer; tiny-bert steps ~14 % faster but its first step takes
    ~2.6 s more, more than a classroom run of a few hundred steps wins back.
    That trade-off is TensorFlow's (its graph mode runs without XLA). JAX has no such middle mode:
    `jit_compile=False` there runs every op eagerly from Python, so on JAX 'auto' always compiles.
    """
    return has_gpu() or keras.backend.backend() == "jax"


def thread_settings() -> dict:
    """TensorFlow's thread pools (0 = its default: one thread per core). Measured on the 2-core CPU:
    one inter-op thread instead of the default changes the MiniLM step within noise, so the engine
    leaves them alone."""
    if keras.backend.backend() != "tensorflow":
        return {}
    import tensorflow as tf

    return {"inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "cores": os.cpu_count()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
