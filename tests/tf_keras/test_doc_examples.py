"""The ``# tf_keras`` Python blocks of README.md and docs/ run as written (see CONTRIBUTING.md)."""

import pytest

import tfimp.tf_keras  # noqa: F401  (every module, so that their registries exist before a block adds to them)

import doc_examples

BLOCKS = doc_examples.of_environment("tf_keras")


def test_there_are_tf_keras_examples():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_example_runs(block, tmp_path):
    doc_examples.run(block, tmp_path)
