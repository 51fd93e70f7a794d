"""A digits model trained once per test session for the compression tests, and configs for each
registered compressor."""
from __future__ import annotations

import copy
import functools

from rcsweep.compress import COMPRESSORS
from rcsweep.compress_params import QuantParams, includes
from rcsweep.config import TrialConfig, applicable
from rcsweep.pipeline import TrialData, load_trial_data, pretrain

BASE = dict(dataset="digits", batch_size=32, pretrain_epochs=8, seed=0)


@functools.lru_cache(maxsize=1)
def _pretrained():
    cfg = TrialConfig(**BASE)
    data = load_trial_data(cfg)
    model, _ = pretrain(cfg, data, "cpu")
    return data, model.eval()


def digits_model():
    """(data, a fresh copy of a standard digits_cnn trained for 8 epochs, ~0.97 clean accuracy)."""
    data, model = _pretrained()
    return data, copy.deepcopy(model)


def small_train(data: TrialData, n: int = 400) -> TrialData:
    """The same data with only the first ``n`` training images (fast fine-tuning)."""
    return TrialData(data.info, (data.train[0][:n], data.train[1][:n]), data.val, data.test)


def cases() -> dict[str, dict]:
    """Config overrides for every registered compressor (sparsity 0.5, 4-bit weights), and QAT too."""
    out = {}
    for name in COMPRESSORS.names():
        kw = {"compression": name}
        if applicable("sparsity", kw):
            kw["sparsity"] = 0.5
        if includes(name, QuantParams):
            kw.update(weight_bits=4, act_bits=8)
        out[name] = kw
        if includes(name, QuantParams):
            out[f"{name}-qat"] = {**kw, "quant_mode": "qat"}
    return out


def config(**kw) -> TrialConfig:
    return TrialConfig(**{**BASE, **kw})
