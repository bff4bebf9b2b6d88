"""tfimp's command line: absl flags, ml_collections configs and the experiment on either front end.

``python -m tfimp --config=configs/fashion_mnist_imp.py --workdir=runs/x``
(or the ``tfimp`` console script) runs :func:`tfimp.cli.main.console_main`.
Nothing in the library imports this package.
"""
