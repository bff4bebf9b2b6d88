"""The tfimp command line: one experiment from a config file.

    python -m tfimp.main --config=configs/fashion_mnist_imp.py --workdir=runs/fmnist [--config.KEY=VALUE ...]
    tfimp --config=configs/cifar10_resnet56_imp.py --workdir=runs/r56 --config.data_dir=/data/tfds

Methods (``--config.method``): ``dense``, ``imp``, ``bimp``, ``oneshot``, and the
pruning-during-training baselines ``gmp``, ``tfmot_gmp``, ``dpf``, ``str``.
Rerunning with the same workdir resumes; a workdir of a run with any other
config value (but ``verbose``, ``log_every_steps``, ``export_formats`` and
``data_dir``) is refused, naming each difference, unless ``--overwrite``,
which removes the previous run first. The layout of the workdir is described
in :mod:`tfimp.workdir`: ``identity.json`` and ``config.json``, one
``cycle_N/`` per finished cycle (weights and masks, architecture, row and
model report; ``tfimp.load_cycle``), ``results.json``, ``results.csv``,
``accuracy_vs_sparsity.png``, TensorBoard logs in ``tensorboard/``
(``tensorboard --logdir WORKDIR/tensorboard``; per-cycle scalars and per-layer
sparsity under ``tensorboard/cycles``), checked exports and their size table
in ``export/``, and the final stripped model ``model_stripped.keras``.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Optional

from absl import app, flags, logging

from tfimp import extras

config_flags = extras.require("ml_collections.config_flags", "the tfimp command line")
extras.require("tensorboard", "the tfimp command line's TensorBoard logs")

import tfimp  # noqa: E402  (after the check above, which names the missing extra)
from tfimp import checkpoint, data, export, models, plots, report  # noqa: E402
from tfimp import config as tfimp_config  # noqa: E402
from tfimp._backend import keras  # noqa: E402
from tfimp.core.registry import Registry  # noqa: E402

METHODS = ("dense", "imp", "bimp", "oneshot", "gmp", "tfmot_gmp", "dpf", "str")
DURING_TRAINING = ("gmp", "tfmot_gmp", "dpf", "str")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Remove the run the workdir holds, whatever it is, and start over.")


#: Keys with a fixed set of values (the method's, model's, dataset's and optimizer's are checked by name above).
_CHOICES = {
    "dense_schedule": tfimp.imp.DENSE_SCHEDULES,
    "optimizer_state": tfimp.plan.OPTIMIZER_STATES,
    "allr_norm_drop": tfimp.plan.ALLR_NORM_DROPS,
    "augmentation": ("",) + data.AUGMENTATIONS,
    "verbose": (0, 1, 2),
    "strategy": tfimp.distribute.STRATEGIES,
}
#: Numeric keys: (check, what is allowed).
_RANGES = {
    "target_sparsity": (lambda v: 0.0 < v < 1.0, "0 < value < 1"),
    "learning_rate": (lambda v: v > 0.0, "> 0"),
    "momentum": (lambda v: 0.0 <= v < 1.0, "0 <= value < 1"),
    "weight_decay": (lambda v: v >= 0.0, ">= 0"),
    "validation_fraction": (lambda v: 0.0 <= v < 1.0, "0 <= value < 1"),
    "train_subset": (lambda v: v >= 0, ">= 0 (0 = all)"),
    "test_subset": (lambda v: v >= 0, ">= 0 (0 = all)"),
    "dense_epochs": (lambda v: v >= 0, ">= 0"),
    "warmup_epochs": (lambda v: v >= 0, ">= 0"),
    "prune_frequency": (lambda v: v >= 0, ">= 0 (0 = the method's default)"),
    "prune_begin_fraction": (lambda v: 0.0 <= v <= 1.0, "0 <= value <= 1"),
    "prune_end_fraction": (lambda v: 0.0 <= v <= 1.0, "0 <= value <= 1"),
    "str_weight_decay": (lambda v: v >= 0.0, ">= 0"),
    "calibrate_str": (lambda v: v >= 0, ">= 0 (0 = off)"),
}


def check_config(config) -> None:
    """Fails before any work on a config that cannot run.

    Every key with a fixed set of values or a range is checked here, before
    any data is read.

    Raises:
      ValueError: an unknown method, dataset, model, criterion, schedule,
        optimizer, augmentation or export format, or a number out of range;
        the message names the key and what is allowed.
    """
    if config.method not in RUNNERS:
        known = list(METHODS) + sorted(set(RUNNERS.known()) - set(METHODS))  # the built-in ones first
        raise ValueError(f"config.method={config.method!r} is unknown; known methods: {known}")
    data.spec(config.dataset)
    if config.optimizer not in tfimp.optimizers.known():
        raise ValueError(f"config.optimizer={config.optimizer!r} is unknown; known: {tfimp.optimizers.known()}")
    if config.model not in models.known():
        raise ValueError(f"config.model={config.model!r} is unknown; known models: {models.known()}")
    if config.method != "dense":
        tfimp.criteria.get(config.criterion)
        if config.method in ("imp", "oneshot"):
            tfimp.lr.check_name(config.retrain_schedule)
    if config.method in DURING_TRAINING + ("bimp",) and config.epochs < 1:
        raise ValueError(f"config.epochs (the whole budget) must be >= 1 for method {config.method!r}, "
                         f"got {config.epochs}")
    for key in ("batch_size", "retrain_epochs", "cycles", "log_every_steps", "steps_per_execution"):
        if config.get(key) is not None and config[key] < 1:
            raise ValueError(f"config.{key} must be >= 1, got {config[key]}")
    for key, allowed in _CHOICES.items():
        if config[key] not in allowed:
            raise ValueError(f"config.{key}={config[key]!r} is unknown; known: {list(allowed)}")
    for key, (check, allowed) in _RANGES.items():
        if key == "target_sparsity" and config.method == "dense":
            continue  # dense training has no target
        if config.get(key) is not None and not check(config[key]):
            raise ValueError(f"config.{key}={config[key]!r} is out of range; allowed: {allowed}")
    formats = [f for f in config.export_formats.split(",") if f] if config.export_formats else []
    unknown = [f for f in formats if f not in export.FORMATS]
    if unknown:
        raise ValueError(f"config.export_formats has unknown format(s) {unknown}; known: {list(export.FORMATS)} "
                         "(comma-separated; \"\" for none)")


def check_model_fits_data(model: keras.Model, spec: data.DatasetSpec) -> None:
    """Raises ValueError when the built model's output does not match the dataset's classes."""
    outputs = model.output_shape[-1]
    if outputs != spec.num_classes:
        raise ValueError(f"model {model.name!r} has {outputs} outputs, dataset {spec.name!r} has {spec.num_classes} classes")


#: ``method name -> fn(config, settings) -> runner``; ``settings`` are the optimizer and data settings.
RUNNERS: Registry = Registry("method")


@RUNNERS.register("dense")
def _dense(config, settings):
    return tfimp.Dense(config.dense_epochs, **settings)


def _during_training(config, settings, str_weight_decay: Optional[float] = None):
    return tfimp.DuringTraining(config.method, config.target_sparsity, config.epochs, criterion=config.criterion,
                                begin_fraction=config.get("prune_begin_fraction"),
                                end_fraction=config.get("prune_end_fraction"),
                                frequency=config.prune_frequency or None, str_init=config.str_init,
                                str_weight_decay=config.str_weight_decay if str_weight_decay is None
                                else str_weight_decay, **settings)


for _method in DURING_TRAINING:
    RUNNERS.register(_method, _during_training)


def _plan_options(config) -> dict:
    return dict(criterion=config.criterion, optimizer_state=config.optimizer_state,
                allr_norm_drop=config.allr_norm_drop, recalibrate_bn=config.recalibrate_bn,
                min_kept_per_layer=config.min_kept_per_layer or None)


@RUNNERS.register("bimp")
def _bimp(config, settings):
    return tfimp.IMP.bimp(config.target_sparsity, config.cycles, total_epochs=config.epochs,
                          dense_epochs=config.dense_epochs, **_plan_options(config),
                          **{**settings, "dense_schedule": "linear"})


def _imp(config, settings, cycles: int):
    plan = tfimp.Plan(target_sparsity=config.target_sparsity, cycles=cycles, dense_epochs=config.dense_epochs,
                      retrain_epochs=config.retrain_epochs, retrain_schedule=config.retrain_schedule,
                      original_epochs=config.get("original_epochs"), **_plan_options(config))
    return tfimp.IMP(plan, **settings)


RUNNERS.register("imp", lambda config, settings: _imp(config, settings, config.cycles))
RUNNERS.register("oneshot", lambda config, settings: _imp(config, settings, 1))


def _settings(config) -> dict:
    """The optimizer and data settings every runner takes."""
    return dict(learning_rate=config.learning_rate, dense_schedule=config.dense_schedule,
                    warmup_epochs=config.warmup_epochs, optimizer=config.optimizer, momentum=config.momentum,
                    weight_decay=config.weight_decay, batch_size=config.batch_size, seed=config.seed,
                    steps_per_execution=config.steps_per_execution, jit_compile=config.jit_compile,
                    chance_guard=config.chance_guard)


def make_runner(config):
    """The runner the config's method names (``RUNNERS``), with the config's optimizer and data settings."""
    return RUNNERS.get(config.method)(config, _settings(config))


def _calibrated_str_runner(config, build_model, train, workdir: str):
    """STR with ``str_weight_decay`` bisected to reach ``target_sparsity`` (``--config.calibrate_str=N``).

    The decay found is written to ``workdir/str_calibration.json`` before the
    run starts, so a resumed run reuses it (and keeps its identity) instead of
    calibrating again. A workdir that holds another run is left to the
    runner's own refusal, before any calibration run is spent on it.
    """
    say = _printer(config)
    settings = _settings(config)
    if tfimp.workdir.holds_other_run(workdir, tfimp_config.identity(config)):
        return make_runner(config)  # its claim names the differences
    wanted = {"target_sparsity": config.target_sparsity, "epochs": config.epochs, "str_init": config.str_init,
              "seed": config.seed, "max_runs": config.calibrate_str}
    stored = tfimp.workdir.read_json(tfimp.workdir.path(workdir, tfimp.workdir.STR_CALIBRATION))
    if stored is not None and {key: stored.get(key) for key in wanted} == wanted:
        decay, reached = stored["str_weight_decay"], stored["reached_sparsity"]
        say(f"[tfimp] STR calibration from {tfimp.workdir.STR_CALIBRATION}: str_weight_decay {decay:.4g} "
            f"(reached {reached:.4f} when calibrated)", flush=True)
    else:
        say(f"[tfimp] calibrating STR's str_weight_decay to reach {config.target_sparsity} "
            f"(up to {config.calibrate_str} runs of {config.epochs} epochs)", flush=True)
        decay, reached = tfimp.baselines.calibrate_str(
            build_model, train, config.target_sparsity, config.epochs, str_init=config.str_init,
            max_runs=config.calibrate_str, verbose=config.verbose, **settings)  # settings hold the seed
        if tfimp.workdir.is_chief():
            tfimp.workdir.makedirs(workdir)
            checkpoint.atomic_write_text(tfimp.workdir.path(workdir, tfimp.workdir.STR_CALIBRATION),
                                         checkpoint.to_json({**wanted, "str_weight_decay": decay,
                                                             "reached_sparsity": reached}))
        say(f"[tfimp] STR calibrated: str_weight_decay {decay:.4g} reached {reached:.4f}", flush=True)
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    runner = _during_training(config, settings, str_weight_decay=decay)
    runner.calibration = f"--config.calibrate_str={config.calibrate_str}, reached {reached:.4f}"
    return runner


def _printer(config):
    """``print`` with ``config.verbose``, else nothing: verbose governs everything the CLI prints."""
    return print if config.verbose else (lambda *args, **kwargs: None)


def run(config, workdir: str, overwrite: bool = False) -> list[dict]:
    """Runs the experiment ``config`` into ``workdir``; returns the per-cycle rows."""
    # -- Check everything that can be checked before touching data ----------
    check_config(config)
    runner = make_runner(config)
    say = _printer(config)
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
            return _float32_outputs(built) if config.mixed_precision else built

    try:
        with tfimp.workdir.Locked(workdir, config.verbose):
            if config.method == "str" and config.calibrate_str:
                if overwrite:  # the previous run goes first, so the calibration written next survives
                    if tfimp.workdir.is_chief():
                        tfimp.workdir.remove_previous_run(workdir, config.verbose)
                    overwrite = False
                runner = _calibrated_str_runner(config, build_model, dataset.train, workdir)
            model = build_model()
            check_model_fits_data(model, dataset.spec)
            # -- Train (resumable) --------------------------------------------
            return _train_and_export(config, runner, model, dataset, workdir, overwrite)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _float32_outputs(model: keras.Model) -> keras.Model:
    """The model with float32 logits (Keras' advice for mixed precision: a float16 softmax/loss loses accuracy)."""
    outputs = keras.layers.Activation("linear", dtype="float32", name="float32_logits")(model.output)
    return keras.Model(model.input, outputs, name=model.name)


def _train_and_export(config, runner, model, dataset, workdir: str, overwrite: bool) -> list[dict]:
    """Trains, then writes the outputs; on a multi-worker job's other workers into their scratch, removed after.

    Every worker writes the outputs (stripping and saving read variables that are all-reduced across workers);
    only the chief's land in ``workdir``.
    """
    say = _printer(config)
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
    pruned = bool(tfimp.tfmot_glue.wrappers(runner.model)) and tfimp.sparsity(runner.model) > 0
    if pruned and config.export_formats:
        check = next(iter(dataset.test))[0].numpy()
        files = export.export(runner.model, tfimp.workdir.path(out, tfimp.workdir.EXPORT),
                              formats=config.export_formats.split(","), check_inputs=check)
        table = export.size_table(files)
        checkpoint.atomic_write_text(tfimp.workdir.path(out, tfimp.workdir.EXPORT_SIZES_TXT), table + "\n")
        checkpoint.atomic_write_text(tfimp.workdir.path(out, tfimp.workdir.EXPORT_SIZES_JSON),
                                     checkpoint.to_json([dataclasses.asdict(f) for f in files]))
        say(f"[tfimp] exports (checked against the Keras model):\n{table}", flush=True)
    if tfimp.tfmot_glue.wrappers(runner.model):
        covered = tfimp.coverage.describe(runner.model)
        say(f"[tfimp] pruned {tfimp.sparsity(runner.model):.2%} of the {covered.prunable_parameters:,} prunable "
            f"weights, {covered.prunable_share:.1%} of the model's {covered.total_parameters:,} parameters; "
            f"zeros over all parameters {tfimp.sparsity(runner.model, over='all'):.2%}", flush=True)
        emptied = sorted({name for row in rows for name in row.get("emptied_layers") or []})
        if emptied:
            say(f"[tfimp] warning: layers left with no weight (layer collapse): {emptied}; "
                "--config.min_kept_per_layer keeps a minimum per layer", flush=True)
    final = tfimp.strip(runner.model) if tfimp.tfmot_glue.wrappers(runner.model) else runner.model
    with tfimp.storage.local_file(tfimp.workdir.path(out, tfimp.workdir.STRIPPED_MODEL)) as local:
        final.save(local)
    tfimp.workdir.remove_worker_scratch(workdir, model.distribute_strategy)
    cycle_dirs = ", ".join(f"cycle_{c}/" for c in tfimp.workdir.cycles(workdir))
    say(f"[tfimp] results in {workdir}: {cycle_dirs} (tfimp.load_cycle), results.json, results.csv, "
          "accuracy_vs_sparsity.png, tensorboard/, model_stripped.keras", flush=True)
    return rows


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None or not _WORKDIR.value:
        raise app.UsageError("--config and --workdir are required")
    if not flags.FLAGS["verbosity"].present:  # TensorFlow's INFO lines would drown the progress bars
        logging.set_verbosity(logging.WARNING)
    try:
        run(_CONFIG.value, _WORKDIR.value, _OVERWRITE.value)
    except (ValueError, data.DataUnavailableError, tfimp.workdir.WorkdirInUse) as error:
        print(f"tfimp: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


def console_main() -> None:
    """Entry point of the ``tfimp`` console script."""
    app.run(main)


if __name__ == "__main__":
    console_main()
