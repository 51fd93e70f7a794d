"""``rcsweep run | resume | status | validate``: bad input is one line naming the problem, exit code
2, no trial started and nothing written. (tests/test_bad_input_corpus.py holds the wider corpus.)"""
import sys

import pytest
import yaml
from cli_helpers import run_cli as _run_cli
from conftest_ray import ray_local  # noqa: F401  (session fixture)

GOOD = {"fixed": {"dataset": "digits", "pretrain_epochs": 1},
        "space": {"compression": {"choice": ["none", "quant"]}, "weight_bits": {"choice": [4, 8]}}}
BAD_FILES = [
    ("malformed", "fixed: {dataset: digits\nspace: [", "not valid YAML"),
    # objectives no trial, or not every trial, writes: the searcher would be told each such trial failed
    ("objective_verified", {**GOOD, "objectives": {"robust_acc": "max", "verified_robust_acc": "max"}},
     "objectives.verified_robust_acc: is written by 'rcsweep verify' after the sweep, never by a trial"),
    ("objective_int8", {**GOOD, "objectives": {"robust_acc": "max", "int8_clean_acc": "max"}},
     "objectives.int8_clean_acc: is written only by trials with 8-bit weights and activations"),
    ("unknown_key", {**GOOD, "num_smaples": 3}, "num_smaples: unknown sweep field (did you mean 'num_samples'?)"),
    ("bad_range", {**GOOD, "space": {"sparsity": {"uniform": [0.9, 0.1]}, "compression": {"choice": ["prune"]}}},
     "space.sparsity.uniform: low 0.9 must be below high 0.1"),
    ("objective_not_metric", {**GOOD, "objectives": {"robustness": "max"}}, "objectives.robustness: is not a metric"),
]
_PRUNE = {"compression": {"choice": ["prune"]}}
_SPARSITY = {"uniform": [0.1, 0.9]}
# the search (issue 15): samplers and their options, constraints, steps; each message names the
# sweep-file key and what is allowed
BAD_SEARCH = [
    ("unknown_sampler", {**GOOD, "search": "foo"},
     "search: unknown sampler 'foo'; samplers: gp, grid, nsga2, random, tpe, tpe_front; optuna means tpe_front (the default)"),
    ("unknown_sampler_in_mapping", {**GOOD, "search": {"sampler": "tpee"}},
     "search.sampler: unknown sampler 'tpee' (did you mean 'tpe'?); samplers: gp, grid"),
    ("sampler_missing", {**GOOD, "search": {"n_startup_trials": 3}}, "search.sampler: is missing"),
    ("unknown_option", {**GOOD, "search": {"sampler": "tpe", "bogus": 1}},
     "search.bogus: is not an option of sampler tpe; its options: n_startup_trials, multivariate"),
    ("option_of_a_sampler_without_options", {**GOOD, "search": {"sampler": "random", "seed": 1}},
     "search.seed: is not an option of sampler random; it takes none"),
    ("option_out_of_range", {**GOOD, "search": {"sampler": "tpe", "n_startup_trials": -1}},
     "search.n_startup_trials: must be in [0, 10000], got -1"),
    ("population_too_small", {**GOOD, "search": {"sampler": "nsga2", "population_size": 1}},
     "search.population_size: must be in [2, 10000], got 1"),
    ("option_nan", {**GOOD, "search": {"sampler": "tpe_front", "kappa": float("nan")}},
     "search.kappa: must be finite, got nan"),
    ("option_nan_no_upper_bound", {**GOOD, "search": {"sampler": "nsga2", "mutation_prob": float("nan")}},
     "search.mutation_prob: must be finite, got nan"),
    ("option_nan_integer", {**GOOD, "search": {"sampler": "tpe", "n_startup_trials": float("nan")}},
     "search.n_startup_trials: must be finite, got nan"),
    ("option_not_a_bool", {**GOOD, "search": {"sampler": "gp", "deterministic": "yes"}},
     "search.deterministic: expected true or false, got 'yes'"),
    ("option_not_an_integer", {**GOOD, "search": {"sampler": "tpe", "n_ei_candidates": 2.5}},
     "search.n_ei_candidates: expected an integer, got 2.5"),
    ("option_not_a_number", {**GOOD, "search": {"sampler": "nsga2", "mutation_prob": "x"}},
     "search.mutation_prob: expected a number, got 'x'"),
    ("constraint_unknown_metric", {**GOOD, "constraints": {"clean_accuracy": ">= 0.7"}},
     "constraints.clean_accuracy: is not a metric a sweep can constrain (did you mean 'clean_acc'?); metrics: clean_acc"),
    ("constraints_not_a_mapping", {**GOOD, "constraints": [">= 0.7"]}, "constraints: must be a mapping"),
    ("constraint_bound_not_a_number", {**GOOD, "constraints": {"clean_acc": ">= abc"}},
     "constraints.clean_acc: must look like '>= 0.7' or '<= 2e6' (a quoted string), got '>= abc'"),
    ("constraint_bound_without_operator", {**GOOD, "constraints": {"model_bits": 2e6}},
     "constraints.model_bits: must look like '>= 0.7' or '<= 2e6'"),
    ("constraint_bound_mapping", {**GOOD, "constraints": {"clean_acc": {"min": 0.9, "max": 0.1}}},
     "constraints.clean_acc: must look like '>= 0.7' or '<= 2e6'"),
    ("constraint_strict_operator", {**GOOD, "constraints": {"clean_acc": "> 0.7"}},
     "constraints.clean_acc: must look like '>= 0.7' or '<= 2e6'"),
    ("constraint_bound_outside_the_metric", {**GOOD, "constraints": {"clean_acc": ">= 1.5"}},
     "constraints.clean_acc: the bound is outside the metric's range"),
    ("step_zero", {**GOOD, "space": {**_PRUNE, "sparsity": {**_SPARSITY, "step": 0}}},
     "space.sparsity.step: must be a finite number > 0, got 0"),
    ("step_negative", {**GOOD, "space": {**_PRUNE, "sparsity": {**_SPARSITY, "step": -0.1}}},
     "space.sparsity.step: must be a finite number > 0, got -0.1"),
    ("step_infinite", {**GOOD, "space": {**_PRUNE, "sparsity": {**_SPARSITY, "step": float("inf")}}},
     "space.sparsity.step: must be a finite number > 0, got inf"),
    ("step_on_loguniform", {**GOOD, "space": {"lr": {"loguniform": [0.001, 0.1], "step": 0.01}}},
     "space.lr.step: only 'uniform' and 'int' ranges take a step, not 'loguniform'"),
    ("step_on_choice", {**GOOD, "space": {**GOOD["space"], "weight_bits": {"choice": [4, 8], "step": 4}}},
     "space.weight_bits.step: only 'uniform' and 'int' ranges take a step, not 'choice'"),
    ("step_larger_than_range", {**GOOD, "space": {**_PRUNE, "sparsity": {**_SPARSITY, "step": 2}}},
     "space.sparsity.step: 2 is larger than the range [0.1, 0.9]; it must divide high - low = 0.8"),
    ("step_not_dividing", {**GOOD, "space": {**_PRUNE, "sparsity": {**_SPARSITY, "step": 0.3}}},
     "space.sparsity.step: 0.3 does not divide the range [0.1, 0.9]; it must divide high - low = 0.8"),
    ("int_step_larger_than_range", {"fixed": {"dataset": "digits"}, "space": {"pretrain_epochs": {"int": [1, 5], "step": 10}}},
     "space.pretrain_epochs.step: 10 is larger than the range [1, 5]"),
    ("int_step_fraction", {"fixed": {"dataset": "digits"}, "space": {"pretrain_epochs": {"int": [1, 5], "step": 0.5}}},
     "space.pretrain_epochs.step: must be an integer for an int range, got 0.5"),
]
BAD_FILES += BAD_SEARCH
# early stopping (issue 16): each message names early_stopping's field
_FT = {**GOOD, "fixed": {**GOOD["fixed"], "finetune": "adversarial", "finetune_epochs": 3}}
BAD_EARLY_STOPPING = [
    ("es_not_a_mapping", {**_FT, "early_stopping": [0, 1]}, "early_stopping: must be a mapping"),
    ("es_rungs_missing", {**_FT, "early_stopping": {"eta": 3}}, "early_stopping.rungs: is missing"),
    ("es_rungs_not_increasing", {**_FT, "early_stopping": {"rungs": [0, 2, 1]}},
     "early_stopping.rungs: must be strictly increasing, got [0, 2, 1]"),
    ("es_rungs_repeated", {**_FT, "early_stopping": {"rungs": [1, 1]}},
     "early_stopping.rungs: must be strictly increasing, got [1, 1]"),
    ("es_rung_negative", {**_FT, "early_stopping": {"rungs": [-1, 1]}},
     "early_stopping.rungs: entries are fine-tuning epochs (integers >= 0), got -1"),
    ("es_eta_below_2", {**_FT, "early_stopping": {"rungs": [0, 1], "eta": 1}}, "early_stopping.eta: must be >= 2, got 1"),
    ("es_eta_not_an_integer", {**_FT, "early_stopping": {"rungs": [0, 1], "eta": 2.5}},
     "early_stopping.eta: expected an integer, got 2.5"),
    ("es_rung_beyond_finetune_epochs", {**_FT, "early_stopping": {"rungs": [0, 4]}},
     "early_stopping.rungs: rung 4 is beyond the sweep's fine-tuning epochs (at most 3)"),
    ("es_rung_beyond_searched_finetune_epochs",
     {**_FT, "space": {**_FT["space"], "finetune_epochs": {"choice": [2, 5]}},
      "fixed": {"dataset": "digits", "finetune": "clean"}, "early_stopping": {"rungs": [0, 6]}},
     "early_stopping.rungs: rung 6 is beyond the sweep's fine-tuning epochs (at most 5)"),
    ("es_rung_without_finetuning", {**GOOD, "early_stopping": {"rungs": [0, 1]}},
     "early_stopping.rungs: rung 1 is beyond the sweep's fine-tuning epochs (at most 0)"),
    ("es_with_grid", {**_FT, "search": "grid", "early_stopping": {"rungs": [0, 1]}},
     "early_stopping: a grid search measures every point; stopping would leave holes in it"),
    ("es_unknown_option", {**_FT, "early_stopping": {"rungs": [0], "etaa": 3}},
     "early_stopping.etaa: unknown option (did you mean 'eta'?)"),
    ("es_margin_negative", {**_FT, "early_stopping": {"rungs": [0], "margin_se": -1}},
     "early_stopping.margin_se: must be a finite number >= 0, got -1"),
    ("es_objective_without_rung_value", {**_FT, "objectives": {"robust_acc": "max", "latency_ms_b1": "min"},
                                         "early_stopping": {"rungs": [0]}},
     "early_stopping: objective latency_ms_b1 has no value at a rung"),
]
BAD_FILES += BAD_EARLY_STOPPING


def _write(tmp_path, name, content):
    path = tmp_path / "in" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


@pytest.mark.parametrize("name, content, needle", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_sweep_file_is_refused_before_ray_starts(name, content, needle, tmp_path, capsys):
    rc, out = _run_cli(["run", _write(tmp_path, name, content), "--storage", tmp_path / "store"], capsys)
    assert rc == 2 and needle in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists()
    if "ray" in sys.modules:  # validated before Ray could start
        import ray

        assert not ray.is_initialized()


def test_storage_uri_that_is_not_local_is_refused(tmp_path, capsys):
    rc, out = _run_cli(["run", _write(tmp_path, "good", GOOD), "--storage", "s3://bucket/x"], capsys)
    assert rc == 2 and "--storage: s3:// storage is not supported" in out.err


@pytest.mark.parametrize("make", ["missing", "empty", "incomplete"])
def test_pretrained_from_without_a_complete_model_is_refused_before_ray_starts(make, tmp_path, capsys):
    source = tmp_path / "old"
    if make != "missing":
        (source / "pretrained" / "0123456789abcdef").mkdir(parents=True)
    if make == "incomplete":  # a pretraining that never finished: model.pt but no pretrain.json
        (source / "pretrained" / "0123456789abcdef" / "model.pt").write_bytes(b"")
    rc, out = _run_cli(["run", _write(tmp_path, "good", GOOD), "--storage", tmp_path / "store",
                        "--pretrained-from", source], capsys)
    assert rc == 2 and len(out.err.strip().splitlines()) == 1
    why = "does not exist" if make == "missing" else "holds no complete pretrained model"
    assert f"--pretrained-from: {source} {why}" in out.err
    assert not (tmp_path / "store").exists()


def test_validate_prints_count_space_and_cost(tmp_path, capsys):
    rc, out = _run_cli(["validate", _write(tmp_path, "good", {**GOOD, "search": "grid"})], capsys)
    assert rc == 0
    assert "3 trials, search grid" in out.out and "space weight_bits: choice [4, 8]" in out.out
    assert "grid point 2: {'compression': 'quant', 'weight_bits': 8}" in out.out
    assert "estimated training compute" in out.out and "1 distinct model(s), shared" in out.out
    rc, out = _run_cli(["validate", _write(tmp_path, "good", {**GOOD, "search": "grid"}), "--num-samples", "9"], capsys)
    assert rc == 2 and "--num-samples: 9 is more than the grid's 3 points plus 0 references" in out.err


def test_validate_says_when_a_finite_space_is_smaller_than_the_trials_asked_for(tmp_path, capsys):
    # GOOD's space: no compression, or quantization at 4 or 8 bits (weight_bits applies only there): 3
    rc, out = _run_cli(["validate", _write(tmp_path, "small", {**GOOD, "num_samples": 5})], capsys)
    assert rc == 0 and "the space holds 3 distinct configurations, fewer than the 5 searched trials" in out.out
    # the cost counts the 3 configurations the sweep will run, once each: the grid's, not 5 random draws
    cost = next(line for line in out.out.splitlines() if "estimated training compute" in line)
    rc, grid = _run_cli(["validate", _write(tmp_path, "grid", {**GOOD, "search": "grid"})], capsys)
    assert cost == next(line for line in grid.out.splitlines() if "estimated training compute" in line)
    rc, out = _run_cli(["validate", _write(tmp_path, "fits", {**GOOD, "num_samples": 3})], capsys)
    assert rc == 0 and "distinct configurations" not in out.out
    continuous = {**GOOD, "num_samples": 50, "space": {"compression": {"choice": ["prune_structured"]},
                                                        "sparsity": {"uniform": [0.1, 0.9]}}}
    rc, out = _run_cli(["validate", _write(tmp_path, "cont", continuous)], capsys)
    assert rc == 0 and "distinct configurations" not in out.out
    stepped = {**continuous, "space": {**continuous["space"], "sparsity": {"uniform": [0.1, 0.9], "step": 0.1}}}
    rc, out = _run_cli(["validate", _write(tmp_path, "stepped", stepped)], capsys)
    assert rc == 0 and "space sparsity: uniform [0.1, 0.9], step 0.1" in out.out  # the grid it is searched on


def test_validate_prints_the_sampler_options(tmp_path, capsys):
    rc, out = _run_cli(["validate", _write(tmp_path, "opts", {**GOOD, "search": {"sampler": "tpe_front", "kappa": 3}})],
                       capsys)
    assert rc == 0 and "search tpe_front {kappa: 3} (search seed 0)" in out.out
    rc, out = _run_cli(["validate", _write(tmp_path, "null", {**GOOD, "search": {"sampler": "tpe_front", "kappa": None}})],
                       capsys)
    assert rc == 0 and "search tpe_front {kappa: null}" in out.out
    rc, out = _run_cli(["validate", _write(tmp_path, "plain", GOOD)], capsys)
    assert "search tpe_front (search seed 0)" in out.out


def test_validate_prints_the_early_stopping_it_will_run(tmp_path, capsys):
    es = {**GOOD, "fixed": {**GOOD["fixed"], "finetune": "adversarial", "finetune_epochs": 3},
          "early_stopping": {"rungs": [0, 1], "eta": 2, "screen_steps": 5}}
    rc, out = _run_cli(["validate", _write(tmp_path, "es", es)], capsys)
    assert rc == 0
    line = next(x for x in out.out.splitlines() if x.strip().startswith("early stopping:"))
    assert "rungs [0, 1]" in line and "eta 2" in line and "top 1/2 once it has 3 points" in line
    # digits' default val split holds 143 images: fewer than the 512 a rung would screen
    assert "all 143 val images (fewer than screen_size 512" in line and "PGD-5" in line
    rc, out = _run_cli(["validate", _write(tmp_path, "off", GOOD)], capsys)
    assert "early stopping" not in out.out


@pytest.mark.parametrize("resources, needle", [({"cpu": 64}, "resources.cpu: each trial asks for 64 CPUs"),
                                               ({"gpu": 1}, "resources.gpu: each trial asks for 1 GPUs, but none"),
                                               ({"gpu": 0.5}, "resources.gpu: each trial asks for 0.5 GPUs, but none"),
                                               ({"gpu": "1/4", "cpu": 0.5},
                                                "resources.gpu: each trial asks for 0.25 GPUs, but none")])
def test_resources_no_node_has_are_refused_before_any_trial(resources, needle, ray_local, tmp_path, capsys):  # noqa: F811
    rc, out = _run_cli(["run", _write(tmp_path, "big", {**GOOD, "resources": resources}), "--storage",
                        tmp_path / "store"], capsys)
    assert rc == 2 and needle in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists()


def test_an_existing_sweep_folder_is_refused_with_a_hint(tmp_path, capsys):
    (tmp_path / "store" / "good").mkdir(parents=True)
    rc, out = _run_cli(["run", _write(tmp_path, "good", GOOD), "--storage", tmp_path / "store"], capsys)
    assert rc == 2 and "already exists: continue it with 'rcsweep resume" in out.err
    rc, out = _run_cli(["resume", tmp_path / "store" / "good"], capsys)
    assert rc == 2 and "is not a rcsweep sweep folder (no sweep.yaml)" in out.err


def test_a_sweep_folders_own_file_gives_its_objectives_and_can_be_run_again(tmp_path, capsys):
    """A sweep folder's sweep.yaml carries rcsweep's provenance section. The analysis verbs read
    the sweep's objectives from it (a new user's pareto, report and export --pareto used the
    default objectives: the file was refused and the fallback hid it), and validate/run accept
    it again; a folder named as a sweep file is one line."""
    from analysis.commands import sweep_objectives
    from rcsweep.sweep.folder import write_spec
    from rcsweep.sweepfile import load_sweep

    spec = load_sweep({**GOOD, "name": "s", "objectives": {"robust_acc": "max", "params_nonzero": "min"}})
    folder = tmp_path / "s"
    folder.mkdir()
    write_spec(folder, spec, {"command": "rcsweep run s.yaml"})
    assert "provenance" in (folder / "sweep.yaml").read_text()
    assert sweep_objectives(folder) == "robust_acc:max,params_nonzero:min"
    assert capsys.readouterr().err == ""
    rc, out = _run_cli(["validate", str(folder / "sweep.yaml")], capsys)
    assert rc == 0 and "objectives robust_acc max, params_nonzero min" in out.out
    rc, out = _run_cli(["validate", str(folder)], capsys)
    assert rc == 2 and out.err.strip() == f"rcsweep: error: {folder} is a folder, not a sweep file; its sweep file is " \
                                          f"{folder / 'sweep.yaml'}"
    (folder / "sweep.yaml").write_text("objectives: [")  # damaged: said, and the default applies
    assert sweep_objectives(folder) == "robust_acc:max,model_bits:min"
    assert "sweep.yaml unreadable" in capsys.readouterr().err


def test_resume_names_the_flag_when_num_samples_would_shrink_the_sweep(tmp_path, capsys):
    from rcsweep.sweep.folder import write_spec
    from rcsweep.sweepfile import load_sweep

    folder = tmp_path / "s"
    folder.mkdir()
    write_spec(folder, load_sweep({**GOOD, "name": "s", "num_samples": 3}), {})
    (folder / "tune").mkdir()
    (folder / "tune" / "tuner.pkl").write_bytes(b"")  # a sweep that started; refused before Tune reads it
    rc, out = _run_cli(["resume", str(folder), "--num-samples", "2"], capsys)
    assert rc == 2 and out.err.strip() == ("rcsweep: error: --num-samples: 2 is fewer than the sweep's 3 trials "
                                           "(it can only grow)")
