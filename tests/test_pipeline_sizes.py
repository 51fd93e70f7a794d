"""Sizes known before training (issue 15): :func:`rcsweep.pipeline.sizes_before_training` measures a
configuration's compressed sizes on an untrained copy, without data, and they are the trained
model's; the sweep layer hands them to the sampler (``SizeProbe``, ``SamplerContext.measure``)."""
import math

import pytest
import torch

from rcsweep.compress import compress_
from rcsweep.config import TrialConfig
from rcsweep.metrics import efficiency
from rcsweep.pipeline import load_trial_data, pretrain, sizes_before_training
from rcsweep.sweep.study import SizeProbe
from rcsweep.sweepfile import load_sweep

BASE = dict(dataset="digits", pretrain_epochs=1, finetune="none", seed=3)


@pytest.fixture(scope="module")
def trained():
    """A dense digits model trained for one epoch, and the data it was trained on."""
    cfg = TrialConfig.from_flat(BASE)
    data = load_trial_data(cfg)
    model, _ = pretrain(cfg, data, "cpu")
    return model.state_dict(), data


@pytest.mark.parametrize("compression, exact", [({"compression": "prune_structured", "sparsity": 0.7}, True),
                                                ({"compression": "prune_structured", "sparsity": 0.1}, True),
                                                ({"compression": "quant", "weight_bits": 8}, True),
                                                ({"compression": "quant", "weight_bits": 2}, False)])
def test_the_sizes_of_an_untrained_copy_are_the_trained_models(trained, compression, exact):
    from rcsweep.models import build_model

    weights, data = trained
    cfg = TrialConfig.from_flat({**BASE, **compression})
    model = build_model(cfg.model, data.info, cfg.width)
    model.load_state_dict(weights)
    dense = sum(p.numel() for p in model.parameters())
    compress_(model, cfg, calib=data.val)  # calibrated on real images, as a trial is
    want = efficiency(model, cfg, data.info.shape, dense, latency=False)
    got = sizes_before_training(cfg)
    assert got["params"] == want["params"] and got["macs"] == want["macs"]
    # weights on the zero code move the nonzero counts (and model_bits of low-bit layers) a little
    assert got["model_bits"] == want["model_bits"] if exact else got["model_bits"] == pytest.approx(want["model_bits"], rel=0.01)
    for k in ("bops", "macs_nonzero", "params_nonzero"):
        assert got[k] == pytest.approx(want[k], rel=0.01), k
    assert got["model_bits"] < 32 * dense


def test_measuring_leaves_torchs_random_stream_as_it_was():
    torch.manual_seed(0)
    sizes_before_training(TrialConfig.from_flat({**BASE, "compression": "quant", "weight_bits": 4}))
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


SWEEP = {"fixed": {"dataset": "digits", "pretrain_epochs": 1},
         "objectives": {"robust_acc": "max", "model_bits": "min"},
         "space": {"compression": {"choice": ["prune_structured", "quant"]},
                   "sparsity": {"uniform": [0.1, 0.9]}, "weight_bits": {"choice": [8, 2]},
                   "finetune": {"choice": ["none", "clean"]}}}


def test_the_probe_tells_the_size_objective_as_the_study_is_told_it():
    probe = SizeProbe(load_sweep(SWEEP))
    got = probe({"compression": "prune_structured", "sparsity": 0.5, "weight_bits": 8, "finetune": "clean"})
    cfg = TrialConfig.from_flat({"dataset": "digits", "pretrain_epochs": 1, "compression": "prune_structured",
                                 "sparsity": 0.5, "finetune": "clean"})
    assert got == {1: pytest.approx(math.log10(sizes_before_training(cfg)["model_bits"]))}
    # a sweep without a size objective measures nothing
    none = SizeProbe(load_sweep({**SWEEP, "objectives": {"robust_acc": "max", "clean_acc": "max"}}))
    assert none({"compression": "quant", "weight_bits": 8}) == {}


def test_the_sweeps_sampler_is_given_the_probe(tmp_path):
    from test_search import DISCRETE, searcher

    s = searcher(DISCRETE, tmp_path)
    measure = s.study().sampler._measure
    assert isinstance(measure, SizeProbe)
    small, large = (measure({"pretrain": "standard", "compression": "prune_structured", "sparsity": x,
                             "finetune": "clean"})[1] for x in (0.9, 0.1))
    assert small < large
