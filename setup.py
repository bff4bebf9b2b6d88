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
    python_requires=">=3.10",
    packages=find_packages(include=["tfimp", "tfimp.*"]),
    install_requires=[
        # TensorFlow and tf-keras must share a minor version.
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "tensorflow-model-optimization==0.8.1",
        "absl-py<2",  # forced by tensorflow-model-optimization 0.8.1
        "keras-cv==0.9.0",
        "numpy>=1.26",
        "tensorboard>=2.21,<2.22",
        "tensorflow-datasets>=4.9",
        "ml-collections>=1.0",
        "matplotlib>=3.7",
    ],
    entry_points={"console_scripts": ["tfimp=tfimp.main:console_main"]},
    extras_require={
        # nbclient + ipykernel execute the Colab tutorials in the tests.
        "test": ["pytest>=8", "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
