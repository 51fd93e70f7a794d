"""The compression methods' parameters: one frozen dataclass per method, and the registry of names.

``COMPRESSION_METHODS`` maps each ``compression`` name to the parameter classes of its parts, in
order: one for a single method, several for a chain (``prune_quant`` is unstructured pruning, then
quantization), which takes the union of its parts' parameters. The trial configuration derives
from it the names ``compression`` accepts, the trial parameters (flat, unprefixed: ``sparsity``,
``weight_bits``, as in every sweep file, ``record.json`` and ``results.csv``), their defaults,
validation and when they apply, the sweep file's rules and the conditional search space.

Why this module is separate from :mod:`rcsweep.compress`: the trial configuration must not import
torch (``rcsweep validate`` and the sweep-file checks run without it), while the compressors are
torch through and through and importing any of them runs ``rcsweep.compress.__init__``, which imports
torch and the configuration itself. So the parameter declarations, which need neither, live here;
each :class:`~rcsweep.compress.base.Compressor` points at its class (``Params``), and the contract
suite (tests/test_compress_contract.py) checks that ``COMPRESSORS`` and this registry name the same
methods with the same parts. A new compressor is its module in ``rcsweep/compress/`` (a
:class:`~rcsweep.compress.base.Compressor` whose ``Params`` is its parameter class), its parameter
class here, naming that module in ``compressor`` (and its key in a chain's ``info``, ``part``), and
**one registration line** here: ``rcsweep.compress`` builds its ``COMPRESSORS`` from this registry,
importing each part's compressor by name (so this module stays torch-free) and chaining the parts
of a multi-part method.

A parameter several methods take (``sparsity``) has one definition (:func:`_sparsity`) that each
method's class uses, and :func:`trial_params` refuses two declarations of one name that differ.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from .method_params import MethodParams, choice, param, same_declaration
from .registry import Registry

BITS = tuple(range(2, 17)) + (32,)  # 32 means float


def _sparsity():
    """``sparsity`` (default 0.5, in [0, 0.99]), as unstructured and structured pruning both take it."""
    return param(0.5, 0.0, 0.99, "fraction of prunable weights or channels removed")


def _bits(what: str):
    return choice(8, BITS, f"bits per {what}; 32 is float",
                  refused="unsupported bit-width {value}; use 2..16 or 32 (float)")


@dataclass(frozen=True)
class UnstructuredPruneParams(MethodParams):
    """Unstructured magnitude pruning (:mod:`rcsweep.compress.prune`)."""

    part: ClassVar[str] = "prune"  # its key in a chain's info
    compressor: ClassVar[str] = "rcsweep.compress.prune:UnstructuredPrune"

    sparsity: float = _sparsity()
    prune_scope: str = choice("global", ("global", "layer"), "weights ranked together: all prunable ones or each layer's")


@dataclass(frozen=True)
class StructuredPruneParams(MethodParams):
    """Channel pruning (:mod:`rcsweep.compress.structured`)."""

    part: ClassVar[str] = "structured"  # its key in a chain's info
    compressor: ClassVar[str] = "rcsweep.compress.structured:StructuredPrune"

    sparsity: float = _sparsity()


@dataclass(frozen=True)
class QuantParams(MethodParams):
    """Fake quantization, PTQ or QAT (:mod:`rcsweep.compress.quant`)."""

    part: ClassVar[str] = "quant"  # its key in a chain's info
    compressor: ClassVar[str] = "rcsweep.compress.quant:FakeQuant"

    weight_bits: int = _bits("weight")
    act_bits: int = _bits("activation (the input of every quantized layer)")
    quant_mode: str = choice("ptq", ("ptq", "qat"), "ptq: calibrated once; qat: quantization in the fine-tuning loop")
    quant_scheme: str = choice("mse_channel", ("mse_channel", "minmax_tensor"),
                               "rcsweep's quantizer, or the study's (Thorsteinsson et al.)")


COMPRESSION_METHODS: Registry = Registry("compression")
COMPRESSION_METHODS.register("prune")((UnstructuredPruneParams,))
COMPRESSION_METHODS.register("prune_structured")((StructuredPruneParams,))
COMPRESSION_METHODS.register("quant")((QuantParams,))
COMPRESSION_METHODS.register("prune_quant")((UnstructuredPruneParams, QuantParams))
COMPRESSION_METHODS.register("prune_structured_quant")((StructuredPruneParams, QuantParams))


def includes(compression: str, part: type) -> bool:
    """Whether the registered method ``compression`` has a part with parameter class ``part``
    (``includes("prune_structured_quant", StructuredPruneParams)``); False for any other name."""
    return compression in COMPRESSION_METHODS.names() and part in COMPRESSION_METHODS.get(compression)


def trial_params() -> dict[str, tuple[dataclasses.Field, tuple[str, ...]]]:
    """Every compression parameter: name -> (its field, the methods that take it), in the order the
    methods were registered. Raises ValueError where two methods declare one name differently."""
    out: dict[str, tuple[dataclasses.Field, tuple[str, ...]]] = {}
    for method in COMPRESSION_METHODS.in_order():
        for part in COMPRESSION_METHODS.get(method):
            for f in dataclasses.fields(part):
                first, methods = out.get(f.name, (f, ()))
                if not same_declaration(first, f):
                    raise ValueError(f"compression parameter {f.name!r} is declared twice, differently "
                                     f"({part.__name__} and a part of {methods[0]})")
                if method not in methods:
                    out[f.name] = (first, methods + (method,))
    return out
