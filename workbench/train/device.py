"""Which device trains, and defaults that depend on it (XLA on GPU, eager graphs on CPU)."""

from __future__ import annotations

import functools
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
    """XLA pays off on a GPU; on a CPU its compile time outweighs the gain for short runs."""
    return has_gpu()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
