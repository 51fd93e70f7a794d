"""The contract every registered sampler keeps (rcsweep.samplers.SAMPLERS), run on each: its
options validate, it builds an Optuna sampler for small and large budgets, and driven by the sweep
searcher over a conditional space it issues distinct configurations whose parameters apply, the
same ones for the same seed, and learns from told results without error."""
import dataclasses
import json

import optuna
import pytest

from rcsweep.errors import ConfigError
from rcsweep.samplers import SAMPLERS, Sampler, SamplerContext
from rcsweep.sweepfile import load_sweep
from test_search import DISCRETE, run, searcher

NAMES = SAMPLERS.names()
BASE = {k: v for k, v in DISCRETE.items() if k != "num_samples"}  # a grid's budget is its size


def test_the_registry_has_the_documented_samplers():
    assert {"tpe", "nsga2", "gp", "random", "grid"} <= set(NAMES)


def test_the_readme_documents_every_sampler_and_option():
    """README.md, 'The search': a row per registered sampler naming each of its options."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### The search", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(" `"): line for line in section.splitlines() if line.startswith("| `")}
    assert set(rows) == set(NAMES)
    for name in NAMES:
        for f in dataclasses.fields(SAMPLERS.get(name).Params):
            assert f"`{f.name}`" in rows[name], (name, f.name)


@pytest.mark.parametrize("name", NAMES)
def test_options_validate_and_build_for_any_budget(name):
    cls = SAMPLERS.get(name)
    assert issubclass(cls, Sampler) and cls.name == name and cls.summary
    cls.Params()  # every option has a default
    for budget, refs in ((3, 0), (19, 2), (500, 2)):
        sampler = cls().build(SamplerContext(seed=0, num_samples=budget, n_references=refs))
        assert isinstance(sampler, optuna.samplers.BaseSampler)
    for f in dataclasses.fields(cls.Params):
        with pytest.raises(ConfigError):
            cls.Params(**{f.name: "not a value"})
        with pytest.raises(ConfigError, match=f"search.{f.name}"):
            load_sweep({**DISCRETE, "search": {"sampler": name, f.name: "not a value"}})
    with pytest.raises(ConfigError, match="search.no_such_option"):
        load_sweep({**DISCRETE, "search": {"sampler": name, "no_such_option": 1}})


@pytest.mark.parametrize("name", NAMES)
def test_distinct_applicable_configurations_same_for_the_same_seed(name, tmp_path):
    enumerates = SAMPLERS.get(name).enumerates  # a grid runs the whole space: no smaller budget
    data = {**BASE, "search": name, **({} if enumerates else {"num_samples": 10})}
    runs = []
    for i in range(2):
        (tmp_path / f"run{i}").mkdir()
        s = searcher(data, tmp_path / f"run{i}")
        issued = run(s, 10)
        assert len(issued) == 10
        for t in issued[2:]:  # after the references
            assert (t["sparsity"] is not None) == (t["compression"] == "prune_structured")
            assert (t["weight_bits"] is not None) == (t["compression"] == "quant")
        keys = [json.dumps(t, sort_keys=True) for t in issued]
        assert len(set(keys)) == len(keys)
        study = s.study()
        assert sum(t.state.name == "COMPLETE" for t in study.trials) >= 10  # references and repeats included
        runs.append(keys)
    assert runs[0] == runs[1]


SMALL = {**BASE, "space": {"pretrain": {"choice": ["standard", "adversarial"]},
                                "compression": {"choice": ["quant"]}, "weight_bits": {"choice": [8, 4, 2]},
                                "finetune": {"choice": ["clean", "adversarial"]}}}


@pytest.mark.parametrize("name", NAMES)
def test_every_sampler_runs_a_small_finite_space_exactly_once(name, tmp_path):
    # 12 configurations, 2 references outside them and a budget of 20: every configuration once, then done
    enumerates = SAMPLERS.get(name).enumerates
    s = searcher({**SMALL, "search": name, **({} if enumerates else {"num_samples": 20})}, tmp_path)
    issued = run(s, 20)
    assert len(issued) == 14 and s.suggest("more") == "FINISHED"
    assert enumerates or s.exhausted == "12 distinct configurations, all run"
    spec = load_sweep(SMALL)
    assert sorted(json.dumps(t, sort_keys=True) for t in issued[2:]) == \
        sorted(json.dumps(spec.trial_config(p).to_flat(), sort_keys=True) for p in spec.grid())
