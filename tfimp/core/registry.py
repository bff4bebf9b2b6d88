"""Name -> implementation registries (criteria, LR schedules, models, ...).

Configs and the CLI name things by string; each registry turns the string
into the function and says which names exist when one does not.
"""

from __future__ import annotations

from typing import Callable, Generic, Optional, TypeVar

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    """A dict of named implementations with clear errors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, fn: Optional[T] = None):
        """Registers ``fn`` under ``name``; without ``fn``, returns a decorator.

        Raises:
          ValueError: ``name`` is already registered.
        """

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered; known: {self.known()}")
            self._entries[name] = entry
            return entry

        return add(fn) if fn is not None else add

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry named ``name``.

        Raises:
          ValueError: unknown name (the message lists the known ones).
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; known: {self.known()}") from None

    def known(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        """The names in the order they were registered (the built-in ones first)."""
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
