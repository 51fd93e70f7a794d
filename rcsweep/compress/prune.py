"""Unstructured magnitude pruning with ``torch.nn.utils.prune``.

``sparsity`` is the fraction of the prunable weights (every Conv2d / Linear weight except the
classifier's) set to zero: the smallest ``|w|`` over all of them (``prune_scope: global``) or in each
layer (``layer``). The masks stay as ``torch.nn.utils.prune`` keeps them, a ``weight_mask`` buffer
next to a ``weight_orig`` parameter, so they are saved with the state_dict, re-created by
:meth:`UnstructuredPrune.restore`, and applied on every forward pass, during fine-tuning included.
:func:`rcsweep.load_model` bakes the masks into plain weights (:func:`~rcsweep.compress.freeze_`).

Target and tolerance: ``torch.nn.utils.prune`` masks ``round(sparsity x n)`` weights of the ``n`` it
ranks together (all prunable weights for ``global``, each layer's for ``layer``), so the masked
fraction (``info["achieved"]``) is within ``info["tolerance"]`` = ``0.5 / N`` (global) or
``0.5 x layers / N`` (per layer) of ``sparsity``, ``N`` the prunable weights; anything else raises
:class:`~rcsweep.compress.base.TargetNotReached`. Every sparsity in [0, 0.99] is reachable, and the
number of weights masked never decreases as ``sparsity`` grows. Weights that quantization later
rounds to zero are not masked and not counted here (``sparsity_measured`` counts them).
"""
from __future__ import annotations

import torch
from torch.nn.utils import prune

from ..compress_params import UnstructuredPruneParams
from .base import Compressor, TargetNotReached, prunable_layers, submodule


class UnstructuredPrune(Compressor):
    """Global (default) or per-layer L1 magnitude pruning of individual weights; parameters
    :class:`~rcsweep.compress_params.UnstructuredPruneParams` (``sparsity``, ``prune_scope``)."""

    Params = UnstructuredPruneParams

    def apply(self, model, calib, device):
        self.layers = prunable_layers(model, tuple(calib[0].shape[1:]))
        amount, scope = float(self.cfg.sparsity), self.cfg.prune_scope or "global"
        if scope == "global":
            prune.global_unstructured([(m, "weight") for _, m in self.layers], prune.L1Unstructured, amount=amount)
        else:
            for _, m in self.layers:
                prune.l1_unstructured(m, "weight", amount=amount)
        _keep_copyable(self.layers)
        check = self.check(model)
        return {"scope": scope, "layers": [n for n, _ in self.layers], "masked_fraction": check["achieved"], **check}

    def restore(self, model, info):
        self.layers = [(n, submodule(model, n)) for n in info["layers"]]
        for _, m in self.layers:
            prune.identity(m, "weight")  # all-ones mask; load_state_dict fills in the saved one
        _keep_copyable(self.layers)

    def check(self, model):
        """Masked fraction of the prunable weights against ``sparsity`` (see the module docstring)."""
        target, scope = float(self.cfg.sparsity), self.cfg.prune_scope or "global"
        total = sum(m.weight_mask.numel() for _, m in self.layers)
        achieved = sum(int((m.weight_mask == 0).sum()) for _, m in self.layers) / total
        tol = 0.5 * (len(self.layers) if scope == "layer" else 1) / total
        if abs(achieved - target) > tol + 1e-12:
            raise TargetNotReached(f"compression {self.cfg.compression}: model {self.cfg.model!r} has "
                                   f"{achieved:.4f} of its prunable weights masked, asked for sparsity {target:g} "
                                   f"(tolerance {tol:.2g}, {scope} scope)")
        return {"target": target, "achieved": achieved, "tolerance": tol}

    @torch.no_grad()
    def enforce(self, model):
        # The mask is applied on every forward anyway; zeroing the hidden weights too keeps
        # momentum and weight decay from growing them back into a saved file.
        for _, m in self.layers:
            m.weight_orig.mul_(m.weight_mask)

    @torch.no_grad()
    def finalize(self, model):
        self.enforce(model)
        for _, m in self.layers:  # ``m.weight`` is only recomputed in a forward: make it current now
            m.weight = (m.weight_orig * m.weight_mask).detach()


def bake_mask_(m) -> None:
    """Make a pruned layer plain in place: ``weight`` becomes a Parameter holding ``weight_orig x
    weight_mask`` (``torch.nn.utils.prune.remove``) and the hook of :func:`_keep_copyable` goes.
    Nothing for a layer that is not pruned."""
    if not hasattr(m, "weight_mask"):
        return
    prune.remove(m, "weight")
    for key, hook in list(m._forward_hooks.items()):
        if hook is _detach_weight:
            del m._forward_hooks[key]


def _detach_weight(m, inputs, output):
    if hasattr(m, "weight_orig"):  # still pruned (prune.remove makes weight a Parameter again)
        m.weight = m.weight.detach()


def _keep_copyable(layers) -> None:
    """After each forward, replace the ``weight`` that the prune hook computed (a non-leaf tensor
    with a graph) by its detached value: the graph keeps its own reference, and the model stays
    ``copy.deepcopy``-able, which torch refuses for modules holding non-leaf tensors."""
    for _, m in layers:
        m.weight = m.weight.detach()
        m.register_forward_hook(_detach_weight)
