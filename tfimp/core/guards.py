"""Stops training that cannot succeed: a loss that is not finite, or one that stays at chance level.

A network whose training loss sits at ln(classes) through a whole epoch has
learned nothing: typically the first steps at too high a learning rate drove
the pre-activations of a layer without normalisation negative, its ReLU units
died, and only the output bias still learns (it converges to the class prior,
whose cross-entropy on balanced data is exactly ln(classes)). Pruning and
retraining such a model, writing its rows, plots and exports, would report a
failed run as a result, so the runners and the IMP callback stop it with
:class:`ChanceLevelError` unless the guard is turned off.

Framework-free: it reads the model's loss, outputs and the epoch's logs,
which both Keras have alike; each front end calls :func:`check_epoch` from
its callbacks.
"""

from __future__ import annotations

import math
from typing import Optional


#: The loss is "at chance" when it is within this fraction of ln(classes).
CHANCE_TOLERANCE = 0.002
#: ...and the training accuracy, when it is logged, is below this multiple of 1/classes.
CHANCE_ACCURACY_FACTOR = 1.5

_CROSSENTROPY_NAMES = ("sparse_categorical_crossentropy", "categorical_crossentropy")
_CROSSENTROPY_CLASSES = ("SparseCategoricalCrossentropy", "CategoricalCrossentropy")


class ChanceLevelError(RuntimeError):
    """The training loss stayed at ln(classes) for a whole epoch: the network learned nothing."""


def _is_crossentropy(loss) -> bool:
    # By class name, so that both Keras' loss classes (tf_keras and Keras 3) are recognised without importing either.
    if any(klass.__name__ in _CROSSENTROPY_CLASSES for klass in type(loss).__mro__):
        return True
    name = loss if isinstance(loss, str) else getattr(loss, "__name__", "")
    return name in _CROSSENTROPY_NAMES


def classes(model) -> Optional[int]:
    """The number of classes of a classifier trained with a categorical cross-entropy, else ``None``."""
    if not _is_crossentropy(getattr(model, "loss", None)):
        return None
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        return None
    count = outputs[0].shape[-1]
    return int(count) if count is not None and int(count) >= 2 else None


def at_chance(model, logs: dict) -> Optional[float]:
    """ln(classes) when the epoch's ``logs`` show a loss at chance level, else ``None``."""
    count = classes(model)
    loss = (logs or {}).get("loss")
    if count is None or loss is None or not math.isfinite(float(loss)):
        return None
    chance = math.log(count)
    if abs(float(loss) - chance) > CHANCE_TOLERANCE * chance:
        return None
    accuracy = next((float(v) for k, v in (logs or {}).items() if k in ("accuracy", "acc", "sparse_categorical_accuracy")),
                    None)
    if accuracy is not None and accuracy >= CHANCE_ACCURACY_FACTOR / count:
        return None
    return chance


def check_epoch(model, logs: dict, epoch: int, where: str = "") -> None:
    """Raises :class:`ChanceLevelError` when epoch ``epoch``'s training loss sat at chance level."""
    chance = at_chance(model, logs)
    if chance is None:
        return
    model.stop_training = True
    raise ChanceLevelError(
        f"the training loss stayed at chance level through epoch {epoch + 1}{where}: {float(logs['loss']):.4f} "
        f"against ln({classes(model)}) = {chance:.4f}; the network has learned nothing, and pruning it would too. "
        "Likely causes: a learning rate too high for this model (the loss spikes in the first steps and the "
        "ReLU units of a layer without normalisation die), no warm-up, or labels that do not match the inputs. "
        "Lower the learning rate or add warmup_epochs; turn this check off with chance_guard=False "
        "(CLI: --config.chance_guard=False).")
