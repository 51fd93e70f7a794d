"""Values as YAML, ``--set`` and result tables give them, turned into a trial parameter's type.

:func:`parse_number` reads numbers and fractions (``'8/255'``); :func:`coerce` converts a value to a
field's declared type (``int``, ``float``, ``str``, ``tuple`` of numbers, each maybe ``Optional``)
or raises :class:`ConfigError` naming the field; :func:`one_of` and :func:`positive` are the checks
:class:`~rcsweep.config.TrialConfig` shares with the sweep-file schema.
"""
from __future__ import annotations

import math
import re
from typing import Any

from ..errors import ConfigError
from ..method_params import not_one_of

_FRACTION = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?)\s*/\s*(\d+(?:\.\d*)?)\s*$")


def parse_number(value: Any, name: str = "value") -> float:
    """A float from a number or a fraction string such as ``'8/255'``."""
    if isinstance(value, bool):
        raise ConfigError(name, f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _FRACTION.match(value)
        if m:
            den = float(m.group(2))
            if den == 0:
                raise ConfigError(name, f"division by zero in {value!r}")
            return float(m.group(1)) / den
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(name, f"expected a number, got {value!r}")


def coerce(name: str, value: Any, typ: str) -> Any:
    """``value`` as field ``name`` of declared type ``typ`` (``"Optional[int]"``, ``"tuple"``, ...)."""
    optional = typ.startswith("Optional[")
    base = typ[len("Optional["):-1] if optional else typ
    if value is None:
        if optional:
            return None
        raise ConfigError(name, "must not be empty")
    if base == "str":
        if not isinstance(value, str):
            raise ConfigError(name, f"expected a string, got {value!r}")
        return value
    if base == "int":
        if isinstance(value, bool):
            raise ConfigError(name, f"expected an integer, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value) if "." in value or "e" in value.lower() else int(value)
            except ValueError:
                raise ConfigError(name, f"expected an integer, got {value!r}") from None
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(name, f"expected an integer, got {value!r}")
            value = int(value)
        if not isinstance(value, int):
            raise ConfigError(name, f"expected an integer, got {value!r}")
        return value
    if base == "float":
        x = parse_number(value, name)
        if not math.isfinite(x):
            raise ConfigError(name, f"must be finite, got {value!r}")
        return x
    if base == "tuple":
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(name, f"expected a list of numbers, got {value!r}")
        return tuple(parse_number(v, name) for v in value)
    raise AssertionError(f"unhandled field type {typ}")


def one_of(name: str, value: str, choices: tuple):
    if value not in choices:
        raise ConfigError(name, not_one_of(value, choices))


def positive(name: str, value):
    if not value > 0:
        raise ConfigError(name, f"must be > 0, got {value}")
