"""Fake quantization of every Conv2d / Linear (classifier and first layer included) at ``weight_bits``
per-channel symmetric weights and ``act_bits`` per-tensor activations (see :mod:`.fake_quant`).

Modes (``quant_mode``), in torchao's prepare -> train -> convert shape:

- ``ptq``: weight clipping and activation ranges are calibrated once on the ``val`` split (at most
  ``CALIB_EXAMPLES`` images) and then frozen. Fine-tuning, if any, trains the float weights
  through the frozen quantizers with the straight-through estimator.
- ``qat``: the same calibration as a starting point, then quantization stays in the loop *and
  adapts* while fine-tuning: after every optimiser step each weight scale follows max|w| of its
  channel (as torch's QAT observers do; calibration ends by rounding the weights onto the grid,
  so this starts from exactly the MSE-calibrated scales), and in training mode activation ranges
  follow a moving average of each batch's range (the adversarial batches when fine-tuning
  adversarially).
  With ``finetune: none`` (or 0 epochs) there is no training loop to put quantization in: the model
  is the PTQ-calibrated one, and ``info["mode_effective"]`` records ``"ptq"``.

:meth:`FakeQuant.finalize` (the "convert" step, run after calibration and after fine-tuning) rounds
the stored weights onto their grid, so the saved weights are exactly ``code x scale`` with integer
codes in ``[-(2^(b-1) - 1), 2^(b-1) - 1]``. Attacks always run on this differentiable model.

Target and tolerance (:meth:`FakeQuant.check`, after calibration and again after fine-tuning): every
quantized layer runs at exactly ``weight_bits`` / ``act_bits``; every stored weight is an integer code
(within 0.01, float32 division error at 16 bits) x its channel's scale with ``|code| <= 2^(b-1) - 1``;
and the bits the widest layer's codes need (``info["achieved"]["weight_bits"]``, the trial's
``weight_bits_measured``) equal ``weight_bits`` right after calibration (every channel's largest
weight sits at the top code) and never exceed it after fine-tuning (PTQ weights that shrank may need
fewer). Activation ranges must be finite with ``lo < hi``. Anything else raises
:class:`~rcsweep.compress.base.TargetNotReached`. 32 bits means float and is reached trivially.
"""
from __future__ import annotations

import math

import torch

from ..compress_params import QuantParams
from .base import LAYER_TYPES, Compressor, TargetNotReached, float_weight, layers_in_order, submodule
from .fake_quant import quantize_layer_

CALIB_EXAMPLES = 512


class FakeQuant(Compressor):
    """Simulated quantization, PTQ or QAT; see the module docstring. Parameters
    :class:`~rcsweep.compress_params.QuantParams` (``weight_bits``, ``act_bits``, ``quant_mode``, ``quant_scheme``)."""

    Params = QuantParams

    def apply(self, model, calib, device):
        cfg = self.cfg
        x = calib[0][:CALIB_EXAMPLES].to(device)
        self.layers = [(n, m) for n, m in layers_in_order(model, tuple(x.shape[1:])) if type(m) in LAYER_TYPES]
        for _, m in self.layers:
            quantize_layer_(m, cfg.weight_bits, cfg.act_bits, cfg.quant_scheme)
            m.weight_quant.calibrate(float_weight(m))
            m.act_quant.calibrate_next = True
        was = model.training
        model.eval()
        with torch.no_grad():
            model(x)  # calibrates every activation quantizer, in execution order
        model.train(was)
        trains = cfg.finetune != "none" and (cfg.finetune_epochs or 0) > 0
        mode = cfg.quant_mode if (cfg.quant_mode == "ptq" or trains) else "ptq"
        self.finalize(model)  # before QAT tracking starts: see WeightFakeQuant.track
        self._set_mode(mode)
        check = self.check(model, exact=True)
        info = {"weight_bits": cfg.weight_bits, "act_bits": cfg.act_bits, "mode": cfg.quant_mode,
                "mode_effective": mode, "layers": [n for n, _ in self.layers], "calib_examples": len(x),
                "scheme": cfg.quant_scheme,
                "weights": "per-channel symmetric, MSE-optimal clipping" if cfg.quant_scheme == "mse_channel"
                else "per-tensor symmetric, min-max (max|w|)",
                "activations": ("per-tensor affine, " + ("MSE-optimal range" if cfg.quant_scheme == "mse_channel"
                                                         else "min-max range") + ", calibrated layer by layer")}
        if mode != cfg.quant_mode:
            info["note"] = "quant_mode qat without fine-tuning has no training loop: PTQ calibration used"
        return {**info, **check}

    def restore(self, model, info):
        self.layers = [(n, submodule(model, n)) for n in info["layers"]]
        for _, m in self.layers:
            quantize_layer_(m, info["weight_bits"], info["act_bits"], info.get("scheme", "mse_channel"))
        self._set_mode(info.get("mode_effective", "ptq"))

    @torch.no_grad()
    def check(self, model, exact: bool = False):
        """Bit-widths and grids of every quantized layer against the config (module docstring);
        ``exact``: the widest layer's codes must need exactly ``weight_bits`` (after calibration)."""
        want = {"weight_bits": int(self.cfg.weight_bits), "act_bits": int(self.cfg.act_bits)}
        need = 1 if want["weight_bits"] < 32 else 32
        for name, m in self.layers:
            wq, aq = m.weight_quant, m.act_quant
            if (wq.bits, aq.bits) != (want["weight_bits"], want["act_bits"]):
                self._missed(f"layer {name} runs at w{wq.bits}a{aq.bits}")
            if aq.bits < 32 and not (torch.isfinite(aq.lo) and torch.isfinite(aq.hi) and aq.lo < aq.hi):
                self._missed(f"layer {name} has the activation range [{float(aq.lo):g}, {float(aq.hi):g}]")
            if wq.bits < 32:
                w = float_weight(m)
                codes = wq.codes(w)
                off = float((codes - codes.round()).abs().max()) if w.numel() else 0.0
                top = int(codes.round().abs().max()) if w.numel() else 0
                if off > 0.01 or top > wq.qmax:
                    self._missed(f"layer {name} holds weights off its {wq.bits}-bit grid (codes up to {top}, "
                                 f"{off:.2g} from an integer)")
                need = max(need, math.ceil(math.log2(2 * top + 1)) if top else 1)
        achieved = {"weight_bits": need, "act_bits": want["act_bits"]}
        if need > want["weight_bits"] or (exact and need != want["weight_bits"] and any(
                bool((float_weight(m) != 0).any()) for _, m in self.layers)):
            self._missed(f"its weight codes need {need} bits")
        return {"target": want, "achieved": achieved}

    def _missed(self, what: str):
        c = self.cfg
        raise TargetNotReached(f"compression {c.compression}: model {c.model!r} asked for "
                               f"w{c.weight_bits}a{c.act_bits}, but {what}")

    def _set_mode(self, mode: str) -> None:
        self.qat = mode == "qat"
        for _, m in self.layers:
            m.act_quant.tracking = self.qat

    @torch.no_grad()
    def enforce(self, model):
        if self.qat:
            for _, m in self.layers:
                m.weight_quant.track(float_weight(m))

    @torch.no_grad()
    def finalize(self, model):
        for _, m in self.layers:
            w = m.weight_quant(float_weight(m))
            if hasattr(m, "weight_orig"):
                m.weight_orig.copy_(w)
                m.weight = (m.weight_orig * m.weight_mask).detach()  # current without waiting for a forward
            else:
                m.weight.copy_(w)
