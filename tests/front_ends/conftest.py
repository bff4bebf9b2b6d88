"""The suite of behaviour both front ends share: each test runs once per front end, through the public names.

``python -m pytest tests`` runs it on tf_keras; ``TFIMP_TEST_KERAS=3
KERAS_BACKEND=... python -m pytest tests/keras3 tests/front_ends`` on Keras 3
with that backend. The ``front_end`` fixture gives the test its Keras, small
models and data, and the names of the files the front end writes.
"""

import dataclasses
import os

import numpy as np
import pytest

KERAS3 = os.environ.get("TFIMP_TEST_KERAS") == "3"

if KERAS3:
    import keras

    from tfimp.core import workdir as _layout

    @pytest.fixture(autouse=True)
    def _fresh_keras3_session():
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        yield
else:
    from tfimp import keras
    from tfimp.core import workdir as _layout


@dataclasses.dataclass
class FrontEnd:
    """What a shared test needs to know of the front end it runs on."""

    name: str
    keras: object
    cycle_weights: str

    def mlp(self, inputs: int = 20, classes: int = 4, hidden: int = 16):
        keras = self.keras
        return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(hidden, activation="relu", name="fc1"),
                                 keras.layers.Dense(classes, name="fc2")], name="mlp")

    @staticmethod
    def data(n: int = 64, inputs: int = 20, classes: int = 4, seed: int = 0):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, inputs)).astype("float32")
        return x, x[:, :classes].argmax(1).astype("int32")

    def numpy(self, value) -> np.ndarray:
        return np.asarray(self.keras.ops.convert_to_numpy(value) if KERAS3 else value)

    def apply_gradients(self, optimizer, grads, variables) -> None:
        """One optimizer update with the given gradients."""
        if KERAS3:
            optimizer.apply(grads, variables)
        else:
            optimizer.apply_gradients(zip(grads, variables))

    def kernels(self, model) -> list[tuple[np.ndarray, np.ndarray]]:
        """(dense weight, mask) of every prunable kernel, as numpy, read mid-``fit`` too."""
        if KERAS3:
            from tfimp.keras3 import masks

            getattr(model, "jax_state_sync", lambda: None)()  # JAX: the running fit's values into the variables
            return [(self.numpy(k.weight.value), self.numpy(k.mask.value)) for k in masks.prunable_kernels(model)]
        from tfimp import wrapping

        return [(k.weight.numpy(), k.mask.numpy()) for k in wrapping.prunable_kernels(model)]


    def reparam_wrap(self, model, reparam: str, **options):
        """``model`` wrapped with the front end's reparametrised wrapper (``options``: the wrapper's arguments)."""
        if KERAS3:
            from tfimp.keras3 import masks
            from tfimp.keras3.wrapper import ReparamMaskedLayer

            return masks.wrap(model, wrapper=lambda layer, paths: ReparamMaskedLayer(layer, paths, reparam=reparam,
                                                                                      **options), verbose=0)
        from tfimp import wrapping
        from tfimp.tf_keras.tfmot_glue import ReparamPruneLowMagnitude

        return wrapping.wrap(model, wrapper=lambda layer: ReparamPruneLowMagnitude(layer, reparam=reparam, **options))

    def reparam_wrappers(self, model) -> list:
        """The reparametrised wrappers of ``model``."""
        if KERAS3:
            from tfimp.keras3 import masks
            from tfimp.keras3.wrapper import ReparamMaskedLayer

            return [w for _, w in masks.wrappers(model) if isinstance(w, ReparamMaskedLayer)]
        from tfimp import wrapping
        from tfimp.tf_keras.tfmot_glue import ReparamPruneLowMagnitude

        return [w for _, w in wrapping.wrappers(model) if isinstance(w, ReparamPruneLowMagnitude)]

    def finalize(self, wrapper) -> None:
        wrapper.finalize()


@pytest.fixture
def front_end() -> FrontEnd:
    if KERAS3:
        return FrontEnd(f"keras3-{keras.backend.backend()}", keras, _layout.KERAS3_WEIGHTS)
    return FrontEnd("tf_keras", keras, _layout.CYCLE_WEIGHTS)
