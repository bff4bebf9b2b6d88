"""The tfimp command line: one experiment from a config file.

    python -m tfimp --config=configs/fashion_mnist_imp.py --workdir=runs/fmnist [--config.KEY=VALUE ...]
    tfimp --config=configs/cifar10_resnet56_imp.py --workdir=runs/r56 --config.data_dir=/data/tfds
    KERAS_BACKEND=jax tfimp --config=configs/fashion_mnist_imp.py --config.keras=3 --workdir=runs/fmnist_k3

Methods (``--config.method``, :mod:`tfimp.methods`): ``dense``, ``imp``,
``bimp``, ``oneshot``, and the pruning-during-training baselines ``gmp``,
``tfmot_gmp``, ``dpf``, ``str``. ``--config.keras`` picks the front end:
``2`` (default) trains tf_keras models through tfmot
(:mod:`tfimp.cli.tf_keras_experiment`); ``3`` trains Keras 3 models on the backend that
``KERAS_BACKEND`` names, Keras' own convention (:mod:`tfimp.cli.keras3_experiment`;
this process then never sets ``TF_USE_LEGACY_KERAS`` and imports TensorFlow
only for the TensorFlow backend or TensorBoard logs).

Rerunning with the same workdir resumes; a workdir of a run with any other
config value (but ``verbose``, ``log_every_steps``, ``export_formats`` and
``data_dir``) is refused, naming each difference, unless ``--overwrite``,
which removes the previous run first. The layout of the workdir is described
in :mod:`tfimp.core.workdir`: ``identity.json`` and ``config.json``, one
``cycle_N/`` per finished cycle (weights and masks, architecture, row and,
on tf_keras, model report; ``tfimp.load_cycle``), ``results.json``,
``results.csv``, ``accuracy_vs_sparsity.png``, TensorBoard logs in
``tensorboard/`` (``tensorboard --logdir WORKDIR/tensorboard``), on tf_keras
checked exports and their size table in ``export/``, and the final stripped
model ``model_stripped.keras``.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from absl import app, flags, logging

from tfimp.core import extras

config_flags = extras.require("ml_collections.config_flags", "the tfimp command line")

import tfimp  # noqa: E402  (after the check above, which names the missing extra)
from tfimp.cli import config as tfimp_config  # noqa: E402
from tfimp.cli import methods  # noqa: E402
from tfimp.core.datasets import DataUnavailableError  # noqa: E402
from tfimp.core import workdir as _workdir  # noqa: E402
from tfimp.core.workdir import WorkdirInUse  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Remove the run the workdir holds, whatever it is, and start over.")


def front_end(config) -> ModuleType:
    """The experiment module of ``config.keras``, with the process's Keras chosen to match.

    ``config.keras=3`` imports Keras 3 before anything of tfimp's that
    follows the process's Keras (``tfimp.IMP``, ``tfimp.models``, ...), so
    those resolve to the Keras 3 front end.

    Raises:
      ValueError: ``config.keras`` is not 2 or 3, or the process already
        committed to the other Keras.
    """
    if config.keras not in tfimp_config.KERAS_VERSIONS:
        raise ValueError(f"config.keras={config.keras!r} is unknown; known: {list(tfimp_config.KERAS_VERSIONS)}")
    if config.keras == 2:
        if tfimp.front_end.of_process() == tfimp.front_end.KERAS3:
            raise ValueError("config.keras=2 needs the tf_keras front end, but this process already uses Keras 3 "
                             "(it imported keras); run it in a fresh process, or set --config.keras=3")
        from tfimp.cli import tf_keras_experiment as experiment  # noqa: PLC0415  (selects tf_keras: only for keras=2)

        return experiment
    if os.environ.get("TF_USE_LEGACY_KERAS") or "tfimp.tf_keras._backend" in sys.modules:
        raise ValueError("config.keras=3 needs a process without TF_USE_LEGACY_KERAS (it makes tf.keras Keras 2) "
                         "and without tfimp's tf_keras front end; unset it and run in a fresh process")
    from tfimp.cli import keras3_experiment as experiment  # noqa: PLC0415  (imports Keras 3 first)

    return experiment


def check_config(config) -> None:
    """Fails before any work on a config that cannot run on its front end.

    Raises:
      ValueError: an unknown front end, method, dataset, model, criterion,
        schedule, optimizer, strategy, augmentation or export format, a
        number out of range, or what the front end cannot do yet; the
        message names the key and what is allowed.
    """
    experiment = front_end(config)
    tfimp_config.check(config, models=tfimp.models.known(), optimizers=tfimp.optimizers.known())
    experiment.check_supported(config)


def run(config, workdir: str, overwrite: bool = False) -> list[dict]:
    """Runs the experiment ``config`` into ``workdir`` on its front end; returns the per-cycle rows."""
    check_config(config)  # everything that can be checked before touching data
    _workdir.check_usable(workdir, overwrite)
    experiment = front_end(config)
    return experiment.run(config, methods.make_runner(config, experiment.runner_settings(config)), workdir, overwrite)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None or not _WORKDIR.value:
        raise app.UsageError("--config and --workdir are required")
    if not flags.FLAGS["verbosity"].present:  # TensorFlow's INFO lines would drown the progress bars
        logging.set_verbosity(logging.WARNING)
    try:
        run(_CONFIG.value, _WORKDIR.value, _OVERWRITE.value)
    except (ValueError, DataUnavailableError, WorkdirInUse, NotADirectoryError, PermissionError) as error:
        print(f"tfimp: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


def console_main() -> None:
    """Entry point of the ``tfimp`` console script."""
    app.run(main)
