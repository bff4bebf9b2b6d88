"""Structured sparsity: the units a pruning step removes together, by name.

A *structure* says which weights of a kernel are pruned together and how
sparsity is counted. Every pruning entry point takes one by name
(``structure="2:4"``); :func:`get` parses the name, :data:`STRUCTURES` holds
the families:

* ``"unstructured"`` (the default): every weight is its own unit.
* ``"N:M"`` (e.g. ``"2:4"``, ``1 <= N < M``): at most N nonzero weights in
  every group of M consecutive weights along a kernel's input axis, the
  axis before the last (Dense ``(in, out)``: axis 0; Conv ``(h, w, in,
  out)``: ``in``), the layout of NVIDIA's sparse tensor cores and tfmot's
  ``sparsity_m_by_n``. The pattern fixes how many weights every group
  loses, so a criterion only orders the weights inside a group (by
  magnitude, for every built-in criterion). A pruning step to sparsity
  ``s`` prunes ``round(s * M)`` weights of every group (halves up), so IMP's
  intermediate targets tighten the groups step by step: 2:4 over two
  cycles prunes to 0.293 (1 of 4: 3:4), then 0.5 (2:4). ``s`` above
  ``1 - N/M`` is refused. A kernel whose input axis is not a multiple of M
  (a first convolution on 1 or 3 channels) is left dense, with a warning
  naming it, as NVIDIA's ASP does.
* ``"block:RxC"`` (e.g. ``"block:1x4"``): whole R x C blocks of each
  kernel's 2-D view ``(all axes but the last, the last)`` (Dense: ``(in,
  out)``; Conv ``(h, w, in, out)``: rows over h, w, in with ``in``
  fastest), tfmot's ``block_size``. A block's score is the *mean* |w| of
  its weights; blocks cut by the kernel's edges are smaller, and their mean
  is over the weights they have (a sum would rank them lower for being
  small). The criterion ranks the blocks as it ranks weights, exactly (one
  global ranking, or its per-layer counts in blocks), and sparsity is
  counted in blocks.
* ``"channels"`` (or ``"channels:l2"``; ``"channels:l1"``): whole output
  channels (units) of each kernel: the columns of its 2-D view, scored by
  their L2 norm (``channels:l1``: L1 norm). The criterion ranks the columns
  as it ranks weights, and sparsity is the share of the prunable weights
  that the slimmed model (:func:`tfimp.slim`) no longer has: a removed
  channel takes its filter and the weights of the next prunable layers that
  read it (:mod:`tfimp.core.channel_weights`; without the model's graph, its
  filter only). The front ends also zero a pruned channel's bias and the
  gamma and beta of a BatchNormalization that follows it, so the channel
  outputs exactly zero, and :func:`tfimp.slim` can remove it. Channels
  an Add ties across kernels are scored together and pruned whole under
  ``global`` and ``lamp``.

Sparsity in a structure's unit (:meth:`Structure.count`): the fraction of
pruned weights (unstructured), of zero blocks (``block``), of the weights
of pruned filters (``channels``, one kernel without its graph), or of the
weights an N:M kernel can skip: in each group, zeros up to ``M - N``
count, so an exact 2:4 kernel counts 0.5 and a 3:4 one 0.25 against 2:4.

A new family is one class and one registry entry: a *pooled* structure
(units scored from the kernel's magnitudes, allocated by the criterion, as
``block``) subclasses :class:`PooledStructure` with ``unit_shape``,
``pool``, ``alive_units`` and ``expand``; ``STRUCTURES.register("name",
parse_fn)`` makes ``structure="name[:argument]"`` find it. An output
channel is the block of one whole column of the 2-D view, so a
``channels`` structure would be such a class.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Optional, Sequence

import numpy as np

from tfimp.core.registry import Registry

#: The name of the default structure.
UNSTRUCTURED = "unstructured"


class Structure:
    """What every structure says: its name, its unit (for messages), and how it counts sparsity."""

    name: str = UNSTRUCTURED
    #: the plural noun of a unit in messages ("weights", "1x4 blocks")
    unit: str = "weights"

    @property
    def structured(self) -> bool:
        return self.name != UNSTRUCTURED

    def applies_to(self, shape: Sequence[int]) -> bool:
        """Whether a kernel of ``shape`` can take this structure (the others are left as they are)."""
        return True

    def count(self, alive: np.ndarray) -> tuple[int, int]:
        """``(pruned units, units)`` of a kernel whose non-zero entries of ``alive`` are its live weights."""
        alive = np.asarray(alive)
        return int(alive.size - np.count_nonzero(alive)), int(alive.size)

    def __str__(self) -> str:
        return self.name


class PooledStructure(Structure):
    """Units scored from the kernel's values and ranked by the criterion, then expanded back to weights.

    The identity for unstructured pruning: every weight is a unit, its
    score the criterion's own.
    """

    def unit_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of a kernel's array of units."""
        return tuple(int(d) for d in shape)

    def pool(self, values: np.ndarray) -> np.ndarray:
        """The unit values the criterion scores, from a kernel's (masked) values."""
        return values

    def alive_units(self, mask: np.ndarray, name: str) -> np.ndarray:
        """Which units of a kernel are alive under ``mask`` (non-zero = alive).

        Raises:
          ValueError: the mask does not prune whole units (pruned with another structure).
        """
        return mask

    def expand(self, units: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        """A boolean array over the kernel's units, back to the kernel's ``shape``."""
        return units


@dataclasses.dataclass(frozen=True, eq=True)
class Unstructured(PooledStructure):
    """Every weight its own unit: what tfimp always did."""


def _check_counts(prefix: str, **counts) -> None:
    """Every ``counts`` value is an integer >= 1 (ValueError naming it otherwise)."""
    for what, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{prefix} {what} must be an integer >= 1, got {value!r}")


def _two_d(shape: Sequence[int]) -> tuple[int, int]:
    """A kernel's 2-D view: (all axes but the last, the last)."""
    shape = tuple(int(d) for d in shape)
    if not shape:
        return 1, 1
    return math.prod(shape[:-1]), shape[-1]


@dataclasses.dataclass(frozen=True, eq=True)
class Blocks(PooledStructure):
    """Whole ``rows`` x ``cols`` blocks of each kernel's 2-D view, scored by their mean magnitude."""

    rows: int
    cols: int

    def __post_init__(self):
        _check_counts("block", rows=self.rows, cols=self.cols)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"block:{self.rows}x{self.cols}"

    @property
    def unit(self) -> str:  # type: ignore[override]
        return f"{self.rows}x{self.cols} blocks"

    def unit_shape(self, shape):
        height, width = _two_d(shape)
        return -(-height // self.rows), -(-width // self.cols)

    def _blocks(self, array: np.ndarray, fill) -> np.ndarray:
        """``array`` in its 2-D view, padded with ``fill`` to whole blocks: (block rows, R, block cols, C)."""
        height, width = _two_d(np.shape(array))
        grid_rows, grid_cols = self.unit_shape(np.shape(array))
        view = np.reshape(array, (height, width))
        padded = np.pad(view, ((0, grid_rows * self.rows - height), (0, grid_cols * self.cols - width)),
                        constant_values=fill)
        return padded.reshape(grid_rows, self.rows, grid_cols, self.cols)

    def _sizes(self, shape) -> np.ndarray:
        """How many of the kernel's weights each block holds (edge blocks hold fewer)."""
        height, width = _two_d(shape)
        grid_rows, grid_cols = self.unit_shape(shape)
        in_rows = np.minimum(self.rows, height - self.rows * np.arange(grid_rows))
        in_cols = np.minimum(self.cols, width - self.cols * np.arange(grid_cols))
        return np.outer(in_rows, in_cols)

    def pool(self, values):
        magnitudes = self._blocks(np.abs(np.asarray(values, dtype=np.float64)), 0.0)
        return magnitudes.sum(axis=(1, 3)) / self._sizes(np.shape(values))

    def alive_units(self, mask, name):
        alive = self._blocks(np.asarray(mask) != 0, False).sum(axis=(1, 3))
        sizes = self._sizes(np.shape(mask))
        if np.any((alive != 0) & (alive != sizes)):
            raise ValueError(
                f"the mask of {name!r} prunes parts of {self.rows}x{self.cols} blocks (pruned before with another "
                f"structure?); structure {self.name!r} prunes whole blocks and never revives a weight: keep one "
                "structure for all pruning steps of a model")
        return alive != 0

    def expand(self, units, shape):
        height, width = _two_d(shape)
        full = np.repeat(np.repeat(np.asarray(units), self.rows, axis=0), self.cols, axis=1)
        return full[:height, :width].reshape(tuple(int(d) for d in shape))

    def count(self, alive):
        alive_in_blocks = self._blocks(np.asarray(alive) != 0, False).any(axis=(1, 3))
        return int(alive_in_blocks.size - np.count_nonzero(alive_in_blocks)), int(alive_in_blocks.size)


@dataclasses.dataclass(frozen=True, eq=True)
class Channels(PooledStructure):
    """Whole output channels: the columns of each kernel's 2-D view, scored by their L2 (or L1) norm."""

    norm: str = "l2"

    def __post_init__(self):
        if self.norm not in _NORMS:
            raise ValueError(f"a channels structure scores channels by norm 'l2' or 'l1', got {self.norm!r}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return "channels" if self.norm == "l2" else f"channels:{self.norm}"

    @property
    def unit(self) -> str:  # type: ignore[override]
        return "channels"

    def unit_shape(self, shape):
        return (_two_d(shape)[1],)

    @staticmethod
    def _columns(array: np.ndarray) -> np.ndarray:
        return np.reshape(np.asarray(array), _two_d(np.shape(array)))

    def pool(self, values):
        columns = self._columns(np.abs(np.asarray(values, dtype=np.float64)))
        if self.norm == "l1":
            return columns.sum(axis=0)
        return np.sqrt(np.square(columns).sum(axis=0))

    def alive_units(self, mask, name):
        alive = (self._columns(mask) != 0).sum(axis=0)
        rows = _two_d(np.shape(mask))[0]
        if np.any((alive != 0) & (alive != rows)):
            raise ValueError(
                f"the mask of {name!r} prunes parts of output channels (pruned before with another structure?); "
                f"structure {self.name!r} prunes whole channels and never revives a weight: keep one structure "
                "for all pruning steps of a model")
        return alive != 0

    def expand(self, units, shape):
        shape = tuple(int(d) for d in shape)
        return np.broadcast_to(np.asarray(units), _two_d(shape)).reshape(shape).copy()

    def count(self, alive):
        """``(weights of the pruned channels' filters, weights)``: what a channel costs without the model's graph
        (:mod:`tfimp.core.channel_weights` counts the weights that read it too)."""
        columns = self._columns(alive)
        dead = columns.shape[1] - int(np.count_nonzero((columns != 0).any(axis=0)))
        return dead * columns.shape[0], int(columns.size)


_NORMS = ("l2", "l1")


@dataclasses.dataclass(frozen=True, eq=True)
class NOfM(Structure):
    """At most ``n`` nonzero weights in every group of ``m`` consecutive weights along the input axis (-2)."""

    n: int
    m: int

    def __post_init__(self):
        _check_counts("N:M structure:", N=self.n, M=self.m)
        if self.n >= self.m:
            raise ValueError(f"N:M structure keeps N of every M weights, so N < M; got {self.n}:{self.m}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.n}:{self.m}"

    @property
    def unit(self) -> str:  # type: ignore[override]
        return "weights"

    @property
    def max_sparsity(self) -> float:
        """``1 - N/M``: the sparsity of an exact N:M kernel."""
        return 1.0 - self.n / self.m

    def applies_to(self, shape):
        return len(shape) >= 2 and int(shape[-2]) % self.m == 0

    def pruned_per_group(self, sparsity: float) -> int:
        """How many weights of each group a step to ``sparsity`` prunes: ``round(sparsity * M)``, halves up.

        Raises:
          ValueError: ``sparsity`` above ``1 - N/M``.
        """
        if sparsity > self.max_sparsity + 1e-9:
            raise ValueError(f"structure {self.name!r} keeps {self.n} of every {self.m} weights, so it prunes to "
                             f"sparsity at most 1 - {self.n}/{self.m} = {self.max_sparsity:.6g}; got {sparsity}")
        return min(int(math.floor(sparsity * self.m + 0.5)), self.m - self.n)

    def groups(self, array: np.ndarray) -> np.ndarray:
        """A kernel as rows of M consecutive weights along its input axis: shape (groups, M)."""
        return np.moveaxis(np.asarray(array), -2, -1).reshape(-1, self.m)

    def ungroup(self, grouped: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        """:meth:`groups` undone: the kernel's ``shape`` again."""
        shape = tuple(int(d) for d in shape)
        moved = shape[:-2] + (shape[-1], shape[-2])
        return np.moveaxis(np.reshape(grouped, moved), -1, -2)

    def count(self, alive):
        alive = np.asarray(alive)
        if not self.applies_to(alive.shape):
            return 0, int(alive.size)
        zeros = self.m - np.count_nonzero(self.groups(alive), axis=1)
        return int(np.minimum(zeros, self.m - self.n).sum()), int(alive.size)


Parser = Callable[[Optional[str]], Structure]

#: ``family name -> parse(argument or None) -> Structure``: ``structure="family"`` or ``"family:argument"``;
#: an ``"N:M"`` name is the family ``n:m`` with the argument ``"N:M"``.
STRUCTURES: Registry[Parser] = Registry("structure")

_N_OF_M = re.compile(r"(\d+):(\d+)")
_BLOCK = re.compile(r"(\d+)x(\d+)")
_FORMS = ("'unstructured', 'N:M' (e.g. '2:4', 1 <= N < M), 'block:RxC' (e.g. 'block:1x4') or 'channels' "
          "('channels:l1' scores by L1 norm)")


def _no_argument(name: str, structure: Structure) -> Parser:
    def parse(argument: Optional[str]) -> Structure:
        if argument is not None:
            raise ValueError(f"structure {name!r} takes no argument, got {name}:{argument}")
        return structure

    return parse


def _parse_n_of_m(argument: Optional[str]) -> Structure:
    match = _N_OF_M.fullmatch(argument or "")
    if match is None:
        raise ValueError(f"an N:M structure is written as two integers, e.g. '2:4'; got {argument!r}")
    return NOfM(int(match.group(1)), int(match.group(2)))


def _parse_blocks(argument: Optional[str]) -> Structure:
    match = _BLOCK.fullmatch(argument or "")
    if match is None:
        raise ValueError(f"a block structure is written 'block:RxC' with integers R, C >= 1, e.g. 'block:1x4'; "
                         f"got 'block:{argument or ''}'")
    return Blocks(int(match.group(1)), int(match.group(2)))


STRUCTURES.register(UNSTRUCTURED, _no_argument(UNSTRUCTURED, Unstructured()))
def _parse_channels(argument: Optional[str]) -> Structure:
    norm = (argument or "l2").strip().lower()
    if norm not in _NORMS:
        raise ValueError(f"a channels structure is written 'channels' (L2 norm), 'channels:l2' or 'channels:l1'; "
                         f"got 'channels:{argument}'")
    return Channels(norm)


STRUCTURES.register("n:m", _parse_n_of_m)
STRUCTURES.register("block", _parse_blocks)
STRUCTURES.register("channels", _parse_channels)


def get(structure) -> Structure:
    """The :class:`Structure` a name stands for (a :class:`Structure` is returned as it is).

    Raises:
      ValueError: a name no family parses; the message lists the forms there are.
    """
    if isinstance(structure, Structure):
        return structure
    if not isinstance(structure, str):
        raise TypeError(f"structure must be a name such as {_FORMS}, got {structure!r}")
    text = structure.strip()
    if _N_OF_M.fullmatch(text):
        family, argument = "n:m", text
    else:
        family, _, rest = text.partition(":")
        argument = rest if ":" in text else None
    if family not in STRUCTURES:
        raise ValueError(f"unknown structure {structure!r}; the forms are {_FORMS}"
                         + (f"; families registered: {STRUCTURES.known()}" if len(STRUCTURES) > 4 else ""))
    try:
        return STRUCTURES.get(family)(argument)
    except ValueError as error:
        raise ValueError(f"structure {structure!r}: {error}") from None


def name_of(structure) -> str:
    """The canonical name of a structure (``" 2:4"`` -> ``"2:4"``); ValueError for a bad one."""
    return get(structure).name


def is_structured(structure) -> bool:
    """Whether ``structure`` is anything but the default ``"unstructured"``."""
    return get(structure).structured


def check_target(structure, target_sparsity: float) -> None:
    """Fails when ``structure`` cannot reach ``target_sparsity``: an N:M target must be ``1 - N/M``.

    Raises:
      ValueError: naming the structure, the target it reaches and the one given.
    """
    form = get(structure)
    if isinstance(form, NOfM) and not math.isclose(float(target_sparsity), form.max_sparsity, abs_tol=1e-9):
        raise ValueError(f"structure {form.name!r} prunes to sparsity 1 - {form.n}/{form.m} = "
                         f"{form.max_sparsity:.6g}; give target_sparsity={form.max_sparsity:.6g}, not "
                         f"{target_sparsity!r}")


def for_sparsity(over: str, structure) -> Structure:
    """The structure a ``sparsity(model, over, structure)`` counts in.

    Raises:
      ValueError: a bad structure, or a structure with ``over="all"`` (units exist only for prunable kernels).
    """
    form = get(structure)
    if form.structured and over != "prunable":
        raise ValueError(f"structure={structure!r} counts over the prunable weights only; use over='prunable', "
                         f"not over={over!r}")
    return form


def unit_sparsity(structure, alive_arrays: Sequence[np.ndarray]) -> float:
    """The sparsity of kernels (non-zero = alive) counted in ``structure``'s unit, over all of them together."""
    form = get(structure)
    pruned = total = 0
    for alive in alive_arrays:
        p, t = form.count(alive)
        pruned, total = pruned + p, total + t
    return pruned / total if total else 0.0


def layer_sparsities(named_arrays, structure) -> dict[str, float]:
    """Each kernel's sparsity from ``(name, array)`` pairs (non-zero = alive), counted in ``structure``'s unit."""
    form = get(structure)
    if form.structured:
        return {name: unit_sparsity(form, [array]) for name, array in named_arrays}
    return {name: 1.0 - float(np.count_nonzero(array)) / array.size for name, array in named_arrays}
