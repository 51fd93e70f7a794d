"""The contract every registered compressor keeps (one suite, parametrized over COMPRESSORS, and for
the targets over every registered model too):

- the target is reached within the tolerance the compressor states (``info["target"]``,
  ``info["achieved"]``), at the edges of its range included (sparsity 0, small, the model's largest
  reachable one; bits 2..16), or a clear one-line TargetNotReached / ConfigError just beyond it;
- the response is monotone in the target;
- forward works, the input gradient is non-zero, fine-tuning keeps the compression;
- save -> rcsweep.load_model gives a plain, frozen model with identical outputs;
- its parameters are declared once (rcsweep.compress_params) and the trial configuration, the
  "only applies with" rules and the sweep file's search space follow from that declaration.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from compress_helpers import cases, config, digits_model, small_train

from rcsweep import load_model, save_model
from rcsweep.compress import (COMPRESSORS, TargetNotReached, compress_, effective_weight, is_frozen,
                              max_structured_sparsity, param_parts, prunable_layers)
from rcsweep.compress.structured import removed_count
from rcsweep.compress_params import (COMPRESSION_METHODS, QuantParams, StructuredPruneParams, UnstructuredPruneParams,
                                     includes, trial_params)
from rcsweep.config import COMPRESSION_PARAMS, FIELD_NAMES, TrialConfig, applicable
from rcsweep.method_params import MethodParams, param
from rcsweep.data import DATASETS, dataset_info
from rcsweep.errors import ConfigError
from rcsweep.metrics import efficiency
from rcsweep.models import MODELS, build_model
from rcsweep.pipeline import finetune
from rcsweep.train import accuracy

SHAPE = (1, 8, 8)
CASES = cases()


def _part(info: dict, kind: str) -> dict:
    """The info of the pruning or quantization part of a (possibly chained) compression."""
    for key in ({"prune": ("prune", "structured"), "quant": ("quant",)}[kind]):
        if isinstance(info.get(key), dict):
            return info[key]
    return info


@pytest.fixture(scope="module", params=sorted(CASES), ids=sorted(CASES))
def compressed(request):
    """(cfg, model, comp, data, dense_model) for one compressor, compressed once per module."""
    data, model = digits_model()
    dense = copy.deepcopy(model)
    cfg = config(**CASES[request.param], finetune="adversarial", finetune_epochs=1, attack_steps=3)
    comp = compress_(model, cfg, calib=data.val, device="cpu")
    return cfg, model, comp, data, dense


@pytest.fixture(scope="module")
def finetuned(compressed):
    """The same model after one epoch of adversarial fine-tuning (PGD-3) on 400 images."""
    cfg, model, comp, data, dense = compressed
    model, comp = copy.deepcopy((model, comp))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    finetune(model, comp, cfg, small_train(data), "cpu")
    return cfg, model, comp, before


def assert_compression_in_force(model, cfg, dense, info):
    eff = efficiency(model, cfg, SHAPE, sum(p.numel() for p in dense.parameters()), latency=False)
    if includes(cfg.compression, UnstructuredPruneParams):
        assert eff["sparsity_measured"] == pytest.approx(cfg.sparsity, abs=0.005)
        part = _part(info, "prune")
        assert part["target"] == cfg.sparsity and abs(part["achieved"] - cfg.sparsity) <= part["tolerance"]
    if includes(cfg.compression, StructuredPruneParams):
        have = {n: m.weight.shape[0] for n, m in prunable_layers(model, SHAPE)}
        for n, m in prunable_layers(dense, SHAPE):
            c = m.weight.shape[0]
            assert c - have[n] == removed_count(cfg.sparsity, c)  # round(sparsity x c) of each layer's channels gone
        part = _part(info, "prune")
        assert eff["channels_removed"] == pytest.approx(part["achieved"], abs=1e-12)
        assert abs(part["achieved"] - cfg.sparsity) <= part["tolerance"] <= 0.02
        assert eff["params"] < 0.5 * sum(p.numel() for p in dense.parameters())
    if includes(cfg.compression, QuantParams):
        assert eff["weight_bits_measured"] == cfg.weight_bits
        part = _part(info, "quant")
        assert part["target"] == {"weight_bits": cfg.weight_bits, "act_bits": cfg.act_bits}
        assert part["achieved"]["weight_bits"] == eff["weight_bits_measured"]
        layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        for m in layers:
            assert m.act_quant.bits == cfg.act_bits
            stored = m.weight_orig if hasattr(m, "weight_orig") else m.weight  # what the state_dict holds
            codes = stored / m.weight_quant.scale.view(-1, *[1] * (stored.dim() - 1))
            assert torch.allclose(codes, codes.round(), atol=1e-3), "stored weights are off the grid"
            assert codes.round().abs().max() <= 2 ** (cfg.weight_bits - 1) - 1
    return eff


def test_target_reached(compressed):
    cfg, model, comp, data, dense = compressed
    assert comp.info["method"] == cfg.compression
    assert_compression_in_force(model, cfg, dense, comp.info)


def test_forward_works(compressed):
    cfg, model, comp, data, dense = compressed
    x, y = data.test
    with torch.no_grad():
        out = model.eval()(x)
    assert out.shape == (len(x), 10) and torch.isfinite(out).all()
    assert accuracy(model, x, y, "cpu") > 0.85  # 4-bit and/or half the weights of a ~0.98 model


def test_input_gradient_nonzero(compressed):
    """The straight-through estimator must not mask gradients (attacks would then fake robustness)."""
    cfg, model, comp, data, dense = compressed
    x = data.test[0][:64].clone().requires_grad_(True)
    loss = F.cross_entropy(model.eval()(x), data.test[1][:64], reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    assert (g.flatten(1).abs().sum(1) > 0).float().mean() >= 0.95


def test_finetuning_keeps_compression(finetuned, compressed):
    cfg, model, comp, before = finetuned
    assert_compression_in_force(model, cfg, compressed[4], comp.info)  # info re-checked by finalize
    for m in _layers(model):  # after finalize, .weight is the weight computed with, without a forward pass
        assert torch.equal(m.weight, effective_weight(m))
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert any(k.endswith(("weight", "weight_orig")) for k in changed), "fine-tuning changed no weight"
    if includes(cfg.compression, UnstructuredPruneParams):
        for k, v in model.state_dict().items():
            if k.endswith("weight_mask"):
                assert torch.equal(v, before[k])


def test_save_load_identical_outputs_plain_frozen(finetuned, tmp_path):
    cfg, model, comp, _ = finetuned
    save_model(model, tmp_path, cfg, {"compression": comp.info})
    loaded = load_model(tmp_path)
    x = torch.rand(32, *SHAPE)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    assert is_frozen(loaded) and not loaded.training
    for (n, a), (_, b) in zip(prunable_layers(model, SHAPE) + [("", _classifier(model))],
                              prunable_layers(loaded, SHAPE) + [("", _classifier(loaded))]):
        assert torch.equal(b.weight, effective_weight(a)), n  # read directly: the weights evaluated
    state = {k: v.clone() for k, v in loaded.state_dict().items()}
    loaded.train()
    loaded(x)  # train mode moves no state (digits_cnn has no BatchNorm)
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())


def _classifier(model):
    return [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))][-1]


# -- targets at the edges of their ranges, on every registered model ---------------------------
def _setup(name: str) -> tuple[str, float, tuple]:
    """(dataset, width, calibration image shape) for a registered model: the dataset whose default
    it is (digits if none), width 1 on digits and 1/8 elsewhere, 16x16 inputs where the net allows."""
    dataset = next((d for d in DATASETS.names() if dataset_info(d).default_model == name), "digits")
    shape = tuple(dataset_info(dataset).shape)
    if name == "resnet18":  # global pooling: any input size runs
        shape = (shape[0], 16, 16)
    return dataset, (1.0 if dataset == "digits" else 0.125), shape


@pytest.fixture(scope="module", params=MODELS.names())
def registered(request):
    """(name, dataset, width, shape, dense model, calibration batch) for each registered model."""
    name = request.param
    dataset, width, shape = _setup(name)
    torch.manual_seed(0)
    model = build_model(name, dataset, width).eval()
    return name, dataset, width, shape, model, (torch.rand(16, *shape), torch.randint(0, 10, (16,)))


def _compress(registered, **kw):
    name, dataset, width, shape, dense, calib = registered
    model = copy.deepcopy(dense)
    cfg = config(dataset=dataset, model=name, width=width, **kw)
    comp = compress_(model, cfg, calib)
    return model, comp, cfg


STRUCTURED = [c for c in COMPRESSORS.names() if includes(c, StructuredPruneParams)]
UNSTRUCTURED = [c for c in COMPRESSORS.names() if includes(c, UnstructuredPruneParams)]
QUANT = [c for c in COMPRESSORS.names() if includes(c, QuantParams)]


def test_max_structured_sparsity_of_registered_models():
    assert max_structured_sparsity("digits_cnn", "digits") == 15 / 16  # first conv: 16 channels
    assert max_structured_sparsity("fmnist_net", "fashion_mnist") == 31 / 32
    assert max_structured_sparsity("resnet18", "cifar10") == 63 / 64
    assert max_structured_sparsity("resnet18", "cifar10", 0.125) == 7 / 8
    assert max_structured_sparsity("digits_cnn", "digits", 0.03) == 0.0  # one channel a layer: nothing to remove


@pytest.mark.parametrize("method", STRUCTURED)
def test_structured_targets_up_to_the_largest_reachable(registered, method):
    name, dataset, width, shape = registered[:4]
    top = max_structured_sparsity(name, dataset, width)
    targets = sorted({0.0, 0.05, 0.3, 0.5, round(0.8 * top, 4), top})
    extra = dict(weight_bits=8, act_bits=8) if method in QUANT else {}
    removed, achieved = [], []
    for s in targets:
        model, comp, cfg = _compress(registered, compression=method, sparsity=s, **extra)
        part = _part(comp.info, "prune")
        dense = part["out_channels_dense"]
        got = {n: m.weight.shape[0] for n, m in prunable_layers(model, shape)}
        assert {n: dense[n] - got[n] for n in dense} == {n: removed_count(s, c) for n, c in dense.items()}
        assert min(got.values()) >= 1
        eff = efficiency(model, cfg, shape, 0, latency=False)
        assert part["target"] == s and eff["channels_removed"] == pytest.approx(part["achieved"], abs=1e-12)
        assert abs(part["achieved"] - s) <= part["tolerance"]
        assert torch.isfinite(model(registered[5][0])).all()
        removed.append([dense[n] - got[n] for n in dense])
        achieved.append(part["achieved"])
    assert achieved[-1] == pytest.approx(top, abs=1e-12)  # at the limit: exactly that fraction, one channel left
    assert all(a <= b for a, b in zip(achieved, achieved[1:]))  # monotone overall ...
    assert all(all(x <= y for x, y in zip(r1, r2)) for r1, r2 in zip(removed, removed[1:]))  # ... and per layer
    beyond = round(top + 0.01, 4)
    if beyond <= 0.99:
        with pytest.raises(TargetNotReached) as e:
            _compress(registered, compression=method, sparsity=beyond, **extra)
        msg = str(e.value)
        assert f"{beyond:g}" in msg and name in msg and f"({top:.6g}" in msg and "\n" not in msg


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("method", UNSTRUCTURED)
def test_unstructured_targets_zero_to_0_99(registered, method, scope):
    shape = registered[3]
    extra = dict(weight_bits=8, act_bits=8) if method in QUANT else {}
    masked = []
    for s in (0.0, 0.01, 0.5, 0.9, 0.99):
        model, comp, cfg = _compress(registered, compression=method, sparsity=s, prune_scope=scope, **extra)
        part = _part(comp.info, "prune")
        assert part["target"] == s and abs(part["achieved"] - s) <= part["tolerance"] <= 1e-3
        eff = efficiency(model, cfg, shape, 0, latency=False)
        assert eff["sparsity_measured"] >= part["achieved"] - 1e-9  # quantization may only add zeros
        if method not in QUANT:
            assert eff["sparsity_measured"] == pytest.approx(s, abs=part["tolerance"] + 1e-4)
        masked.append(sum(int((m.weight_mask == 0).sum()) for _, m in prunable_layers(model, shape)))
    assert masked == sorted(masked) and masked[0] == 0
    with pytest.raises(ConfigError, match="sparsity"):  # beyond the range: refused by the config
        config(compression=method, sparsity=0.995)


def _weight_error(model, dense) -> float:
    return sum(float(((effective_weight(a) - b.weight) ** 2).sum().detach())
               for a, b in zip(_layers(model), _layers(dense)))


def _layers(model):
    return [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


@pytest.mark.parametrize("method", QUANT)
def test_quant_bits_2_to_16(registered, method):
    """Every bit-width in 2..16 is reached exactly (the widest codes need it, no more); the weight
    error falls as bits grow; 32 is float; 1 and 17 are refused by the config."""
    from rcsweep.metrics import weight_bits_measured

    name, dense = registered[0], registered[4]
    bits_list = range(2, 17) if method == "quant" else (2, 3, 8, 16)
    extra = dict(sparsity=0.3) if applicable("sparsity", {"compression": method}) else {}
    errors = []
    for b in bits_list:
        model, comp, _ = _compress(registered, compression=method, weight_bits=b, act_bits=b, **extra)
        part = _part(comp.info, "quant")
        assert part["target"] == part["achieved"] == {"weight_bits": b, "act_bits": b}
        assert weight_bits_measured(model) == b
        assert all(m.act_quant.bits == b and float(m.act_quant.lo) < float(m.act_quant.hi) for m in _layers(model))
        if method == "quant":
            errors.append(_weight_error(model, dense))
    assert errors == sorted(errors, reverse=True)  # more bits never cost accuracy of the weights
    if method == "quant":
        model, comp, _ = _compress(registered, compression=method, weight_bits=32, act_bits=32)
        assert _part(comp.info, "quant")["achieved"] == {"weight_bits": 32, "act_bits": 32}
        assert _weight_error(model, dense) == 0.0
    for b in (1, 17):
        with pytest.raises(ConfigError, match="weight_bits"):
            config(compression=method, weight_bits=b)


# -- declared parameters: the configuration, its rules and the search space follow from them ----
def _declared(name: str) -> dict:
    """The parameters compression ``name`` declares (the union of its parts'): name -> field."""
    return {f.name: f for part in COMPRESSION_METHODS.get(name) for f in dataclasses.fields(part)}


def _refused(f: dataclasses.Field) -> list:
    """Values just outside a declared field's range, or not among its choices."""
    if "range" in f.metadata:
        lo, hi = f.metadata["range"]
        return [lo - 0.5, hi + 0.5]
    choices = f.metadata["choices"]
    return [f"not-{f.default}"] if isinstance(f.default, str) else [min(choices) - 1, max(choices) + 1]


def test_the_compressors_and_their_declared_parameters_name_the_same_methods():
    from rcsweep.compress import compressor_class
    from rcsweep.compress.base import Compressor

    assert COMPRESSORS.names() == COMPRESSION_METHODS.names()
    for name in COMPRESSORS.names():  # a chain's parts in order; a single method's class
        assert param_parts(COMPRESSORS.get(name)) == COMPRESSION_METHODS.get(name), name
        for part in COMPRESSION_METHODS.get(name):  # each parameter class names the compressor that takes it
            cls = compressor_class(part)
            assert issubclass(cls, Compressor) and cls.Params is part, (name, part)
    parts = {p.part: p for name in COMPRESSION_METHODS.names() for p in COMPRESSION_METHODS.get(name)}
    assert len(parts) == len(set(parts.values())), "two parameter classes share a chain key"


@pytest.mark.parametrize("name", COMPRESSORS.names())
def test_declared_parameters_are_trial_parameters_with_their_defaults(name):
    declared = _declared(name)
    assert declared, f"{name} declares no parameter"
    cfg = TrialConfig(compression=name)
    for p, f in declared.items():
        assert p in FIELD_NAMES and getattr(cfg, p) == f.default, p
        assert applicable(p, {"compression": name}) and not applicable(p, {"compression": "none"})
    for p in COMPRESSION_PARAMS:
        if p not in declared:
            assert getattr(cfg, p) is None and not applicable(p, {"compression": name}), p
    assert TrialConfig.from_flat(cfg.to_flat()) == cfg


@pytest.mark.parametrize("name", COMPRESSORS.names())
def test_values_outside_the_declared_range_or_choices_are_refused(name):
    for p, f in _declared(name).items():
        for bad in _refused(f):
            with pytest.raises(ConfigError) as e:
                TrialConfig(compression=name, **{p: bad})
            assert e.value.field == p and "\n" not in str(e.value), (p, bad)


@pytest.mark.parametrize("name", COMPRESSORS.names())
def test_another_methods_parameter_is_refused(name):
    declared = _declared(name)
    others = {p: v for p, v in COMPRESSION_PARAMS.items() if p not in declared}
    for p, (f, methods) in others.items():
        with pytest.raises(ConfigError, match="only applies with") as e:
            TrialConfig(compression=name, **{p: f.default})
        assert e.value.field == p and all(m in str(e.value) for m in methods), str(e.value)


def test_a_parameter_two_methods_declare_differently_is_refused(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class OtherSparsity(MethodParams):
        sparsity: float = param(0.3, 0.0, 0.99, "fraction removed")

    monkeypatch.setitem(COMPRESSION_METHODS._items, "other", (OtherSparsity,))
    with pytest.raises(ValueError, match="'sparsity' is declared twice"):
        trial_params()


# the new method's module (its compressor); its parameter class and registration line follow in NEW_METHOD
LOWRANK_MODULE = '''
from rcsweep.compress.base import Compressor
from lowrank_params import LowRankParams

class LowRank(Compressor):
    Params = LowRankParams

    def apply(self, model, calib, device):
        return {"target": self.cfg.rank_fraction, "achieved": self.cfg.rank_fraction}

    def restore(self, model, info):
        pass

    def check(self, model):
        return {"target": self.cfg.rank_fraction, "achieved": self.cfg.rank_fraction}
'''

NEW_METHOD = '''
import dataclasses, json, sys
from typing import ClassVar
from rcsweep.compress_params import COMPRESSION_METHODS
from rcsweep.method_params import MethodParams, param

@dataclasses.dataclass(frozen=True)
class LowRankParams(MethodParams):
    compressor: ClassVar[str] = "lowrank:LowRank"
    part: ClassVar[str] = "lowrank"
    rank_fraction: float = param(0.25, 0.05, 1.0, "fraction of each layer's rank kept")

sys.modules["lowrank_params"] = type(sys)("lowrank_params")
sys.modules["lowrank_params"].LowRankParams = LowRankParams
COMPRESSION_METHODS.register("lowrank")((LowRankParams,))  # the registration line

import optuna
from rcsweep.config import COMPRESSION, TrialConfig, applicable
from rcsweep.errors import ConfigError
from rcsweep.sweep.space import ConditionalSpace
from rcsweep.sweepfile import load_sweep

def error(**kw):
    try:
        TrialConfig(**kw)
    except ConfigError as e:
        return str(e)

sweep = {"fixed": {"dataset": "digits"}, "num_samples": 4,
         "space": {"compression": {"choice": ["prune", "lowrank"]}, "rank_fraction": {"uniform": [0.1, 0.9], "step": 0.4},
                   "sparsity": {"choice": [0.3]}}}
spec = load_sweep(sweep)
study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
drawn = [ConditionalSpace(spec)(study.ask()) for _ in range(12)]
try:
    load_sweep({"fixed": {"dataset": "digits", "rank_fraction": 0.5}, "search": "grid"})
    fixed_error = None
except ConfigError as e:
    fixed_error = str(e)
print(json.dumps({
    "names": list(COMPRESSION),
    "default": TrialConfig(compression="lowrank").to_flat(),
    "given": TrialConfig(compression="lowrank", rank_fraction="1/2").rank_fraction,
    "applicable": [applicable("rank_fraction", {"compression": c}) for c in ("lowrank", "prune", "none")],
    "without": error(rank_fraction=0.5), "beyond": error(compression="lowrank", rank_fraction=2),
    "other": error(compression="lowrank", sparsity=0.5),
    "drawn": drawn, "grid": spec.grid(), "fixed_error": fixed_error}))
from rcsweep.compress import COMPRESSORS
print(json.dumps({"compressor": COMPRESSORS.get("lowrank").__name__}))
'''


def test_a_new_compression_method_needs_only_its_declaration(tmp_path):
    """A method registered in rcsweep.compress_params alone (in a fresh interpreter, before the
    configuration is imported; its compressor in a module of its own) is a ``compression`` value with its own trial parameter, default,
    range and rules, and a sweep file searches that parameter only where the method is drawn."""
    root = str(Path(__file__).resolve().parent.parent)
    (tmp_path / "lowrank.py").write_text(LOWRANK_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", NEW_METHOD], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    *_, first, last = run.stdout.strip().splitlines()
    out = json.loads(first)
    assert json.loads(last) == {"compressor": "LowRank"}  # rcsweep.compress found it from the declaration
    assert out["names"][-1] == "lowrank"
    assert out["default"]["rank_fraction"] == 0.25 and out["default"]["sparsity"] is None
    assert out["given"] == 0.5
    assert out["applicable"] == [True, False, False]
    assert out["without"].startswith("rank_fraction: only applies with compression lowrank")
    assert out["beyond"].startswith("rank_fraction: must be in [0.05, 1]")
    assert out["other"].startswith("sparsity: only applies with compression prune")
    assert {p["compression"] for p in out["drawn"]} == {"prune", "lowrank"}
    for p in out["drawn"]:  # drawn only where it applies
        assert ("rank_fraction" in p) == (p["compression"] == "lowrank") and ("sparsity" in p) != ("rank_fraction" in p)
    assert sorted(map(json.dumps, out["grid"])) == sorted(map(json.dumps, [
        {"compression": "prune", "sparsity": 0.3},
        {"compression": "lowrank", "rank_fraction": 0.1}, {"compression": "lowrank", "rank_fraction": 0.5},
        {"compression": "lowrank", "rank_fraction": 0.9}]))
    assert out["fixed_error"] == "fixed.rank_fraction: only applies with compression lowrank, but compression=none"


def test_the_readme_documents_every_compression_and_its_parameters():
    """README.md, 'Trial parameters': the ``compression`` row names every method, and each
    compression parameter has a row with its declared default."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Trial parameters", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| `")]
    compression = next(cells for cells in rows if cells[1].strip() == "`compression`")
    assert all(f"`{name}`" in compression[3] for name in COMPRESSORS.names())
    for p, (f, _) in COMPRESSION_PARAMS.items():
        cells = next((cells for cells in rows if f"`{p}`" in cells[1]), None)
        assert cells is not None and str(f.default) in cells[2], p
