"""The IMP callback on Keras 3: an IMP/BIMP/one-shot plan inside Keras 3's own ``model.fit``, on every backend.

The same contract as the tf_keras ``tfimp.callbacks.IMP``: it prunes at
cycle boundaries (exactly, :func:`tfimp.prune`), owns the optimizer's
learning rate (the dense schedule, then each cycle's retraining schedule,
ALLR's initial rate from the norm the pruning removed), resets or keeps
the optimizer state by the plan, and records one row per cycle
(:mod:`tfimp.core.results`). ``tfimp.callbacks`` is this module in a Keras 3
process.

How the rate gets into the traced step: each phase's rates become a
:class:`tfimp.lr.Tabulated` schedule (a constant of the trace), and the
train function is rebuilt once per phase (``make_train_function(force=True)``),
so nothing runs in Python per step, with ``jit_compile`` and
``steps_per_execution`` too.

With ``workdir=``, every epoch is checkpointed (weights, masks, optimizer
state, seed generators, rows) and each finished cycle written as
``cycle_N/``, in the tf_keras front end's layout; ``imp.restore(model)``
resumes exactly.
"""

from __future__ import annotations

import keras

from tfimp.core import driver as _driver
from tfimp.core import guards as _guards
from tfimp.keras3.framework import OPS


class ChanceGuard(keras.callbacks.Callback):
    """:func:`tfimp.core.guards.check_epoch` at the end of every epoch, for runs without the IMP callback."""

    def on_epoch_end(self, epoch, logs=None):
        _guards.check_epoch(self.model, logs or {}, epoch)


class IMP(_driver.IMPDriver, keras.callbacks.Callback):
    __doc__ = _driver.IMPDriver.__doc__
    ops = OPS


class DenseRun(_driver.DenseRunDriver, keras.callbacks.Callback):
    __doc__ = _driver.DenseRunDriver.__doc__
    ops = OPS
