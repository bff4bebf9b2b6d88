"""Distribution strategies by name, and the multi-worker conventions tfimp follows.

``make("default" | "mirrored" | "multi_worker" | "tpu")`` builds the
strategy the CLI's ``--config.strategy`` names; the model, its optimizer and
tfimp's wrappers are then created in its scope. The batch size tfimp is given
is the global one: each of the N replicas gets ``batch_size / N`` examples
per step.

Several workers (``MultiWorkerMirroredStrategy``, ``TF_CONFIG``) follow
Keras' conventions: every worker runs the same program and computes the same
masks (the selection is deterministic and the weights are all-reduced);
the chief writes the workdir, the others save into scratch directories they
remove (:func:`tfimp.workdir.write_dir`); :func:`sync_workers` is the barrier
between the chief claiming the workdir and everyone reading it.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from tfimp.tf_keras import _private
from tfimp.tf_keras._backend import tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """The strategy called ``name``.

    Args:
      name: ``default`` (one device), ``mirrored`` (every local GPU; the CPU
        without one), ``multi_worker`` (the cluster in ``TF_CONFIG``; every
        worker runs the same command), ``tpu``.
      tpu: the TPU's address or name for ``tpu`` (a grpc:// address, a Cloud
        TPU name, or "local" on a TPU VM); "" = ``$TPU_NAME``, else "local".

    Raises:
      ValueError: an unknown name, or no TPU at the address (naming it).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("strategy 'multi_worker' needs TF_CONFIG (the cluster and this worker's task) in the "
                             "environment of every worker; see docs/cli.md, 'Scaling out'")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        address = tpu or os.environ.get("TPU_NAME") or "local"
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver.connect(tpu=address)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            raise ValueError(f"no TPU reachable at tpu={address!r} ({type(error).__name__}: {error}); give the "
                             "TPU's name or grpc:// address as --config.tpu (or $TPU_NAME)") from error
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; known: {list(STRATEGIES)}")


def task(strategy=None) -> tuple[Optional[str], Optional[int], dict]:
    """(task type, task id, cluster) of this process in a multi-worker job; ``(None, None, {})`` otherwise.

    From the strategy when it is a multi-worker one; outside any strategy
    scope, from ``TF_CONFIG`` when it describes a cluster of several tasks
    (callbacks are often made before the strategy scope is entered).
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and _private.in_multi_worker_mode(strategy):
        return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()
    if strategy is not tf.distribute.get_strategy() or tf.distribute.has_strategy():
        return None, None, {}
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster, this_task = config.get("cluster") or {}, config.get("task") or {}
    if sum(len(v) for v in cluster.values() if isinstance(v, list)) < 2 or "type" not in this_task:
        return None, None, {}
    return this_task["type"], int(this_task.get("index", 0)), cluster


def is_chief(strategy=None) -> bool:
    """Whether this process writes the workdir: always, except on the non-chief workers of a multi-worker run."""
    task_type, task_id, cluster = task(strategy)
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def sync_workers(strategy) -> None:
    """Returns when every worker of a multi-worker ``strategy`` has called it (a one-number all-reduce).

    After the chief has claimed (perhaps cleared) the workdir, so no worker
    reads a checkpoint the chief is about to remove. No-op with one worker.
    """
    if task(strategy)[0] is None:
        return

    @tf.function  # eager collectives work too, but TensorFlow warns about their overhead
    def all_reduce_one():
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)

    all_reduce_one()
