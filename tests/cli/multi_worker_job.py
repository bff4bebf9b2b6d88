"""One worker of a two-worker CPU job (TF_CONFIG set by the test): runs a tfimp runner, dumps what it ended with.

Usage: python multi_worker_job.py RUNNER WORKDIR OUT.npz [STOP_AT_EPOCH]

RUNNER is ``imp``, ``dense`` or ``gmp``. With STOP_AT_EPOCH this process
exits abruptly when that epoch begins (a killed worker).
"""

import json
import os
import sys

import numpy as np

import tfimp
from tfimp import keras, tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # helpers.py
import helpers  # noqa: E402


class _Die(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            os._exit(17)


def main(runner_name, workdir, out, stop_at=None):
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(0)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    x, y = helpers.random_data(64)
    settings = dict(batch_size=16, learning_rate=0.05, seed=0)
    runner = {
        "imp": lambda: tfimp.IMP(target_sparsity=0.75, cycles=2, dense_epochs=2, retrain_epochs=1, **settings),
        "dense": lambda: tfimp.Dense(2, **settings),
        "gmp": lambda: tfimp.DuringTraining("gmp", 0.75, 3, frequency=2, **settings),
    }[runner_name]()
    with strategy.scope():
        model = helpers.small_cnn()
    callbacks = [] if stop_at is None else [_Die(int(stop_at))]
    rows = runner.run(model, (x, y), test=(x, y), workdir=workdir, verbose=0, callbacks=callbacks)
    kernels = {w.name: (w * m).numpy() for _, wrapper in tfimp.wrapping.wrappers(runner.model)
               for w, m, _ in wrapper.pruning_vars} if tfimp.wrapping.wrappers(runner.model) else {}
    masks = {w.name: m.numpy() for _, wrapper in tfimp.wrapping.wrappers(runner.model)
             for w, m, _ in wrapper.pruning_vars} if tfimp.wrapping.wrappers(runner.model) else {}
    weights = {v.name: v.numpy() for v in runner.model.weights}
    np.savez(out, rows=json.dumps(rows), sparsity=tfimp.sparsity(runner.model) if kernels else 0.0,
             **{f"mask/{k}": v for k, v in masks.items()}, **{f"weight/{k}": v for k, v in weights.items()})


if __name__ == "__main__":
    main(*sys.argv[1:])
