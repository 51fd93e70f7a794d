"""The sweep-level fields of a sweep file other than the space: the sampler and its options
(``search``), ``objectives``, counts and seconds, and what a trial holds of a node (``resources``,
``gpu_fallback``, ``pretrain_resources``). Part of :mod:`rcsweep.sweepfile`; every name is
importable from there."""
from __future__ import annotations

import dataclasses
import math

from .. import metrics_table
from ..config import parse_number
from ..errors import ConfigError, did_you_mean
from ..samplers import ALIASES, DEFAULT, SAMPLERS

SEARCH = tuple(SAMPLERS.names()) + tuple(a for a in ALIASES if a not in SAMPLERS.names())
#: what ``search`` may name, for error messages: the samplers, then the aliases of other samplers
ALLOWED_SEARCH = ", ".join(SAMPLERS.names()) + "".join(
    f"; {a} means {s}" + (" (the default)" if s == DEFAULT else "") for a, s in ALIASES.items() if a != s)
METRICS = metrics_table.OBJECTIVES  # the metrics a sweep may name as objectives
DIRECTIONS = ("max", "min")
GPU_FALLBACK = ("error", "cpu")  # a trial given a GPU on a node where CUDA is not usable: fail, or run on the CPU
GPU_SHARE_TOLERANCE = 0.01  # k trials at gpu 1/k may fill a GPU to 99%: gpu 0.33 is 1/3


def parse_search(v) -> tuple[str, dict]:
    """``search`` -> (sampler name, options): a name (``tpe``, or an alias such as ``optuna``) or
    ``{sampler: NAME, OPTION: VALUE, ...}``, options validated by the sampler's options class."""
    if v is None:
        return DEFAULT, {}
    if isinstance(v, str):
        options = {}
        name = v
    elif isinstance(v, dict):
        if "sampler" not in v:
            raise ConfigError("search.sampler", f"is missing: search: {{sampler: NAME, ...}}; samplers: {ALLOWED_SEARCH}")
        name, options = v["sampler"], {k: x for k, x in v.items() if k != "sampler"}
    else:
        raise ConfigError("search", f"must be a sampler's name or {{sampler: NAME, option: value}}, got {v!r}")
    name = ALIASES.get(name, name) if isinstance(name, str) else name
    if not isinstance(name, str) or name not in SAMPLERS.names():
        raise ConfigError("search" if isinstance(v, str) else "search.sampler",
                          f"unknown sampler {name!r}" + did_you_mean(str(name), SEARCH) + f"; samplers: {ALLOWED_SEARCH}")
    cls = SAMPLERS.get(name)
    known = [f.name for f in dataclasses.fields(cls.Params)]
    for k in options:
        if k not in known:
            raise ConfigError(f"search.{k}", f"is not an option of sampler {name}" + did_you_mean(str(k), known)
                              + (f"; its options: {', '.join(known)}" if known else "; it takes none"))
    try:
        cls.Params(**options)
    except ConfigError as e:
        raise ConfigError(f"search.{e.field}", e.message) from None
    return name, options


def mapping(data, key) -> dict:
    v = data.get(key) or {}
    if not isinstance(v, dict):
        raise ConfigError(key, f"must be a mapping, got {type(v).__name__}")
    return dict(v)


def parse_int(data, key, default, minimum):
    v = data.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(key, f"expected an integer, got {v!r}")
    if v < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {v}")
    return v


def parse_seconds(data, key):
    v = data.get(key)
    if v is None:
        return None
    x = parse_number(v, key)
    if not x > 0:
        raise ConfigError(key, f"must be > 0 seconds, got {v!r}")
    return x


def parse_resources(v) -> dict:
    if v is None:
        return {"cpu": 1.0, "gpu": 0.0}
    if not isinstance(v, dict):
        raise ConfigError("resources", f"must be a mapping like {{cpu: 1, gpu: 0}}, got {v!r}")
    for k in v:
        if k not in ("cpu", "gpu"):
            raise ConfigError(f"resources.{k}", "unknown resource; use cpu and gpu")
    cpu = parse_number(v.get("cpu", 1), "resources.cpu")
    gpu = parse_number(v.get("gpu", 0), "resources.gpu")
    if not cpu > 0:
        raise ConfigError("resources.cpu", f"must be > 0, got {cpu}")
    _gpu_share(gpu, "resources.gpu")
    return {"cpu": cpu, "gpu": gpu}


def _gpu_share(gpu: float, where: str) -> None:
    """A GPU request is a whole number of GPUs or 1/k of one (an integer k >= 2): k trials then fill
    the GPU (to within GPU_SHARE_TOLERANCE, so 0.33 is 1/3). Other fractions (0.3, 0.4, 1.5) leave
    part of every GPU unused or cannot be met by one GPU."""
    if gpu < 0:
        raise ConfigError(where, f"must be >= 0, got {gpu:g}")
    if float(gpu).is_integer():
        return
    if gpu > 1:
        raise ConfigError(where, f"fractions are only allowed below 1, got {gpu:g}; use a whole number of GPUs")
    k = round(1 / gpu)
    if not 1 - GPU_SHARE_TOLERANCE <= k * gpu <= 1:
        raise ConfigError(where, f"{gpu:g} does not divide one GPU; use a whole number or 1/k for an integer k "
                                 f"(0.5, 0.25, 1/3, ...: k trials share a GPU)")


def parse_gpu_fallback(v) -> str:
    if v is None:
        return "error"
    if v not in GPU_FALLBACK:
        raise ConfigError("gpu_fallback", f"must be one of {', '.join(GPU_FALLBACK)}; got {v!r} (cpu: a trial given "
                                          f"a GPU on a node where CUDA is not usable runs on the CPU; error: it fails)")
    return v


def parse_pretrain_resources(v, resources: dict) -> dict | None:
    """``{cpu: N}``: the most CPU threads a shared pretraining may use, at least a trial's ``cpu``."""
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ConfigError("pretrain_resources", f"must be a mapping like {{cpu: 4}}, got {v!r}")
    for k in v:
        if k == "gpu":
            raise ConfigError("pretrain_resources.gpu", "a shared pretraining runs on its trial's device; give trials "
                                                        "GPUs with resources.gpu")
        if k != "cpu":
            raise ConfigError(f"pretrain_resources.{k}", "unknown resource; use cpu")
    cpu = parse_number(v.get("cpu", resources["cpu"]), "pretrain_resources.cpu")
    if not (math.isfinite(cpu) and cpu >= resources["cpu"]):
        raise ConfigError("pretrain_resources.cpu", f"must be at least a trial's resources.cpu "
                                                    f"({resources['cpu']:g}), got {cpu:g}")
    return {"cpu": cpu}


def parse_objectives(v) -> tuple:
    if v is None:
        return metrics_table.DEFAULT_OBJECTIVES
    items = []
    if isinstance(v, dict):
        items = list(v.items())
    elif isinstance(v, list):
        for o in v:
            if isinstance(o, str) and ":" in o:
                items.append(tuple(o.split(":", 1)))
            elif isinstance(o, dict) and len(o) == 1:
                items.append(next(iter(o.items())))
            else:
                raise ConfigError("objectives", f"entries look like 'robust_acc:max'; got {o!r}")
    else:
        raise ConfigError("objectives", f"must be a mapping {{metric: max|min}} or a list, got {v!r}")
    if not items:
        raise ConfigError("objectives", "needs at least one metric")
    seen = set()
    for metric, direction in items:
        if metric not in METRICS:
            raise ConfigError(f"objectives.{metric}", "is not a metric" + did_you_mean(str(metric), METRICS)
                              + f"; metrics: {', '.join(METRICS)}")
        if direction not in DIRECTIONS:
            raise ConfigError(f"objectives.{metric}", f"direction must be max or min, got {direction!r}")
        if metric in seen:
            raise ConfigError(f"objectives.{metric}", "is given twice")
        seen.add(metric)
    return tuple((m, d) for m, d in items)

