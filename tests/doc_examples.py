"""The Python blocks of README.md and docs/, by the environment their first line names (see CONTRIBUTING.md).

A block is every fenced ``python`` block; its first line is a comment
naming where it runs: ``# core`` (the core suite, every framework blocked),
``# tf_keras``, or ``# keras3: jax|tensorflow|torch`` (the Keras 3 suite on
that backend). Each suite's ``test_doc_examples.py`` runs its blocks with
:func:`run`. This module imports no framework.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENVIRONMENTS = ("core", "tf_keras", "keras3: jax", "keras3: tensorflow", "keras3: torch")
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_ENVIRONMENT = re.compile(r"#\s*(core|tf_keras|keras3:\s*(?:jax|tensorflow|torch))\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
    path: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    environment: str | None  # None: the first line names none
    source: str

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def documents() -> list[pathlib.Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks() -> list[Block]:
    found = []
    for path in documents():
        text = path.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            source = match.group(1)
            first = source.split("\n", 1)[0].strip()
            named = _ENVIRONMENT.fullmatch(first)
            environment = re.sub(r":\s*", ": ", named.group(1)) if named else None
            found.append(Block(str(path.relative_to(ROOT)), text.count("\n", 0, match.start()) + 1, environment,
                               source))
    return found


def of_environment(environment: str) -> list[Block]:
    return [block for block in blocks() if block.environment == environment]


def _registries() -> list:
    """Every tfimp registry loaded in this process (criteria, schedules, methods, export formats, ...)."""
    from tfimp.core.registry import Registry

    found = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] != "tfimp" or module is None:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Registry):
                found[id(value)] = value
    return list(found.values())


def run(block: Block, directory) -> dict:
    """Executes ``block`` in a fresh namespace with ``directory`` as the working directory; returns the namespace.

    What the block registers in tfimp's registries and sets in the environment is undone afterwards, so
    blocks and the suite's other tests do not see each other's names.
    """
    before = {id(registry): (registry, set(registry)) for registry in _registries()}
    environment, cwd = dict(os.environ), os.getcwd()
    namespace = {"__name__": "__doc_example__"}
    os.chdir(directory)
    try:
        exec(compile(block.source, block.id, "exec"), namespace)  # noqa: S102  (the documented examples)
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environment)
        for registry, names in before.values():  # import the front end first, so that its registries are here
            for name in set(registry) - names:
                registry.unregister(name)
    return namespace
