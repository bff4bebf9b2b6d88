"""The ``# keras3: <backend>`` Python blocks of README.md and docs/ run as written on this suite's backend."""

import keras
import pytest

import tfimp.keras3  # noqa: F401  (every module, so that their registries exist before a block adds to them)

import doc_examples

BACKEND = keras.backend.backend()
BLOCKS = doc_examples.of_environment(f"keras3: {BACKEND}")


def test_there_are_examples_for_this_backend():
    assert BLOCKS, f"no '# keras3: {BACKEND}' block in README.md or docs/"


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_example_runs(block, tmp_path):
    doc_examples.run(block, tmp_path)
