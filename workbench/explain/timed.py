"""A callback that times another: what explaining costs a run (`benchmarks/explain.py`, row 8)."""

from __future__ import annotations

import time

import keras


class Timed(keras.callbacks.Callback):
    """Runs another callback and adds the time it takes to `seconds[part]`: what explaining costs a run."""

    HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
             "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
             "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end")

    def __init__(self, inner: keras.callbacks.Callback, seconds: dict[str, float], part: str) -> None:
        super().__init__()
        self.inner, self.seconds, self.part = inner, seconds, part
        self.async_safe = getattr(inner, "async_safe", False)
        for hook in self.HOOKS:
            setattr(self, hook, self._timed(getattr(inner, hook)))

    def _timed(self, method):
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[self.part] = self.seconds.get(self.part, 0.0) + time.perf_counter() - t0
        return call

    def set_model(self, model) -> None:
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params) -> None:
        super().set_params(params)
        self.inner.set_params(params)
