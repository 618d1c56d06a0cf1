"""Scale-out on an existing engine: tf.distribute strategies (TensorFlow backend).

- default: one device (the GPU if there is one);
- mirrored: `MirroredStrategy` over all local GPUs (or logical CPU devices), one model replica each;
- multiworker: `MultiWorkerMirroredStrategy` across machines described by the `TF_CONFIG` variable.
The batch size in the config is the *global* batch: Keras splits it across replicas. Model, optimizer
and metrics are created inside `strategy.scope()`, so `prepare` and `train` both run within it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os

import keras

from workbench.errors import ConfigError, received


def strategy_scope(name: str):
    """A context manager: the strategy's scope, or nothing for 'default'."""
    if name == "default":
        return contextlib.nullcontext()
    if keras.backend.backend() != "tensorflow":
        raise ConfigError(f"tf.distribute strategies need the TensorFlow backend; on JAX use strategy "
                          f"'default'. {received(strategy=name, backend=keras.backend.backend())}")
    if name == "multiworker" and "TF_CONFIG" not in os.environ:
        raise ConfigError(f"multiworker needs TF_CONFIG describing the cluster (see README, 'Scale out'). "
                          f"{received(strategy=name)}")
    if name not in ("mirrored", "multiworker"):
        raise ConfigError(f"strategy must be default, mirrored or multiworker. {received(strategy=name)}")
    return _strategy(name).scope()


@functools.cache
def _strategy(name: str):
    """One strategy object per process: two MirroredStrategy instances collide on collective keys."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    json.loads(os.environ["TF_CONFIG"])
    return tf.distribute.MultiWorkerMirroredStrategy()


def replicas() -> int:
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync
