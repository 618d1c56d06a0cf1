"""TensorBoard event files for each run (`tensorboard --logdir runs` shows every run).

Written from the recorder's flushes, in batches, so the per-step cost stays off the hot path.
Only available with TensorFlow installed; under JAX without TensorFlow it is silently skipped.
"""

from __future__ import annotations

from pathlib import Path

TB_KEYS = ("train/loss", "train/lr", "val/", "test/", "lr/")


class TensorBoardWriter:
    def __init__(self, logdir: Path) -> None:
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(logdir))

    @classmethod
    def maybe(cls, logdir: Path) -> TensorBoardWriter | None:
        try:
            return cls(logdir)
        except ImportError:
            return None

    def write(self, rows: list[tuple]) -> None:
        with self._writer.as_default():
            for _run, step, _epoch, key, value, _wall in rows:
                if key.startswith(TB_KEYS):
                    self._tf.summary.scalar(key, value, step=step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
