"""The public names the README and the issues promise, and the README's five-line example."""

import numpy as np
import pytest

import tfimp

import helpers

PUBLIC = ["wrap", "prune", "sparsity", "layer_sparsity", "strip", "load_model", "keras", "tf", "IMP", "Plan",
          "Dense", "DuringTraining", "criteria.register", "criteria.known", "lr.retrain_schedule",
          "lr.allr_initial_lr", "lr.register", "callbacks.IMP", "models.build", "models.register", "data.load",
          "baselines.GradualPruning", "baselines.calibrate_str", "baselines.calibrate", "baselines.auto_frequency",
          "optimizers.TorchSGD", "optimizers.make", "optimizers.known", "batchnorm.reestimate",
          "coverage.KINDS", "coverage.register", "coverage.describe", "guards.ChanceLevelError",
          "pruning.emptied_layers"]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_exists(name):
    value = tfimp
    for part in name.split("."):
        value = getattr(value, part)
    assert value is not None


def test_readme_five_lines(tmp_path):
    x, y = helpers.random_data(64)
    model = helpers.small_cnn()
    model = tfimp.wrap(model)
    model.compile(tfimp.keras.optimizers.SGD(0.05, momentum=0.9),
                  tfimp.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, verbose=0)  # train first
    tfimp.prune(model, 0.9, criterion="global")
    model.fit(x, y, epochs=2, verbose=0)  # retrain
    tfimp.strip(model).save(str(tmp_path / "sparse.keras"))
    loaded = tfimp.keras.models.load_model(str(tmp_path / "sparse.keras"))
    assert tfimp.sparsity(loaded) == helpers.exact_sparsity(loaded, 0.9)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_the_explicit_form_names_the_tf_keras_front_end():
    from tfimp.tf_keras import IMP, Plan, keras, load_cycle, prune, strip, wrap
    from tfimp.tf_keras import pruning, wrapping

    assert (wrap, strip, prune) == (wrapping.wrap, wrapping.strip, pruning.prune)
    assert IMP is tfimp.IMP and keras is tfimp.keras and Plan is tfimp.Plan and callable(load_cycle)
