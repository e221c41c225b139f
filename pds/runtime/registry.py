"""Name -> function registries for the sampler's pieces (predictors, correctors)."""

from __future__ import annotations

from collections.abc import Callable

from pds.runtime.errors import check_choice


class Registry:
    """Functions registered under names; ``get`` raises ConfigError naming ``field``."""

    def __init__(self, field: str):
        self.field = field
        self._entries: dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        def wrap(fn: Callable) -> Callable:
            self._entries[name] = fn
            return fn
        return wrap

    def get(self, name: str) -> Callable:
        check_choice(self.field, name, self.names())
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)
