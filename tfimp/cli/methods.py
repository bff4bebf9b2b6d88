"""Experiment methods by name: ``config.method`` -> the runner that trains it (``RUNNERS``).

A method is a function ``fn(config, settings) -> runner`` registered under
its name; ``settings`` are the optimizer and data settings every runner
takes (:func:`runner_settings`). The runners are the ones of the process's
Keras (``tfimp.IMP`` is the tf_keras or the Keras 3 class, see
:mod:`tfimp.front_end`), so one registry serves both front ends. A new
method is one function and one ``RUNNERS.register`` line::

    @tfimp.methods.RUNNERS.register("imp_twice")
    def _imp_twice(config, settings):
        return tfimp.IMP(tfimp.Plan(config.target_sparsity, cycles=2 * config.cycles), **settings)
"""

from __future__ import annotations

from typing import Optional

import tfimp
from tfimp.core import during_training as _during
from tfimp.core import results as _results
from tfimp.core import storage as _storage
from tfimp.core import workdir as _workdir
from tfimp.core.registry import Registry

#: The built-in methods, in the order the CLI lists them.
METHODS = ("dense", "imp", "bimp", "oneshot", *_during.DURING_TRAINING)
#: Methods that prune while training (``tfimp.DuringTraining``, both front ends).
DURING_TRAINING = _during.DURING_TRAINING

#: ``method name -> fn(config, settings) -> runner``.
RUNNERS: Registry = Registry("method")


def known() -> list[str]:
    """Every registered method, the built-in ones first."""
    return list(METHODS) + sorted(set(RUNNERS.known()) - set(METHODS))


@RUNNERS.register("dense")
def _dense(config, settings):
    return tfimp.Dense(config.dense_epochs, **settings)


def during_training(config, settings, calibrated: Optional[dict] = None):
    """The ``tfimp.DuringTraining`` runner of ``config.method`` (``calibrated`` overrides the config's values)."""
    hyperparameters = {name: config[name] for name in _during.HYPERPARAMETERS.get(config.method, {})}
    options = {"str_init": config.str_init, "str_weight_decay": config.str_weight_decay, **hyperparameters,
               **(calibrated or {})}
    return tfimp.DuringTraining(config.method, config.target_sparsity, config.epochs, criterion=config.criterion,
                                begin_fraction=config.get("prune_begin_fraction"),
                                end_fraction=config.get("prune_end_fraction"),
                                frequency=config.prune_frequency or None, **options, **_structure_option(config),
                                **settings)


for _method in DURING_TRAINING:
    RUNNERS.register(_method, during_training)


def _structure_option(config) -> dict:
    """``structure=`` for a runner: only when the config sets one (configs older than the key have none)."""
    structure = config.get("structure", "unstructured")
    return {} if structure == "unstructured" else {"structure": structure}


def _plan_options(config) -> dict:
    return dict(criterion=config.criterion, optimizer_state=config.optimizer_state,
                allr_norm_drop=config.allr_norm_drop, recalibrate_bn=config.recalibrate_bn,
                min_kept_per_layer=config.min_kept_per_layer or None, **_structure_option(config))


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


def runner_settings(config) -> dict:
    """The optimizer and data settings every runner takes."""
    return dict(learning_rate=config.learning_rate, dense_schedule=config.dense_schedule,
                warmup_epochs=config.warmup_epochs, optimizer=config.optimizer, momentum=config.momentum,
                weight_decay=config.weight_decay, batch_size=config.batch_size, seed=config.seed,
                steps_per_execution=config.steps_per_execution, jit_compile=config.jit_compile,
                chance_guard=config.chance_guard)


def make_runner(config, settings: Optional[dict] = None):
    """The runner the config's method names (``RUNNERS``), with ``settings`` (default: :func:`runner_settings`)."""
    return RUNNERS.get(config.method)(config, runner_settings(config) if settings is None else settings)


def calibrated_runner(config, build_model, train, workdir: str, settings: dict, *, identity: dict,
                      overwrite: bool = False, chief: bool = True, say=print):
    """STR, CS or DST with its calibrated hyper-parameter bisected to reach ``target_sparsity``
    (``--config.calibrate=N``; :data:`tfimp.core.during_training.CALIBRATION` names which).

    Either front end's CLI: ``tfimp.baselines.calibrate`` and
    ``tfimp.DuringTraining`` are the process's Keras ones. The value found is
    written to ``workdir/calibration.json`` (by the ``chief``) with every
    run of the search before the run starts, so a resumed run reuses it (and
    keeps its identity) instead of calibrating again. With ``overwrite`` the
    previous run is removed first, so the calibration written next survives:
    the caller then runs the returned runner without ``overwrite``. A workdir
    that holds another run is left to the runner's own refusal, before any
    calibration run is spent on it.
    """
    if overwrite and chief:
        _workdir.remove_previous_run(workdir, config.verbose)
    if _workdir.holds_other_run(workdir, identity):
        return make_runner(config, settings)  # its claim names the differences
    calibration = _during.CALIBRATION.get(config.method)
    name = calibration.hyperparameter
    fixed = {key: config[key] for key in _during.HYPERPARAMETERS.get(config.method, {}) if key != name}
    if config.method == "str":
        fixed["str_init"] = config.str_init
    wanted = {"method": config.method, "target_sparsity": config.target_sparsity, "epochs": config.epochs,
              **fixed, "seed": config.seed, "max_runs": config.calibrate}
    stored = _storage.read_json(_workdir.path(workdir, _workdir.CALIBRATION))
    if stored is not None and {key: stored.get(key) for key in wanted} == wanted:
        value, reached = stored[name], stored["reached_sparsity"]
        say(f"[tfimp] {config.method} calibration from {_workdir.CALIBRATION}: {name} {value:.4g} "
            f"(reached {reached:.4f} when calibrated)", flush=True)
    else:
        say(f"[tfimp] calibrating {config.method}'s {name} to reach {config.target_sparsity} "
            f"(up to {config.calibrate} runs of {config.epochs} epochs)", flush=True)
        searched: list = []
        value, reached = tfimp.baselines.calibrate(
            config.method, build_model, train, config.target_sparsity, config.epochs,
            max_runs=config.calibrate, verbose=config.verbose, history=searched, **fixed, **settings)  # settings hold the seed
        if chief:
            _storage.makedirs(workdir)
            _storage.atomic_write_text(_workdir.path(workdir, _workdir.CALIBRATION), _results.to_json(
                {**wanted, "hyperparameter": name, name: value, "reached_sparsity": reached, "runs": searched}))
        say(f"[tfimp] {config.method} calibrated: {name} {value:.4g} reached {reached:.4f}", flush=True)
    keras = tfimp.keras_of_process()
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    runner = during_training(config, settings, calibrated={**fixed, name: value})
    runner.calibration = f"--config.calibrate={config.calibrate}, reached {reached:.4f}"
    return runner
