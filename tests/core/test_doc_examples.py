"""Every Python block of README.md and docs/ names its environment; the ``# core`` ones run with frameworks blocked."""

import pytest

import doc_examples

BLOCKS = doc_examples.of_environment("core")


def test_every_python_block_names_an_environment():
    unnamed = [block.id for block in doc_examples.blocks() if block.environment is None]
    assert unnamed == [], f"python blocks whose first line names no environment {doc_examples.ENVIRONMENTS}"


def test_the_readme_shows_both_kerases():
    in_readme = {block.environment for block in doc_examples.blocks() if block.path == "README.md"}
    assert {"tf_keras", "keras3: jax"} <= in_readme


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_example_runs_without_a_framework(block, tmp_path):
    doc_examples.run(block, tmp_path)
