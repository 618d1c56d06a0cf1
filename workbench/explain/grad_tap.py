"""The training step's own gradient norms, taken inside the step (TensorFlow): no second pass.

Why: the change map needs ‖∇L‖ per layer group at a few record points. A gradient function of our
own must be traced once per run (≈ 0.06 s for mnist-cnn, ≈ 0.5 s for tiny-bert on this CPU), which is
5–10 % of a one-second study run. The step computes those gradients anyway: the optimizer's `apply`
receives them. So the tap wraps `apply` on the optimizer *instance* (the inner one under loss scaling,
which sees unscaled gradients): before the update it writes each variable's ‖g‖² into one small
variable, and a record point reads it — the gradient of the last training batch before that point.
The cost is a sum of squares per trainable variable per step, inside the compiled step.

TensorFlow only: under JAX the optimizer is applied statelessly (a write to a variable of our own
would be dropped), so the change map keeps its probe-batch gradient there.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class GradientTap:
    """Squared gradient norms of `variables` at the last optimizer step (0 for a variable not updated)."""

    def __init__(self, optimizer: Any, variables: list) -> None:
        import tensorflow as tf

        self.target = getattr(optimizer, "inner_optimizer", None) or optimizer
        self.index = {id(v): i for i, v in enumerate(variables)}
        self.size = len(variables)
        self.squares = tf.Variable(tf.zeros([self.size], "float32"), trainable=False, name="gradient_tap")
        original = self.target.apply

        def apply(grads, trainable_variables=None):
            variables_now = trainable_variables if trainable_variables is not None else self.target._trainable_variables
            self._write(grads, variables_now)
            return original(grads, trainable_variables)

        self.target.apply = apply  # the instance's: Keras's `apply_gradients` calls `self.apply`

    def _write(self, grads, variables_now) -> None:
        import tensorflow as tf

        rows, values = [], []
        for grad, variable in zip(grads, variables_now, strict=False):
            where = self.index.get(id(variable))
            if grad is None or where is None:
                continue
            rows.append(where)
            values.append(_squared_norm(grad))
        if rows:
            self.squares.assign(tf.scatter_nd(tf.constant(rows, "int32")[:, None], tf.stack(values), [self.size]))

    def read(self) -> np.ndarray:
        return np.asarray(self.squares.numpy(), dtype="float64")

    def detach(self) -> None:
        """The optimizer's own `apply` again (the class method)."""
        self.target.__dict__.pop("apply", None)


def _squared_norm(grad):
    """‖g‖², also for an embedding's sparse gradient (rows of one token summed first, never densified)."""
    import tensorflow as tf

    if isinstance(grad, tf.IndexedSlices):
        unique, position = tf.unique(grad.indices)
        rows = tf.math.unsorted_segment_sum(grad.values, position, tf.shape(unique)[0])
        return tf.reduce_sum(tf.square(tf.cast(rows, "float32")))
    return tf.reduce_sum(tf.square(tf.cast(grad, "float32")))
