"""The config keys every experiment has, with their defaults.

Config files (``configs/*.py``) start from :func:`base` and change what
their experiment needs; the CLI locks the config, so a misspelt
``--config.KEY`` is an error that names it.
"""

from __future__ import annotations

from typing import Callable

from tfimp.core import extras
from tfimp.cli import methods
from tfimp.core import criteria, datasets, during_training, plan, retraining, schedules, structures

ml_collections = extras.require("ml_collections", "tfimp's experiment configs")

#: ``config.keras``: 2 = the tf_keras front end (tfmot), 3 = Keras 3 on the backend ``KERAS_BACKEND`` names.
KERAS_VERSIONS = (2, 3)


def base() -> ml_collections.ConfigDict:
    """A config with every key the CLI reads."""
    config = ml_collections.ConfigDict()
    # Front end
    config.keras = 2                      # 2: tf_keras + tfmot; 3: Keras 3 (backend from KERAS_BACKEND: jax, tensorflow, torch)
    # Data
    config.dataset = "fashion_mnist"      # mnist, fashion_mnist, cifar10, cifar100, imagenet2012
    config.data_dir = ""                  # idx files or a tfds data_dir; "" = defaults
    config.validation_fraction = 0.1      # seeded split of the official training set (0 = none)
    config.train_subset = 0               # use only the first N training examples (0 = all)
    config.test_subset = 0                # use only the first N test examples (0 = all)
    config.augmentation = ""              # "" = the dataset's default; none, crop_flip, crop_flip_rotate, imagenet
    config.batch_size = 128
    # Model
    config.model = "small_cnn"
    # Method
    config.method = "imp"                 # dense, imp, bimp, oneshot, gmp, tfmot_gmp, dpf, str, dnw, lc, gsm, cs, dst
    config.target_sparsity = 0.9
    config.cycles = 3
    config.criterion = "global"           # global, uniform, uniform_plus, erk, lamp
    config.dense_epochs = 10              # T (IMP) or T_d (BIMP)
    config.retrain_epochs = 2             # per cycle (imp, oneshot)
    config.epochs = 0                     # the whole budget (bimp and the during-training methods)
    config.retrain_schedule = "slr"       # ft, lrw, slr, clr, llr, allr
    config.original_epochs = ml_collections.config_dict.placeholder(int)  # T when dense_epochs = 0
    config.optimizer_state = "fresh_then_keep"
    config.allr_norm_drop = "since_dense"  # ALLR's d: since_dense (authors' later code) or this_cycle
    config.recalibrate_bn = True          # re-estimate BatchNorm statistics after each pruning (authors' runs)
    config.min_kept_per_layer = 0.0       # guard against layer collapse: keep >= N weights (>= 1) or a fraction (< 1); 0 = off
    config.structure = "unstructured"     # unstructured, N:M (2:4; target 1 - N/M), block:RxC (block:1x4), channels(:l1)
    # Pruning during training (gmp, tfmot_gmp, dpf, str, dnw, lc, gsm, cs, dst)
    # The cubic ramp starts at this fraction of the budget and reaches target_sparsity at the end fraction;
    # unset = the method's default (GMP 0.1 to 0.75; DPF 0 to one epoch before the end; DNW the target from step 0).
    config.prune_begin_fraction = ml_collections.config_dict.placeholder(float)
    config.prune_end_fraction = ml_collections.config_dict.placeholder(float)
    config.prune_frequency = 0            # steps between mask updates; 0 = method default (DPF 16; GMP >= 30 on the ramp)
    config.str_init = -5.0                # STR: initial threshold parameter, threshold = sigmoid(str_init)
    config.str_weight_decay = 0.0         # STR: extra L2 on the threshold parameters
    config.cs_init = 0.0                  # CS: the scores' start s_init (gates sigmoid(beta s) / sigmoid(s_init) start at 1)
    config.cs_lambda = 5e-6               # CS: penalty lambda * sum(sigmoid(beta s)); more means sparser
    config.cs_beta_final = 200.0          # CS: the temperature at the end (beta = beta_final ** (t / T))
    config.dst_alpha = 1.5e-3             # DST: penalty alpha * sum(exp(-t)) on the thresholds; more means sparser
    config.calibrate = 0                  # STR/CS/DST: bisect the penalty over N full runs to hit the target; 0 = off
    # Optimisation
    config.learning_rate = 0.1
    config.dense_schedule = "step"        # step (x0.1 at 50%, 75%), cosine, linear, constant
    config.warmup_epochs = 0
    config.optimizer = "torch_sgd"        # torch_sgd (coupled L2, as the authors' PyTorch runs), keras_sgd_decoupled
    config.momentum = 0.9
    config.weight_decay = 5e-4
    # Devices (config.batch_size is the global batch: each of N replicas gets batch_size / N per step)
    config.strategy = "default"           # default (one device), mirrored (local GPUs), multi_worker (TF_CONFIG), tpu
    config.tpu = ""                       # TPU name or grpc:// address for strategy=tpu; "" = $TPU_NAME, else local
    config.mixed_precision = False        # mixed_float16: float16 compute, float32 weights and masks
    config.jit_compile = False            # XLA-compile the training step
    config.steps_per_execution = 1        # training steps per call of the compiled function
    # Run
    config.seed = 0
    config.chance_guard = True            # stop a run whose training loss sits at ln(classes) for a whole epoch
    config.verbose = 1
    config.log_every_steps = 100          # TensorBoard step-level logging
    config.export_formats = "keras,savedmodel,tflite"  # also: tflite_dynamic, tflite_int8 (onnx: Keras 3); "" = none
    return config


#: Keys that cannot change a run's results: left out of the workdir's identity, so changing them resumes.
NOT_IDENTITY = ("verbose", "log_every_steps", "export_formats", "data_dir", "tpu", "steps_per_execution",
                "chance_guard")


def identity(config: ml_collections.ConfigDict) -> dict:
    """The part of ``config`` that defines a run: everything but :data:`NOT_IDENTITY`, the hyper-parameters of the
    methods it does not run (changing CS's penalty does not change an IMP run), ``calibrate`` when off and
    ``structure`` when it is the default (so runs written before these keys existed keep their identity)."""
    others = {name for method, names in during_training.HYPERPARAMETERS.items() if method != config.get("method")
              for name in names}
    return {key: value for key, value in config.to_dict().items()
            if key not in NOT_IDENTITY and key not in others and not (key == "calibrate" and not value)
            and not (key == "structure" and value == structures.UNSTRUCTURED)}


#: Keys with a fixed set of values that every front end shares (the method's, model's, dataset's,
#: optimizer's and criterion's are checked by name in :func:`check`; a front end checks its own keys).
_CHOICES = {
    "keras": KERAS_VERSIONS,
    "dense_schedule": schedules.DENSE_SCHEDULES,
    "optimizer_state": plan.OPTIMIZER_STATES,
    "allr_norm_drop": plan.ALLR_NORM_DROPS,
    "augmentation": ("",) + datasets.AUGMENTATIONS,
    "verbose": (0, 1, 2),
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
    "calibrate": (lambda v: v >= 0, ">= 0 (0 = off)"),
    **{name: during_training.HYPERPARAMETER_CHECKS[name] for names in during_training.HYPERPARAMETERS.values() for name in names},
}


def check(config: ml_collections.ConfigDict, *, models: list[str], optimizers: list[str]) -> None:
    """Fails before any work on a config that cannot run, on the keys every front end shares.

    Args:
      config: the experiment's config.
      models, optimizers: the names the front end knows (methods: :mod:`tfimp.methods`).

    Raises:
      ValueError: an unknown method, dataset, model, criterion, schedule,
        optimizer, augmentation or structure, a structure the method or the
        target cannot take, or a number out of range; the message names the
        key and what is allowed.
    """
    if config.method not in methods.RUNNERS:
        raise ValueError(f"config.method={config.method!r} is unknown; known methods: {methods.known()}")
    datasets.spec(config.dataset)
    if config.optimizer not in optimizers:
        raise ValueError(f"config.optimizer={config.optimizer!r} is unknown; known: {optimizers}")
    if config.model not in models:
        raise ValueError(f"config.model={config.model!r} is unknown; known models: {models}")
    if config.method != "dense":
        criteria.get(config.criterion)
        if config.method in ("imp", "oneshot"):
            retraining.check_name(config.retrain_schedule)
    if config.get("calibrate_str") is not None:
        raise ValueError("config.calibrate_str was replaced by config.calibrate (STR, CS and DST): "
                         f"set --config.calibrate={config.calibrate_str} instead")
    if config.get("calibrate") and config.method not in during_training.CALIBRATION:
        raise ValueError(f"config.calibrate={config.calibrate} applies to {during_training.CALIBRATION.known()}, which reach "
                         f"their own sparsity; method {config.method!r} ends at its target by construction")
    if config.method in methods.DURING_TRAINING + ("bimp",) and config.epochs < 1:
        raise ValueError(f"config.epochs (the whole budget) must be >= 1 for method {config.method!r}, "
                         f"got {config.epochs}")
    for key in ("batch_size", "retrain_epochs", "cycles", "log_every_steps", "steps_per_execution"):
        if config.get(key) is not None and config[key] < 1:
            raise ValueError(f"config.{key} must be >= 1, got {config[key]}")
    for key, allowed in _CHOICES.items():
        if config[key] not in allowed:
            raise ValueError(f"config.{key}={config[key]!r} is unknown; known: {list(allowed)}")
    for key, (in_range, allowed) in _RANGES.items():
        if key == "target_sparsity" and config.method == "dense":
            continue  # dense training has no target
        if config.get(key) is not None and not in_range(config[key]):
            raise ValueError(f"config.{key}={config[key]!r} is out of range; allowed: {allowed}")
    _check_structure(config)


def _takes_structure(method: str) -> bool:
    """Whether a method prunes with tfimp's selection, so that ``config.structure`` reaches it."""
    if method == "dense":
        return False
    if method in during_training.RULES:
        return during_training.takes_structure(method)
    return True  # imp, bimp, oneshot and methods registered by users (which read the config themselves)


def _check_structure(config: ml_collections.ConfigDict) -> None:
    """``config.structure``: a name :mod:`tfimp.core.structures` parses, that the method and the target can take."""
    structure = config.get("structure", structures.UNSTRUCTURED)
    try:
        form = structures.get(structure)
    except (TypeError, ValueError) as error:
        raise ValueError(f"config.structure={structure!r}: {error}") from None
    if not form.structured:
        return
    if not _takes_structure(config.method):
        raise ValueError(f"config.structure={structure!r} cannot apply to method {config.method!r}, which "
                         "does not prune with tfimp's selection; methods that take a structure: "
                         f"{[name for name in methods.known() if _takes_structure(name)]}")
    try:
        structures.check_target(form, config.target_sparsity)
    except ValueError as error:
        raise ValueError(f"config.structure={structure!r} with config.target_sparsity="
                         f"{config.target_sparsity!r}: {error}") from None


def printer(config: ml_collections.ConfigDict) -> Callable[..., None]:
    """``print`` with ``config.verbose``, else nothing: verbose governs everything the CLI prints."""
    return print if config.verbose else (lambda *args, **kwargs: None)
