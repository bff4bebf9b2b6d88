"""tfimp: Iterative Magnitude Pruning (IMP) for Keras/TensorFlow, fast and exact."""

import pathlib

from setuptools import find_packages, setup

_HERE = pathlib.Path(__file__).parent

setup(
    name="tfimp",
    version="0.1.0",
    description="Iterative Magnitude Pruning for Keras: global masks, retraining schedules, tfmot wrappers",
    long_description=(_HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["tfimp", "tfimp.*"]),
    # The core API (wrap, prune, the IMP callback and runners, export) needs only these. TensorFlow and
    # tf-keras must share a minor version (tfimp checks it at import); every pair from 2.16 to 2.21 works
    # with tfmot 0.8 (benchmarks/install_check.py installs the oldest and the newest into fresh venvs).
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "tf-keras>=2.16,<2.22",
        "tensorflow-model-optimization>=0.8,<0.9",
        "absl-py<2",  # forced by tensorflow-model-optimization 0.8
        "numpy>=1.26",
    ],
    entry_points={"console_scripts": ["tfimp=tfimp.cli.main:console_main"]},
    extras_require={
        # The command line (configs, datasets through tensorflow-datasets, the accuracy plot, TensorBoard logs:
        # TensorFlow 2.21 no longer brings TensorBoard).
        "cli": ["ml-collections>=1.0", "tensorflow-datasets>=4.9", "matplotlib>=3.7", "tensorboard>=2.16"],
        # Keras 3 on the JAX backend (tfimp.keras3; Keras 3 itself comes with TensorFlow >= 2.16, and with
        # `pip install --no-deps` tfimp runs where TensorFlow is not installed: see the README).
        "jax": ["keras>=3.5", "jax[cpu]>=0.4.30"],
        # ONNX exports from Keras 3 on the TensorFlow backend, checked with onnxruntime (tfimp.keras3.export; JAX
        # needs jax2onnx instead, which wants absl-py >= 2 and so cannot share an environment with tfmot).
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17", "tf2onnx>=1.16"],
        # keras-hub tasks and backbones on Keras 3 (built from configs; nothing is downloaded unless you load a preset).
        "hub": ["keras-hub>=0.20"],
        # keras-cv backbones in the model registry (kcv_* models) and the keras-cv tutorial.
        "keras-cv": ["keras-cv>=0.9,<0.10"],
        # The tests need everything (JAX and keras-hub for the Keras 3 suite), plus nbclient + ipykernel to execute
        # the Colab tutorials, and pytest-xdist (the suite runs on two processes, one test file each at a time: see
        # pytest.ini). The documentation site (mkdocs.yml; tests/core/test_docs_site.py builds it) and the tutorials'
        # jupytext sources need mkdocs and jupytext; ruff checks the code (tests/core/test_architecture.py).
        "test": ["ml-collections>=1.0", "tensorflow-datasets>=4.9", "matplotlib>=3.7", "tensorboard>=2.16",
                 "keras-cv>=0.9,<0.10", "keras>=3.5", "jax[cpu]>=0.4.30", "keras-hub>=0.20",
                 "onnx>=1.15", "onnxruntime>=1.17", "tf2onnx>=1.16",
                 "pytest>=8", "pytest-xdist>=3.5", "import-linter>=2.3", "ruff>=0.6", "nbclient>=0.10", "nbformat>=5.9",
                 "ipykernel>=6.29", "mkdocs>=1.6,<2", "mkdocs-material>=9.5", "mkdocstrings-python>=1.12", "mkdocs-jupyter>=0.25",
                 "jupytext>=1.16"],
    },
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
