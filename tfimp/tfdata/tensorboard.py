"""TensorBoard scalars written with ``tf.summary``: the per-cycle scalars of both front ends' ``CycleReporter``."""

from __future__ import annotations

import tensorflow as tf


class ScalarWriter:
    """Writes scalars into TensorBoard event files, one ``tf.summary`` writer per directory (made on first use)."""

    def __init__(self):
        self._writers: dict[str, object] = {}

    def write(self, directory: str, step: int, scalars: dict[str, float]) -> None:
        if directory not in self._writers:
            self._writers[directory] = tf.summary.create_file_writer(directory)
        writer = self._writers[directory]
        # Inside fit, Keras' TensorBoard callback makes summaries conditional on its own step counter; these are
        # written whatever that counter says.
        with writer.as_default(step=step), tf.summary.record_if(True):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
        writer.flush()
