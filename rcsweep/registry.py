"""Name -> object registries for datasets, models, attacks and compressors.

A registry also resolves a user's own ``package.module:object`` path, so that users can plug in
their own dataset or model without touching rcsweep.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def in_order(self) -> list[str]:
        """The names in the order they were registered (for listings that follow the declarations)."""
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items or _is_import_path(name)

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        if _is_import_path(name):
            return _import_object(name, self.kind)
        raise UserError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())} "
                        f"(or a 'package.module:object' path)")


def _is_import_path(name: str) -> bool:
    return isinstance(name, str) and ":" in name and not name.startswith(":")


def _import_object(path: str, kind: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"cannot import {kind} {path!r}: {e}") from None
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise UserError(f"cannot import {kind} {path!r}: module {module_name!r} has no {attr!r}") from None
    return obj
