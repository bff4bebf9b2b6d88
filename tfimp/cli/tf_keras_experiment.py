"""The CLI's experiment on the tf_keras front end (``--config.keras=2``, the default).

:func:`run` trains ``config``'s method (:mod:`tfimp.methods`) into a
workdir, with tfimp's tf_keras pieces: ``tf.distribute`` strategies, the
tf.data pipelines and augmentations of :mod:`tfimp.data`, the calibration of STR, CS and DST,
per-cycle model reports and the checked exports. ``tfimp.cli.main`` checks the
config and calls it.
"""

from __future__ import annotations


from tfimp.core import extras

extras.require("tensorboard", "the tfimp command line's TensorBoard logs")

import tfimp  # noqa: E402  (after the check above, which names the missing extra)
from tfimp.core import architectures, plots  # noqa: E402
from tfimp.tf_keras import checkpoint, data, export, models, report  # noqa: E402
from tfimp.cli import methods, slim_export  # noqa: E402
from tfimp.cli import config as tfimp_config  # noqa: E402
from tfimp.tf_keras._backend import keras  # noqa: E402
from tfimp.core import exports  # noqa: E402


def check_supported(config) -> None:
    """Fails on the keys whose allowed values are the tf_keras front end's (strategy, export formats).

    Raises:
      ValueError: the message names the key and what is allowed.
    """
    if config.strategy not in tfimp.distribute.STRATEGIES:
        raise ValueError(f"config.strategy={config.strategy!r} is unknown; known: {list(tfimp.distribute.STRATEGIES)}")
    export.parse_formats(config.export_formats or "", export.FORMATS, key="config.export_formats")


#: The runners' settings from a config (the tf_keras front end takes them as they are).
runner_settings = methods.runner_settings


def run(config, runner, workdir: str, overwrite: bool = False) -> list[dict]:
    """Runs the experiment ``config`` (checked, with its ``runner``) into ``workdir``; returns the per-cycle rows."""
    say = tfimp_config.printer(config)
    # First: a multi-worker strategy must configure TensorFlow's collectives before any op runs.
    strategy = tfimp.distribute.make(config.strategy, config.tpu)
    keras.utils.set_random_seed(config.seed)
    say(f"[tfimp] config:\n{config}", flush=True)

    models.check_fits(config.model, data.spec(config.dataset).input_shape, f"dataset {config.dataset!r}")

    # -- Data ---------------------------------------------------------------
    dataset = data.load(config.dataset, data_dir=config.data_dir or None, batch_size=config.batch_size,
                        validation_fraction=config.validation_fraction, seed=config.seed,
                        train_subset=config.train_subset or None, test_subset=config.test_subset or None,
                        augmentation=config.augmentation or None)
    say(f"[tfimp] {config.dataset}: {dataset.train_examples} training examples from {dataset.source}", flush=True)

    # -- Devices and model -------------------------------------------------------
    if config.strategy != "default":
        say(f"[tfimp] strategy {config.strategy}: {strategy.num_replicas_in_sync} replica(s), "
            f"{config.batch_size // strategy.num_replicas_in_sync} examples each per step", flush=True)
    policy = keras.mixed_precision.global_policy()
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    def build_model() -> keras.Model:
        with strategy.scope():  # variables, optimizer slots and tfimp's masks live on the strategy's devices
            built = models.build(config.model, num_classes=dataset.spec.num_classes,
                                 input_shape=dataset.spec.input_shape)
            return architectures.float32_outputs(keras, built) if config.mixed_precision else built

    try:
        with tfimp.workdir.Locked(workdir, config.verbose):
            if config.calibrate:
                runner = methods.calibrated_runner(
                    config, build_model, dataset.train, workdir, methods.runner_settings(config),
                    identity=tfimp_config.identity(config), overwrite=overwrite, chief=tfimp.workdir.is_chief(),
                    say=say)
                overwrite = False  # done above, before the calibration was written
            model = build_model()
            architectures.check_outputs_fit(model, dataset.spec.num_classes, dataset.spec.name)
            # -- Train (resumable) --------------------------------------------
            return _train_and_export(config, runner, model, dataset, workdir, overwrite)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _train_and_export(config, runner, model, dataset, workdir: str, overwrite: bool) -> list[dict]:
    """Trains, then writes the outputs; on a multi-worker job's other workers into their scratch, removed after.

    Every worker writes the outputs (stripping and saving read variables that are all-reduced across workers);
    only the chief's land in ``workdir``.
    """
    say = tfimp_config.printer(config)
    tensorboard = keras.callbacks.TensorBoard(tfimp.workdir.path(workdir, tfimp.workdir.TENSORBOARD),
                                              update_freq=config.log_every_steps)
    train = dataset.train_epochs or dataset.train  # epoch-ordered: a resumed run continues exactly
    rows = runner.run(model, train, dataset.validation, dataset.test, workdir=workdir,
                      overwrite=overwrite, callbacks=[tensorboard], verbose=config.verbose,
                      cycle_end_hooks=[report.CycleReporter(workdir, verbose=config.verbose)],
                      identity=tfimp_config.identity(config))
    out = tfimp.workdir.write_dir(workdir, model.distribute_strategy)
    # The run has claimed the workdir: the readable copy of the config is this run's.
    checkpoint.atomic_write_text(tfimp.workdir.path(out, tfimp.workdir.CONFIG), config.to_json_best_effort(indent=2))

    # -- Outputs ------------------------------------------------------------
    plots.accuracy_vs_sparsity(rows, tfimp.workdir.path(out, tfimp.workdir.PLOT),
                               title=f"{config.method} {config.model} on {config.dataset}")
    pruned = bool(tfimp.wrapping.wrappers(runner.model)) and tfimp.sparsity(runner.model) > 0
    files = []
    if pruned and config.export_formats:
        check = next(iter(dataset.test))[0].numpy()
        calibration, _ = exports.take_examples(dataset.train, exports.REPRESENTATIVE_EXAMPLES)
        files = export.export(runner.model, tfimp.workdir.path(out, tfimp.workdir.EXPORT),
                              formats=config.export_formats.split(","), check_inputs=check,
                              representative_data=calibration,
                              test_data=exports.take_examples(dataset.test, max_bytes=exports.EVALUATION_BYTES))
    if pruned and slim_export.wanted(config):
        files = [*files, slim_export.write(runner.model, out, next(iter(dataset.test))[0].numpy()[:8], files)]
    if files:
        table = exports.write_sizes(out, files)
        say(f"[tfimp] exports (checked against the Keras model; test accuracy of each file, through its own "
            f"runtime, and of the float model):\n{table}", flush=True)
    if tfimp.wrapping.wrappers(runner.model):
        covered = tfimp.coverage.describe(runner.model)
        say(f"[tfimp] pruned {tfimp.sparsity(runner.model):.2%} of the {covered.prunable_parameters:,} prunable "
            f"weights, {covered.prunable_share:.1%} of the model's {covered.total_parameters:,} parameters; "
            f"zeros over all parameters {tfimp.sparsity(runner.model, over='all'):.2%}", flush=True)
        emptied = sorted({name for row in rows for name in row.get("emptied_layers") or []})
        if emptied:
            say(f"[tfimp] warning: layers left with no weight (layer collapse): {emptied}; "
                "--config.min_kept_per_layer keeps a minimum per layer", flush=True)
    final = tfimp.strip(runner.model) if tfimp.wrapping.wrappers(runner.model) else runner.model
    with tfimp.storage.local_file(tfimp.workdir.path(out, tfimp.workdir.STRIPPED_MODEL)) as local:
        final.save(local)
    tfimp.workdir.remove_worker_scratch(workdir, model.distribute_strategy)
    cycle_dirs = ", ".join(f"cycle_{c}/" for c in tfimp.workdir.cycles(workdir))
    say(f"[tfimp] results in {workdir}: {cycle_dirs} (tfimp.load_cycle), results.json, results.csv, "
          "accuracy_vs_sparsity.png, tensorboard/, model_stripped.keras", flush=True)
    return rows
