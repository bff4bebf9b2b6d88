"""Which weights of which layers tfimp prunes, by kind: the framework-free half of coverage.

Every weight tfimp can prune has a *kind*, so that a user can choose what to
prune (``tfimp.wrap(model, kinds=...)``). Each front end keeps a
:class:`SpecRegistry` (layer class -> the paths and kinds of its prunable
weights) filled with its Keras' layer classes; the kinds, the path walking
and the coverage report are shared.

A *spec* is the path from the wrapped layer to one weight (attribute names,
and list indices for stacked cells: ``"forward_layer.cell.recurrent_kernel"``)
and its kind.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Callable, Iterable, Iterator, Sequence

from tfimp.core import upstream
from tfimp.core import notices
from tfimp.core import reparametrisations

_log = logging.getLogger("tfimp")

#: Every kind of prunable weight, in the order reports list them.
KINDS: tuple[str, ...] = ("conv", "dense", "depthwise", "embedding", "attention", "rnn")

#: What :func:`tfimp.wrap` prunes when ``kinds`` is not given: everything.
DEFAULT_KINDS: frozenset[str] = frozenset(KINDS)

Spec = tuple[str, str]  # (path, kind)
SpecsFn = Callable[[Any], list[Spec]]


def _check_kinds(kinds: Iterable[str]) -> frozenset[str]:
    kinds = frozenset(kinds)
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise ValueError(f"unknown weight kinds {unknown}; the kinds are {list(KINDS)}")
    return kinds


def normalize_kinds(kinds: Iterable[str] | str | None) -> frozenset[str]:
    """``None`` → every kind; a name or names → that set, checked against :data:`KINDS`."""
    if kinds is None:
        return DEFAULT_KINDS
    if isinstance(kinds, str):
        kinds = [kinds]
    kinds = _check_kinds(kinds)
    if not kinds:
        raise ValueError(f"kinds is empty: nothing would be pruned; choose from {list(KINDS)}")
    return kinds


class SpecRegistry:
    """Layer classes -> their prunable weights; a class's subclasses inherit its entry (method resolution order)."""

    def __init__(self, keras_name: str):
        self.keras_name = keras_name
        self._entries: dict[type, SpecsFn] = {}

    def register(self, layer_class: type, specs: dict[str, str] | SpecsFn) -> None:
        """Makes ``layer_class`` (and its subclasses) prunable.

        Args:
          layer_class: a layer class of this registry's Keras.
          specs: ``{weight attribute or path: kind}``, e.g. ``{"kernel": "dense"}``,
            or a function ``layer -> [(path, kind), ...]`` for layers whose weights
            depend on their configuration.

        Raises:
          ValueError: a kind outside :data:`KINDS`.
        """
        if isinstance(specs, dict):
            fixed = [(path, kind) for path, kind in specs.items()]
            _check_kinds(kind for _, kind in fixed)
            self._entries[layer_class] = lambda layer: list(fixed)
        else:
            self._entries[layer_class] = specs

    def unregister(self, layer_class: type) -> None:
        """Forgets ``layer_class`` (KeyError if it was never registered)."""
        del self._entries[layer_class]

    def handler(self, layer) -> SpecsFn | None:
        for klass in type(layer).__mro__:
            if klass in self._entries:
                return self._entries[klass]
        return None

    def handler_of_class(self, layer_class: type) -> SpecsFn:
        return self._entries[layer_class]

    def specs(self, layer, kinds: Iterable[str] | None = None) -> list[Spec]:
        """The prunable weights of ``layer`` (paths and kinds), restricted to ``kinds``; empty if none."""
        handler = self.handler(layer)
        if handler is None:
            return []
        allowed = normalize_kinds(kinds)
        return [(path, kind) for path, kind in handler(layer) if kind in allowed]


def walk(layer, direct_sublayers: Callable[[Any], list], wrapper_type: type, prefix: str = "",
         seen: set[int] | None = None) -> Iterator[tuple[str, Any]]:
    """(path name, layer) for every layer below ``layer``, in model order (parents first).

    Path names are the layers' own names joined by "/"; a wrapper (of
    ``wrapper_type``) is named by the layer it wraps, and nothing below it is visited.
    """
    seen = set() if seen is None else seen
    for sub in direct_sublayers(layer):
        if id(sub) in seen:
            continue
        seen.add(id(sub))
        path = f"{prefix}{sub.layer.name if isinstance(sub, wrapper_type) else sub.name}"
        yield path, sub
        if not isinstance(sub, wrapper_type):
            yield from walk(sub, direct_sublayers, wrapper_type, f"{path}/", seen)


def children_first(ordered: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """:func:`walk`'s ``(path, layer)`` pairs with deeper layers first (a layer's children before it)."""
    depth = {id(layer): path.count("/") for path, layer in ordered}
    return sorted(ordered, key=lambda item: -depth[id(item[1])])


def exclusion(exclude, model_layer_names: Iterable[str]) -> Callable[[Any], bool]:
    """``wrap``'s ``exclude`` (None, layer names, or a predicate ``layer -> bool``) as a predicate.

    Raises:
      ValueError: ``exclude`` names a layer that is not in the model.
    """
    if exclude is None:
        return lambda layer: False
    if callable(exclude):
        return exclude
    names = {exclude} if isinstance(exclude, str) else set(exclude)
    unknown = sorted(names - set(model_layer_names))
    if unknown:
        raise ValueError(f"exclude names layers that are not in the model: {unknown}")
    return lambda layer: layer.name in names


def nothing_to_prune(model_name: str, chosen: Iterable[str], exclude, left_out: dict[str, str]) -> ValueError:
    """The error of a ``wrap`` that found no weight to wrap."""
    outside = " outside `exclude`" if exclude is not None else ""
    also = f"; left out: {left_out}" if left_out else ""
    return ValueError(f"model {model_name!r} has nothing to prune: no weight of the kinds {sorted(chosen)}"
                      f"{outside} (see tfimp.coverage{also})")


def resolve(layer, path: str):
    """The variable at ``path`` below ``layer`` (private steps go through :func:`tfimp.core.upstream.attribute`).

    Raises:
      upstream.UpstreamChanged / AttributeError: the path does not exist (yet: the layer is not built).
    """
    value = layer
    for step in path.split("."):
        if step.isdigit():
            value = value[int(step)]
        elif step.startswith("_"):
            value = upstream.attribute(value, step, what=f"the prunable weight {path!r} of a {type(layer).__name__}")
        else:
            value = getattr(value, step)
    return value


@dataclasses.dataclass
class Coverage:
    """What :func:`tfimp.wrap` covered: parameters under masks and those left dense, by layer type.

    All counts are trainable parameters (BatchNorm's moving statistics and
    tfimp's own masks are not parameters).
    """

    total_parameters: int
    #: layer type -> [layers, parameters under masks]
    pruned_by_type: dict[str, list[int]]
    #: layer type -> [layers, parameters left dense] (biases and normalisation included)
    dense_by_type: dict[str, list[int]]
    #: covered layers that were built when wrapped but never called, or excluded/unchosen: name -> reason
    left_out: dict[str, str]
    #: layer type -> parameters in weight matrices and tables (rank >= 2) left dense: the holes that matter
    dense_matrices_by_type: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def prunable_parameters(self) -> int:
        return sum(count for _, count in self.pruned_by_type.values())

    @property
    def prunable_share(self) -> float:
        """Parameters under masks / all trainable parameters."""
        return self.prunable_parameters / self.total_parameters if self.total_parameters else 0.0

    @property
    def dense_matrix_parameters(self) -> int:
        """Parameters in kernels, tables and other weights of rank >= 2 that are not under masks."""
        return sum(self.dense_matrices_by_type.values())

    def largest_dense(self, top: int = 3) -> list[tuple[str, int]]:
        """The layer types holding the most dense weight-matrix parameters."""
        return sorted(self.dense_matrices_by_type.items(), key=lambda item: -item[1])[:top]

    def summary(self) -> str:
        """A few lines: what is pruned, what stays dense, what was left out."""
        def listing(table):
            return ", ".join(f"{name} ×{layers} ({count:,})" for name, (layers, count) in
                             sorted(table.items(), key=lambda item: -item[1][1])) or "none"
        lines = [f"tfimp.wrap: {self.prunable_parameters:,} of {self.total_parameters:,} parameters "
                 f"({self.prunable_share:.1%}) are prunable",
                 f"  pruned: {listing(self.pruned_by_type)}",
                 f"  dense: {listing(self.dense_by_type)}",
                 f"  of which weight matrices and tables: {self.dense_matrix_parameters:,}"]
        if self.left_out:
            lines.append("  left out: " + ", ".join(f"{name} ({reason})" for name, reason in self.left_out.items()))
        return "\n".join(lines)


def count_parameters(variables: Sequence) -> int:
    """The number of values in ``variables`` (any Keras' variables: only their shapes are read)."""
    return int(sum(math.prod(int(d) for d in v.shape) for v in variables))


#: Variables a reparametrisation adds beside a masked weight (CS's scores): state of the method, not weights.
_METHOD_PARAMETERS = tuple(parameter.name for parameter in reparametrisations.PARAMETERS.values())


def _is_matrix(variable) -> bool:
    """A kernel, table or other weight of rank >= 2 (GRU's bias has rank 2 but is a bias; CS's scores are the
    method's, not the model's)."""
    name = variable.name.split("/")[-1]
    return len(variable.shape) >= 2 and not name.startswith("bias") and not any(
        part in name for part in _METHOD_PARAMETERS)


def tally(layers: Iterable[tuple[str, Sequence]], masked_ids: set[int], total_parameters: int,
          left_out: dict[str, str] | None = None) -> Coverage:
    """A :class:`Coverage` from ``(layer type name, trainable variables)`` per layer, in model order.

    A variable listed by two layers counts once, for the first; ``masked_ids``
    holds the ``id`` of every variable under a mask.
    """
    pruned: dict[str, list[int]] = {}
    dense: dict[str, list[int]] = {}
    matrices: dict[str, int] = {}
    seen: set[int] = set()
    for type_name, variables in layers:
        own = [v for v in variables if id(v) not in seen]
        seen.update(id(v) for v in own)
        if not own:
            continue
        under_mask = count_parameters([v for v in own if id(v) in masked_ids])
        left = count_parameters(own) - under_mask
        if under_mask:
            entry = pruned.setdefault(type_name, [0, 0])
            entry[0] += 1
            entry[1] += under_mask
        if left:
            entry = dense.setdefault(type_name, [0, 0])
            entry[0] += 1
            entry[1] += left
        left_matrices = count_parameters([v for v in own if id(v) not in masked_ids and _is_matrix(v)])
        if left_matrices:
            matrices[type_name] = matrices.get(type_name, 0) + left_matrices
    return Coverage(total_parameters, pruned, dense, dict(left_out or {}), matrices)


#: ``wrap`` warns when more than this share of a model's parameters sits in weight matrices and tables left
#: dense (rank >= 2 outside the masks; biases and normalisation are not counted).
DENSE_SHARE_WARNING = 0.1


def say_what_was_wrapped(report: Coverage, model_name: str, chosen: Iterable[str], left_out: dict[str, str],
                         verbose: int) -> None:
    """After ``wrap``: the coverage summary (printed with ``verbose``, else logged), the dense-share warning,
    and the covered layers left out."""
    if verbose:
        print(report.summary(), flush=True)
    else:
        _log.info("%s", report.summary())
    warning = dense_share_warning(report, model_name, chosen)
    if warning:
        notices.warn(warning)
    if left_out:
        _log.warning("tfimp.wrap: left out of pruning, never called: %s", ", ".join(left_out))


def dense_share_warning(report: Coverage, model_name: str, chosen: Iterable[str]) -> str | None:
    """The warning ``wrap`` gives when weight matrices outside the masks hold too much of the model, else None."""
    dense = report.dense_matrix_parameters
    if not report.total_parameters or dense <= DENSE_SHARE_WARNING * report.total_parameters:
        return None
    largest = ", ".join(f"{name} ({count:,})" for name, count in report.largest_dense())
    chosen = set(chosen)
    return (f"tfimp.wrap: {dense / report.total_parameters:.1%} of the parameters of {model_name!r} are in weight "
            f"matrices or tables that stay dense (largest: {largest}); tfimp.sparsity counts only the "
            f"{report.prunable_share:.1%} under masks. "
            f"Prunable kinds chosen: {[k for k in KINDS if k in chosen]} (all: {list(KINDS)}); a layer type tfimp "
            "does not know can be added with tfimp.coverage.register.")


def rnn_spec_functions(registry: SpecRegistry, stacked_cells: type, cell_fallback=None):
    """The spec functions of a Keras' recurrent layers: ``(rnn, bidirectional, time_distributed)``.

    ``stacked_cells`` is the Keras' ``StackedRNNCells``; ``cell_fallback(cell)``
    may name the handler of a cell class the registry cannot see.
    """

    def cell_specs(cell, prefix: str) -> list[Spec]:
        if isinstance(cell, stacked_cells):
            return [spec for index, inner in enumerate(cell.cells) for spec in cell_specs(inner, f"{prefix}cells.{index}.")]
        handler = registry.handler(cell) or (cell_fallback(cell) if cell_fallback else None)
        return [(f"{prefix}{path}", kind) for path, kind in handler(cell)] if handler else []

    def rnn_specs(layer) -> list[Spec]:
        return cell_specs(layer.cell, "cell.")

    def bidirectional_specs(layer) -> list[Spec]:
        return ([(f"forward_layer.{path}", kind) for path, kind in rnn_specs(layer.forward_layer)]
                + [(f"backward_layer.{path}", kind) for path, kind in rnn_specs(layer.backward_layer)])

    def time_distributed_specs(layer) -> list[Spec]:
        handler = registry.handler(layer.layer)
        return [(f"layer.{path}", kind) for path, kind in handler(layer.layer)] if handler else []

    return rnn_specs, bidirectional_specs, time_distributed_specs
