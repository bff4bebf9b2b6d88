"""keras-hub tasks built from configs (no preset, no network) under IMP: coverage, exact zeros, strip, reload."""

import json
import os
import socket
import sys

import keras
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import keras_hub_backbones  # noqa: E402

import tfimp  # noqa: E402

#: The only weight tables keras-hub keeps outside the layer types tfimp prunes: learned position embeddings
#: (and ViT's class token), a few hundred parameters here; `tfimp.coverage.register` would add them.
POSITION_TABLES = {"PositionEmbedding", "ViTPatchingAndEmbedding"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection attempt fails the test: keras-hub builds from a config without downloading anything."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# Gemma's embedding is used twice (input table and tied output layer): one wrapper, one mask, and strip
# must keep it tied. BERT's blocks hold their sublayers in private attributes.
#: All four on JAX; on the TensorFlow backend Gemma alone (tied embedding, the hardest case), to keep CI short.
ON_THIS_BACKEND = keras_hub_backbones.BACKBONES if keras.backend.backend() == "jax" else ("gemma",)


@pytest.mark.parametrize("name", ON_THIS_BACKEND)
def test_a_keras_hub_task_is_wrapped_pruned_exactly_stripped_to_its_class_and_reloaded(name, tmp_path):
    result = keras_hub_backbones.measure(name, size="tiny", target=0.9, cycles=2, examples=8, out=str(tmp_path))
    models = result["models"]
    task, wrapped, stripped, reloaded = models["task"], models["wrapped"], models["stripped"], models["reloaded"]
    # Coverage: nearly every parameter is under a mask; no weight matrix is left dense but position tables.
    assert result["prunable_share"] >= 0.9, result
    assert set(result["dense_matrices"]) <= POSITION_TABLES, result["dense_matrices"]
    # IMP: two cycles, ending at exactly round(0.9 * prunable) zeros under the masks (global magnitude).
    assert [row["cycle"] for row in result["rows"]] == [0, 1, 2]
    assert result["zeros_under_masks"] == result["exact_zeros"] == round(0.9 * result["prunable"])
    assert result["sparsity"] == result["zeros_under_masks"] / result["prunable"]
    # strip gives back the keras-hub class, holding exactly those zeros, computing what the wrapped model did.
    assert type(stripped) is type(task) and result["stripped_class"] == type(task).__name__
    assert not tfimp.keras3.masks.wrappers(stripped)
    assert tfimp.sparsity(wrapped) == result["sparsity"]  # strip left the wrapped model as it was
    assert result["stripped_zeros"] == result["zeros_under_masks"]
    assert result["max_diff_stripped"] <= 1e-5 and result["max_diff_reloaded"] == 0.0
    # The .keras file reloads as that class with the same weights.
    assert type(reloaded) is type(task)
    for saved, loaded in zip(stripped.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(saved, loaded)
    assert os.path.exists(tmp_path / f"{name}_tiny_stripped.keras")
    # The model passed in is untouched (wrap copies a functional model) and takes the stripped weights as they are.
    task.set_weights(stripped.get_weights())
    np.testing.assert_allclose(task.predict(models["inputs"], verbose=0), stripped.predict(models["inputs"], verbose=0),
                               atol=1e-6)


def test_a_tied_embedding_gets_one_mask_and_stays_tied_after_strip():
    task, _, _, _ = keras_hub_backbones.gemma("tiny", np.random.default_rng(0), 2)
    wrapped = tfimp.wrap(task, verbose=0)
    tables = [k for k in tfimp.keras3.masks.prunable_kernels(wrapped) if "token_embedding" in k.name]
    assert len(tables) == 1
    tfimp.prune(wrapped, 0.5)
    stripped = tfimp.strip(wrapped)
    assert type(stripped) is type(task) and len({id(v) for v in stripped.weights}) == len(task.weights)
    table = keras.ops.convert_to_numpy(stripped.backbone.token_embedding.embeddings.value)
    [mask] = [keras.ops.convert_to_numpy(k.mask.value) for k in tables]
    assert np.sum(mask == 0) > 0 and np.array_equal(table == 0, mask == 0)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the script's table is checked once, on JAX")
def test_the_benchmark_script_writes_its_table(tmp_path, capsys):
    results = keras_hub_backbones.main(["--backbones", "resnet", "--size", "tiny", "--cycles", "1",
                                        "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "keras_hub.json").read_text())
    assert saved["backend"] == keras.backend.backend()
    [row] = saved["results"]
    assert row["backbone"] == "resnet" and row["stripped_class"] == "ImageClassifier"
    assert row["zeros_under_masks"] == row["exact_zeros"] == results[0]["exact_zeros"]
    assert "ImageClassifier" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown keras-hub backbone 'resnet50'; known"):
        keras_hub_backbones.measure("resnet50")
