"""Structured (filter) pruning that physically removes channels, with Torch-Pruning.

``sparsity`` is the fraction of output channels removed from each prunable layer (every Conv2d /
Linear except the classifier), chosen by the L1 norm of their filters, as in the study. Torch-Pruning
follows the dependency graph, so the next layer's input channels, BatchNorm and channels coupled by
residual additions (ResNet-18) are removed together and the model stays valid; the result is a
smaller dense model with real speed-ups. Coupled layers are pruned as one group with the group's
summed L1 importance.

:meth:`StructuredPrune.restore` shrinks a freshly built dense model to the saved channel counts
(which channels are dropped does not matter: the saved weights replace them).
"""
from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from ..errors import CheckpointError, UserError
from .base import Compressor, layers_in_order, submodule


def out_channels(m: nn.Module) -> int:
    return m.out_channels if isinstance(m, nn.Conv2d) else m.out_features


class StructuredPrune(Compressor):
    """L1-norm filter pruning: ``sparsity`` of the output channels of each prunable layer removed."""

    def apply(self, model, calib, device):
        example = calib[0][:1].to(device)
        layers = layers_in_order(model, tuple(example.shape[1:]))
        if len(layers) < 2:
            raise UserError(f"compression {self.cfg.compression}: model {self.cfg.model!r} has no layer whose "
                            f"channels can be removed (it has no Conv2d/Linear besides its classifier)")
        dense = {n: out_channels(m) for n, m in layers[:-1]}
        was = model.training
        model.eval()  # Torch-Pruning traces with a forward pass: keep BatchNorm statistics untouched
        try:
            pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                               pruning_ratio=float(self.cfg.sparsity), ignored_layers=[layers[-1][1]])
            pruner.step()
            with torch.no_grad():
                model(example)  # a model Torch-Pruning mis-traced fails here, not later in training
        except Exception as e:  # noqa: BLE001 - any failure inside Torch-Pruning means "cannot prune this model"
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"compression {self.cfg.compression}: cannot remove channels from model "
                            f"{self.cfg.model!r} ({type(e).__name__}: {msg})") from None
        kept = {n: out_channels(m) for n, m in layers[:-1]}
        return {"target": float(self.cfg.sparsity), "out_channels_dense": dense, "out_channels": kept,
                "channel_fraction_removed": 1 - sum(kept.values()) / sum(dense.values())}

    def restore(self, model, info):
        from ..data import dataset_info

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

