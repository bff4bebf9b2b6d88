"""The core suite runs with every framework blocked: ``TFIMP_TEST_CORE=1 python -m pytest tests/core``."""

import os
import sys

if os.environ.get("TFIMP_TEST_CORE") != "1":
    raise RuntimeError("tests/core runs with TFIMP_TEST_CORE=1 (see tests/conftest.py)")

BLOCKED = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "keras_cv", "keras_hub", "jax",
           "torch")


class _BlockFrameworks:
    """An import hook that refuses the frameworks, so a core module that reaches for one fails its test."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in the core suite: tfimp.core must not need it")
        return None


_already = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
if _already:
    raise RuntimeError(f"the core suite must start without frameworks, but {_already[:5]} are imported")
sys.meta_path.insert(0, _BlockFrameworks())
