"""Keras callbacks that run tfimp inside an ordinary tf_keras ``model.fit``.

:class:`IMP` drives a whole IMP/BIMP run from one ``fit`` call (see
:class:`tfimp.core.driver.IMPDriver` for its arguments): it prunes at cycle
boundaries, owns the optimizer's learning rate, resets or keeps the
optimizer state, records one row per cycle, checkpoints every epoch and
resumes. :class:`DenseRun` and :class:`DuringTrainingRun` carry the dense
and pruning-during-training runners' workdirs the same way. The work is the
core's driver; this module gives it tf_keras' operations
(:mod:`tfimp.tf_keras.framework`).

Example::

    plan = tfimp.Plan(target_sparsity=0.9, cycles=3, dense_epochs=10, retrain_epochs=2)
    imp = tfimp.callbacks.IMP(plan, schedule=tfimp.lr.StepDecay(0.1, [500, 750]), workdir="run")
    model = tfimp.wrap(model)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss, metrics=["accuracy"])
    model.fit(train, epochs=plan.total_epochs, initial_epoch=imp.restore(model),
              validation_data=val, callbacks=[imp])
    imp.rows   # one dict per cycle
"""

from __future__ import annotations

from tfimp.core import driver as _driver
from tfimp.tf_keras._backend import keras
from tfimp.tf_keras.framework import OPS


class IMP(_driver.IMPDriver, keras.callbacks.Callback):
    __doc__ = _driver.IMPDriver.__doc__
    ops = OPS


class DenseRun(_driver.DenseRunDriver, keras.callbacks.Callback):
    __doc__ = _driver.DenseRunDriver.__doc__
    ops = OPS
