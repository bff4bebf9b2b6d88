"""Files on any file system: the framework-free :mod:`tfimp.core.storage`, under its tf_keras-era name."""

from tfimp.core.storage import (atomic_write_bytes, atomic_write_text, copy_tree, exists, is_local,  # noqa: F401
                                listdir, local_dir, local_file, makedirs, read_errors, read_json, read_text, remove,
                                write_figure)
