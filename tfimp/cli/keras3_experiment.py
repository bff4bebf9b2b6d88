"""The CLI's experiment on Keras 3 (``--config.keras=3``; the backend is ``KERAS_BACKEND``'s).

:func:`run` trains ``config``'s method (:mod:`tfimp.methods`; on Keras 3:
every method) into a workdir with the Keras 3 front end:
the same config keys, workdir layout, identity, lock, resume, ``cycle_N/``,
results files, plot, the model report after each cycle (printed and in
``cycle_N/report.json``), TensorBoard logs (per epoch and per cycle, when
TensorFlow is installed: the event files are written with it) and
``model_stripped.keras`` as on tf_keras. ``strategy="data_parallel"`` trains on every local device through
``keras.distribution.DataParallel`` (JAX); ``strategy="mirrored"`` through
tf.distribute's ``MirroredStrategy`` (the TensorFlow backend), the model
built, wrapped and compiled in its scope.

Data: mnist and fashion_mnist without augmentation are numpy (no
TensorFlow needed); the tensorflow-datasets datasets (CIFAR, ImageNet) and
every augmentation come as the tf_keras front end's ``tf.data`` pipelines
(:mod:`tfimp.tfdata.pipelines`), on any backend where TensorFlow is installed.

Exports (``export_formats``): :mod:`tfimp.keras3.export`'s formats, each
checked in a fresh process, into ``export/`` with ``sizes.txt`` and
``sizes.json`` (each file's test accuracy through its own runtime beside the
float model's; ``tflite_int8`` calibrated on 100 training inputs); a format this backend or environment cannot write is refused
before training. The shipped default (``keras,savedmodel,tflite``) means
those of them this backend can write (``keras`` alone on PyTorch, where
Keras 3 writes no SavedModel), with a line naming what was left out. The stripped model is also written as
``model_stripped.keras``, which loads on every backend.

The calibration of STR, CS and DST (``calibrate``) runs as on tf_keras
(:func:`tfimp.methods.calibrated_runner`, the value kept in the workdir
for a resume). Not on Keras 3 yet, refused before any work with a message:
the tf_keras strategies.
"""

from __future__ import annotations

import contextlib
import importlib.util

import keras
import numpy as np

from tfimp.cli import config as tfimp_config
from tfimp.core import architectures, plots
from tfimp.cli import methods, slim_export
from tfimp.core import exports as _exports
from tfimp.core import storage as _storage
from tfimp.core import workdir as _workdir
from tfimp.keras3 import data, export, masks, models, report

#: ``config.method`` values this front end runs through the CLI.
METHODS = ("dense", "imp", "oneshot", "bimp", *methods.DURING_TRAINING)
#: ``config.strategy`` values: one device; Keras' data parallelism over every local device (JAX);
#: tf.distribute's MirroredStrategy over every local device (the TensorFlow backend).
STRATEGIES = ("default", "data_parallel", "mirrored")


def check_supported(config) -> None:
    """Fails on what the Keras 3 front end cannot run yet (see the module docstring).

    Raises:
      ValueError: the message names the key, the value and what is allowed.
    """
    if config.method not in METHODS and config.method in methods.METHODS:
        raise ValueError(f"config.method={config.method!r} runs on the tf_keras front end only for now "
                         f"(config.keras=2); on Keras 3 the CLI runs {list(METHODS)}")
    if data.uses_tf_data(config.dataset, config.augmentation or None) and importlib.util.find_spec(
            "tensorflow") is None:
        raise ValueError(f"config.dataset={config.dataset!r} with augmentation "
                         f"{config.augmentation or 'the default'!r} reads through tf.data, which needs TensorFlow; "
                         "install tensorflow and tensorflow-datasets, or use mnist/fashion_mnist without augmentation")
    export.resolve_formats(config.export_formats or "", key="config.export_formats")
    if config.strategy not in STRATEGIES:
        raise ValueError(f"config.strategy={config.strategy!r} is unknown on Keras 3; known: {list(STRATEGIES)} "
                         "(tf.distribute's multi-worker and TPU strategies: config.keras=2)")
    backend = keras.backend.backend()
    if config.strategy == "mirrored" and backend != "tensorflow":
        raise ValueError(f"config.strategy='mirrored' is tf.distribute's and runs on Keras 3's TensorFlow backend "
                         f"(KERAS_BACKEND=tensorflow), not on {backend!r}; on JAX use strategy=data_parallel")
    if config.strategy == "data_parallel" and backend != "jax":
        raise ValueError(f"config.strategy='data_parallel' is keras.distribution's, which Keras 3 runs on JAX, "
                         f"not on {backend!r}; on TensorFlow use strategy=mirrored")


def runner_settings(config) -> dict:
    """The runners' settings from ``config``, with Keras 3's meaning of ``jit_compile``.

    ``jit_compile=False`` (the config's default, tf_keras' eager graph) becomes
    Keras 3's own default ``"auto"``: on JAX, ``False`` would run every step
    eagerly, op by op, many times slower; ``True`` asks for XLA on every
    backend.
    """
    settings = methods.runner_settings(config)
    settings["jit_compile"] = True if config.jit_compile else "auto"
    return settings


def _distribution(strategy: str):
    """Keras' distribution for ``strategy`` (JAX's data parallelism), or None."""
    if strategy != "data_parallel":
        return None
    devices = keras.distribution.list_devices()
    return keras.distribution.DataParallel(devices=devices)


def _strategy_scope(strategy: str, say):
    """The tf.distribute scope the model must be built, wrapped and compiled in (``mirrored``), else a no-op."""
    if strategy != "mirrored":
        return contextlib.nullcontext()
    import tensorflow as tf  # noqa: PLC0415  (the TensorFlow backend only)

    mirrored = tf.distribute.MirroredStrategy()
    say(f"[tfimp] strategy mirrored: {mirrored.num_replicas_in_sync} replica(s), batches split among them",
        flush=True)
    return mirrored.scope()


def _tensorboard(config, workdir: str) -> list:
    """Keras' TensorBoard callback where TensorFlow is installed (it writes the event files), else none."""
    if importlib.util.find_spec("tensorflow") is None:
        tfimp_config.printer(config)("[tfimp] TensorFlow is not installed: no TensorBoard logs", flush=True)
        return []
    return [keras.callbacks.TensorBoard(_workdir.path(workdir, _workdir.TENSORBOARD),
                                        update_freq=config.log_every_steps)]


def run(config, runner, workdir: str, overwrite: bool = False) -> list[dict]:
    """Runs the experiment ``config`` (checked, with its ``runner``) into ``workdir``; returns the per-cycle rows."""
    say = tfimp_config.printer(config)
    keras.utils.set_random_seed(config.seed)
    say(f"[tfimp] Keras {keras.__version__}, backend {keras.backend.backend()}; config:\n{config}", flush=True)
    spec = data.spec(config.dataset)
    models.check_fits(config.model, spec.input_shape, f"dataset {config.dataset!r}")
    dataset = data.load(config.dataset, data_dir=config.data_dir or None, batch_size=config.batch_size,
                        validation_fraction=config.validation_fraction, seed=config.seed,
                        train_subset=config.train_subset or None, test_subset=config.test_subset or None,
                        augmentation=config.augmentation or None)
    say(f"[tfimp] {config.dataset}: {dataset.train_examples} training examples from {dataset.source}", flush=True)
    distribution = _distribution(config.strategy)
    if distribution is not None:
        say(f"[tfimp] strategy data_parallel: {len(distribution.device_mesh.devices.flat)} device(s), "
            f"{config.batch_size} examples per step in all", flush=True)
    previous_distribution, policy = keras.distribution.distribution(), keras.config.dtype_policy()
    keras.distribution.set_distribution(distribution)
    if config.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        with _workdir.Locked(workdir, config.verbose), _strategy_scope(config.strategy, say):
            def build_model() -> keras.Model:
                built = models.build(config.model, num_classes=spec.num_classes, input_shape=spec.input_shape)
                return architectures.float32_outputs(keras, built) if config.mixed_precision else built

            if config.calibrate:
                runner = methods.calibrated_runner(config, build_model, dataset.train, workdir,
                                                       runner_settings(config), identity=tfimp_config.identity(config),
                                                       overwrite=overwrite, say=say)
                overwrite = False  # done above, before the calibration was written
            model = build_model()
            architectures.check_outputs_fit(model, spec.num_classes, spec.name)
            rows = runner.run(model, dataset.train, dataset.validation, dataset.test, workdir=workdir,
                              overwrite=overwrite, callbacks=_tensorboard(config, workdir), verbose=config.verbose,
                              cycle_end_hooks=[report.CycleReporter(workdir, verbose=config.verbose)],
                              identity=tfimp_config.identity(config))
            _write_outputs(config, runner.model, rows, workdir, dataset)
            return rows
    finally:
        keras.distribution.set_distribution(previous_distribution)
        keras.config.set_dtype_policy(policy)


def _check_batch(test) -> np.ndarray:
    """Up to 8 test inputs for the export check: from arrays, or the first batch of a tf.data pipeline."""
    x = test[0] if isinstance(test, tuple) else next(iter(test))[0]
    return np.asarray(x[:8], dtype="float32")


def _export_data(dataset) -> dict:
    """:func:`tfimp.keras3.export.export`'s data from the run's: the check batch, calibration inputs drawn from the
    (shuffled) training batches, and the test set (up to :data:`tfimp.core.exports.EVALUATION_BYTES`)."""
    test = [dataset.test] if isinstance(dataset.test, tuple) else dataset.test
    return {"check_inputs": _check_batch(dataset.test),
            "representative_data": _exports.take_examples(dataset.train, _exports.REPRESENTATIVE_EXAMPLES)[0],
            "test_data": _exports.take_examples(test, max_bytes=_exports.EVALUATION_BYTES)}


def _write_outputs(config, model: keras.Model, rows: list[dict], workdir: str, dataset) -> None:
    """config.json, the plot, the stripped model, and the summary lines (the run has claimed the workdir)."""
    say = tfimp_config.printer(config)
    _storage.atomic_write_text(_workdir.path(workdir, _workdir.CONFIG), config.to_json_best_effort(indent=2))
    plots.accuracy_vs_sparsity(rows, _workdir.path(workdir, _workdir.PLOT),
                               title=f"{config.method} {config.model} on {config.dataset} (Keras 3)")
    covered = masks.describe(model)
    say(f"[tfimp] pruned {masks.sparsity(model):.2%} of the {covered.prunable_parameters:,} prunable weights, "
        f"{covered.prunable_share:.1%} of the model's {covered.total_parameters:,} parameters; zeros over all "
        f"parameters {masks.sparsity(model, over='all'):.2%}", flush=True)
    if config.export_formats and masks.wrappers(model) and masks.sparsity(model) > 0:
        formats, left_out = export.resolve_formats(config.export_formats, key="config.export_formats")
        if left_out:
            say(f"[tfimp] the default export formats this backend cannot write are left out: {'; '.join(left_out)}",
                flush=True)
        files = export.export(model, _workdir.path(workdir, _workdir.EXPORT), formats=formats, **_export_data(dataset))
    else:
        files = []
    if masks.wrappers(model) and masks.sparsity(model) > 0 and slim_export.wanted(config):
        files = [*files, slim_export.write(model, workdir, _check_batch(dataset.test), files)]
    if files:
        table = _exports.write_sizes(workdir, files)
        say(f"[tfimp] exports (each loaded in a fresh process and checked against the Keras model; test accuracy "
            f"of each file, through its own runtime, and of the float model):\n{table}", flush=True)
    with _storage.local_file(_workdir.path(workdir, _workdir.STRIPPED_MODEL)) as local:
        masks.strip(model).save(local)
    cycle_dirs = ", ".join(f"cycle_{c}/" for c in _workdir.cycles(workdir))
    say(f"[tfimp] results in {workdir}: {cycle_dirs} (tfimp.load_cycle), results.json, results.csv, "
        "accuracy_vs_sparsity.png, tensorboard/, model_stripped.keras", flush=True)
