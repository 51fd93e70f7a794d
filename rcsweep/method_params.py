"""The fields of a plug-in method's parameter dataclass, and their validation.

A method that takes parameters (a training objective, a compressor) declares them once, as a
frozen dataclass subclassing :class:`MethodParams` whose fields are made with :func:`param` (a number
in a closed range) or :func:`choice` (one of fixed values). The trial configuration turns every such
field into a trial parameter with the field's default, and validates its values with
:func:`check`, so a parameter's default, range and unit are written in one place.

Torch-free, like everything the trial configuration imports.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from .errors import ConfigError, did_you_mean


def param(default: float, lo: float, hi: float, unit: str) -> Any:
    """A number field: ``default``, the closed range ``[lo, hi]`` it must lie in, its ``unit``."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi), "unit": unit})


def choice(default: Any, choices: tuple, unit: str, refused: Optional[str] = None) -> Any:
    """A field taking one of ``choices`` (``default`` among them); ``unit`` says what the values mean.
    ``refused``: the error for another value, a format string with ``{value}`` (default: the choices)."""
    if default not in choices:
        raise ValueError(f"default {default!r} is not among the choices {choices}")
    return dataclasses.field(default=default, metadata={"choices": tuple(choices), "unit": unit, "refused": refused})


def not_one_of(value: Any, choices: tuple) -> str:
    """The message for a ``value`` outside ``choices``, with the closest one suggested."""
    return (f"must be one of {', '.join(map(str, choices))}; got {value!r}"
            + did_you_mean(str(value), [str(c) for c in choices]))


def check(name: str, f: dataclasses.Field, value: Any) -> None:
    """Raise :class:`ConfigError` naming ``name`` unless ``value`` suits field ``f`` (its range or choices)."""
    meta = f.metadata
    if "range" in meta:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(name, f"expected a number, got {value!r}")
        lo, hi = meta["range"]
        if not lo <= value <= hi:
            raise ConfigError(name, f"must be in [{lo:g}, {hi:g}] ({meta['unit']}), got {value!r}")
    elif isinstance(value, bool) or value not in meta["choices"]:
        refused = meta["refused"]
        raise ConfigError(name, refused.format(value=value) if refused else not_one_of(value, meta["choices"]))


def same_declaration(a: dataclasses.Field, b: dataclasses.Field) -> bool:
    """Whether two fields declare the same parameter: default, range or choices (units may differ in wording)."""
    return (a.default, a.metadata.get("range"), a.metadata.get("choices")) == \
        (b.default, b.metadata.get("range"), b.metadata.get("choices"))


@dataclass(frozen=True)
class MethodParams:
    """Base of a method's parameters: every field is checked on construction.

    ``ConfigError.field`` is the field's name (the trial configuration names its own parameter)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            check(f.name, f, getattr(self, f.name))
