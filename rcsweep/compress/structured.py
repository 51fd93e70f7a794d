"""Structured (filter) pruning that physically removes channels, with Torch-Pruning.

``sparsity`` is the fraction of output channels removed from each prunable layer (every Conv2d /
Linear except the classifier), chosen by the L1 norm of their filters, as in the study. Torch-Pruning
follows the dependency graph, so the next layer's input channels, BatchNorm and channels coupled by
residual additions (ResNet-18) are removed together and the model stays valid; the result is a
smaller dense model with real speed-ups. Coupled layers are pruned as one group with the group's
summed L1 importance (Torch-Pruning's ``MagnitudeImportance(p=1)``, computed on the dense model).

Target and tolerance: a layer (or coupled group) of ``c`` output channels loses exactly
:func:`removed_count` = ``round(sparsity x c)`` channels (halves round up) and keeps at least one,
so the count never decreases as ``sparsity`` grows, and the fraction of all prunable channels removed
(``info["achieved"]``, the trial's ``channels_removed``) is within ``info["tolerance"]`` =
``0.5 x layers / channels`` of ``sparsity``. The largest reachable sparsity is therefore
``(c_min - 1) / c_min`` for the narrowest prunable layer (:func:`max_structured_sparsity`); a larger
one raises :class:`~rcsweep.compress.base.TargetNotReached` before anything is removed, and so does a
layer that Torch-Pruning left at another size (it used to skip, silently, a group that would have
been left with no channel, so 0.99 removed nothing). Torch-Pruning's own pruner loop is not used for
that reason: it floors the channels kept and skips such groups; the selection here is the same L1
ranking with exact counts, and Torch-Pruning still removes the channels.

:meth:`StructuredPrune.restore` shrinks a freshly built dense model to the saved channel counts
(which channels are dropped does not matter: the saved weights replace them).
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

from ..compress_params import StructuredPruneParams, includes
from ..device import rng_kept
from ..errors import CheckpointError, UserError
from .base import Compressor, TargetNotReached, layers_in_order, prunable_layers, submodule

REACH_EPS = 1e-6  # a target this far above the limit (a rounded 2/3) still counts as the limit


def out_channels(m: nn.Module) -> int:
    return m.out_channels if isinstance(m, nn.Conv2d) else m.out_features


def removed_count(sparsity: float, channels: int) -> int:
    """Output channels removed from a layer of ``channels`` at ``sparsity``: ``round(sparsity x
    channels)``, halves rounded up (a hair of slack absorbs float error such as ``0.3 x 10``)."""
    return int(math.floor(sparsity * channels + 0.5 + 1e-9))


def reachable_limit(layers: list[tuple[str, nn.Module]]) -> tuple[float, str, int]:
    """``(largest sparsity, narrowest layer's name, its channels)`` over prunable ``layers``:
    ``(c - 1) / c`` of the narrowest one, which keeps a single channel there. ``(0.0, "", 0)`` for none."""
    if not layers:
        return 0.0, "", 0
    name, c = min(((n, out_channels(m)) for n, m in layers), key=lambda t: t[1])
    return (c - 1) / c, name, c


@functools.lru_cache(maxsize=None)
def structured_limit(model_name: str, dataset: str, width: float = 1.0) -> tuple[float, str, int]:
    """:func:`reachable_limit` of a freshly built registered model (cached; torch's RNG is left as it was)."""
    from ..data import dataset_info
    from ..models import build_model

    with rng_kept():
        model = build_model(model_name, dataset, width)
    return reachable_limit(prunable_layers(model, tuple(dataset_info(dataset).shape)))


def max_structured_sparsity(model_name: str, dataset: str, width: float = 1.0) -> float:
    """The largest ``sparsity`` structured pruning reaches on ``model_name`` built for ``dataset`` at
    ``width``: ``(c - 1) / c`` for the prunable layer (every Conv2d / Linear but the classifier) with
    the fewest output channels ``c`` (coupled layers share a count). Cached per arguments.
    E.g. digits_cnn at width 1: 15/16 = 0.9375 (its first conv has 16 channels).

    Raises UserError for an unknown model or dataset."""
    return structured_limit(model_name, dataset, float(width))[0]


def beyond_limit_message(sparsity: float, model: str, limit: tuple[float, str, int], width: float = 1.0) -> str:
    """The one-line reason a structured ``sparsity`` cannot be reached (shared by the compressor and
    the sweep-file validation)."""
    reach, layer, c = limit
    at = "" if float(width) == 1.0 else f" at width {width:g}"
    return (f"{sparsity:g} is beyond the largest structured sparsity model {model}{at} reaches ({reach:.6g}: "
            f"layer {layer} has {c} output channels and keeps at least one)")


def check_structured_target(cfg) -> None:
    """Raise :class:`~rcsweep.compress.base.TargetNotReached` (one line) when ``cfg`` (a TrialConfig)
    asks structured pruning for a ``sparsity`` its model cannot reach, before any training is spent;
    nothing for other compressions. The compressor checks the same again on the actual model."""
    if not includes(cfg.compression, StructuredPruneParams):
        return
    limit = structured_limit(cfg.model, cfg.dataset, float(cfg.width))
    if cfg.sparsity > limit[0] + REACH_EPS:
        why = beyond_limit_message(cfg.sparsity, cfg.model, limit, cfg.width)
        raise TargetNotReached(f"compression {cfg.compression}: sparsity {why}")


class StructuredPrune(Compressor):
    """L1-norm filter pruning: ``sparsity`` of the output channels of each prunable layer removed;
    parameters :class:`~rcsweep.compress_params.StructuredPruneParams`."""

    Params = StructuredPruneParams

    def apply(self, model, calib, device):
        example = calib[0][:1].to(device)
        layers = layers_in_order(model, tuple(example.shape[1:]))
        name = self.cfg.compression
        if len(layers) < 2:
            raise UserError(f"compression {name}: model {self.cfg.model!r} has no layer whose "
                            f"channels can be removed (it has no Conv2d/Linear besides its classifier)")
        target, limit = float(self.cfg.sparsity), reachable_limit(layers[:-1])
        if target > limit[0] + REACH_EPS:
            why = beyond_limit_message(target, self.cfg.model, limit, self.cfg.width)
            raise TargetNotReached(f"compression {name}: sparsity {why}")
        self.dense = {n: out_channels(m) for n, m in layers[:-1]}
        was = model.training
        model.eval()  # Torch-Pruning traces with a forward pass: keep BatchNorm statistics untouched
        try:
            _prune_groups(model, example, layers[-1][1], target)
            with torch.no_grad():
                model(example)  # a model Torch-Pruning mis-traced fails here, not later in training
        except Exception as e:  # noqa: BLE001 - any failure inside Torch-Pruning means "cannot prune this model"
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"compression {name}: cannot remove channels from model "
                            f"{self.cfg.model!r} ({type(e).__name__}: {msg})") from None
        finally:
            model.train(was)
        check = self.check(model)
        kept = {n: out_channels(submodule(model, n)) for n in self.dense}
        return {"out_channels_dense": self.dense, "out_channels": kept, "channel_fraction_removed": check["achieved"],
                "max_sparsity": limit[0], **check}

    def check(self, model):
        """Per layer exactly :func:`removed_count` channels gone (see the module docstring)."""
        target = float(self.cfg.sparsity)
        kept = {n: out_channels(submodule(model, n)) for n in self.dense}
        for n, c in self.dense.items():
            if c - kept[n] != removed_count(target, c):
                raise TargetNotReached(f"compression {self.cfg.compression}: model {self.cfg.model!r} at sparsity "
                                       f"{target:g}: layer {n} kept {kept[n]} of {c} output channels, the target "
                                       f"removes {removed_count(target, c)}")
        total = sum(self.dense.values())
        return {"target": target, "achieved": 1 - sum(kept.values()) / total,
                "tolerance": 0.5 * len(self.dense) / total}

    def restore(self, model, info):
        from ..data import dataset_info

        self.dense = dict(info.get("out_channels_dense") or {})  # for check(); earlier versions saved it too

        tp = _torch_pruning()
        example = torch.zeros(1, *dataset_info(self.cfg.dataset).shape)
        model.eval()
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        for name, n_keep in info["out_channels"].items():
            m = submodule(model, name)
            have = out_channels(m)
            if have > n_keep:  # layers coupled to an earlier one are already at their size
                fn = tp.prune_conv_out_channels if isinstance(m, nn.Conv2d) else tp.prune_linear_out_channels
                graph.get_pruning_group(m, fn, idxs=list(range(n_keep, have))).prune()
        got = {n: out_channels(submodule(model, n)) for n in info["out_channels"]}
        if got != info["out_channels"]:
            bad = next(n for n in got if got[n] != info["out_channels"][n])
            raise CheckpointError(f"cannot rebuild the pruned structure: layer {bad} has {got[bad]} channels, "
                                  f"the saved model {info['out_channels'][bad]}")


def _torch_pruning():
    """Torch-Pruning, imported when channels are removed: trials without structured pruning (and a
    bare GPU machine's check, benchmarks/gpu_check.py) run without it installed."""
    try:
        import torch_pruning
    except ImportError:
        raise UserError("structured pruning needs Torch-Pruning, which is not installed: "
                        "pip install torch-pruning") from None
    return torch_pruning


def _prune_groups(model: nn.Module, example: torch.Tensor, classifier: nn.Module, sparsity: float) -> None:
    """Remove :func:`removed_count` output channels of every Torch-Pruning group rooted at a
    Conv2d / Linear (the classifier's outputs stay), the lowest group L1 importance first; every
    group is ranked on the dense model before any is pruned."""
    tp = _torch_pruning()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    importance = tp.importance.MagnitudeImportance(p=1)
    plans = []
    for group in graph.get_all_groups(ignored_layers=[classifier], root_module_types=[nn.Conv2d, nn.Linear]):
        root, fn = group[0].dep.target.module, group[0].dep.handler
        n = removed_count(sparsity, graph.get_out_channels(root))
        if n:
            scores = importance(group)
            if scores is None:
                raise RuntimeError(f"Torch-Pruning cannot rank the channels of {type(root).__name__}")
            plans.append((root, fn, torch.argsort(scores)[:n].tolist()))
    for root, fn, idxs in plans:
        group = graph.get_pruning_group(root, fn, idxs)
        if not graph.check_pruning_group(group):
            raise RuntimeError(f"removing {len(idxs)} channels would leave a layer of {type(root).__name__} empty")
        group.prune()
