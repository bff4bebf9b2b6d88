"""The run guards of the tf_keras front end: :mod:`tfimp.core.guards` and a callback for runs without IMP."""

from __future__ import annotations

from tfimp.tf_keras._backend import keras
from tfimp.core.guards import (CHANCE_ACCURACY_FACTOR, CHANCE_TOLERANCE, ChanceLevelError,  # noqa: F401  (public)
                               at_chance, check_epoch, classes)


class ChanceGuard(keras.callbacks.Callback):
    """:func:`check_epoch` at the end of every epoch, for runs without the IMP callback."""

    def on_epoch_end(self, epoch, logs=None):
        check_epoch(self.model, logs or {}, epoch)
