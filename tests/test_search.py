"""The sweep searcher and its study (issue 15), driven by hand: no configuration runs twice, a
repeat is told the earlier result, references and finished trials are in the study (also after a
resume from the journal), stale running trials are closed, constraints and flags reach the sampler
as Optuna constraint values, and a finite space ends the sweep early. No Ray cluster needed."""
import json

import pytest
from ray.tune.search import Searcher

from rcsweep.sweep.search import SEARCH_FILE, STUDY_FILE, build_searcher, config_key
from rcsweep.sweepfile import load_sweep

FIXED = {"dataset": "digits", "pretrain_epochs": 2}
REFS = [{"pretrain": "standard", "compression": "none", "finetune": "none"},
        {"pretrain": "adversarial", "compression": "none", "finetune": "none"}]
# 2 x (5 + 4) x 2 = 36 configurations, each a choice
DISCRETE = {"fixed": FIXED, "references": REFS, "num_samples": 20,
            "space": {"pretrain": {"choice": ["standard", "adversarial"]},
                      "compression": {"choice": ["prune_structured", "quant"]},
                      "sparsity": {"choice": [0.1, 0.3, 0.5, 0.7, 0.9]},
                      "weight_bits": {"choice": [16, 8, 4, 2]},
                      "finetune": {"choice": ["clean", "adversarial"]}}}


def searcher(data, folder=None):
    s = build_searcher(load_sweep(data)).searcher.searcher
    if folder is not None:
        s.set_search_properties(None, None, {"_sweep": {"dir": str(folder), "num_samples": s.limit}})
    return s


def fake_result(trial: dict) -> dict:
    """A deterministic result per configuration: adversarial training helps, fewer bits cost a little."""
    robust = (0.6 if trial["pretrain"] == "adversarial" else 0.05) + (0.2 if trial["finetune"] == "adversarial" else 0)
    bits = 1e6 * (1 - (trial.get("sparsity") or 0)) * ((trial.get("weight_bits") or 32) / 32)
    robust -= 0.1 * (1 - bits / 1e6)
    return {"robust_acc": robust, "model_bits": bits, "clean_acc": 0.9, "flags": ""}


def run(s, n, result=fake_result, concurrent=2):
    """Issue ``n`` trials ``concurrent`` at a time, completing the oldest first; returns the configs."""
    issued, live = [], []
    for i in range(n):
        out = s.suggest(f"t{i}")
        while out is None:  # the searcher waits for its sampler's startup trials: one finishes
            tid, trial = live.pop(0)
            s.on_trial_complete(tid, result(trial))
            out = s.suggest(f"t{i}")
        if out == Searcher.FINISHED:
            break
        issued.append(out["trial"])
        live.append((f"t{i}", out["trial"]))
        if len(live) >= concurrent:
            tid, trial = live.pop(0)
            s.on_trial_complete(tid, result(trial))
    for tid, trial in live:
        s.on_trial_complete(tid, result(trial))
    return issued


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2"])
def test_no_configuration_is_issued_twice_and_repeats_are_told_the_earlier_result(sampler, tmp_path):
    # a 6-point space and 8 trials: random draws must repeat, and every repeat is answered, not run
    data = {"fixed": FIXED, "search": sampler, "num_samples": 8, "references": [REFS[0]],
            "space": {"finetune": {"choice": ["none", "clean", "adversarial"]}, "seed": {"choice": [0, 1]}}}
    s = searcher(data, tmp_path)
    issued = run(s, 8)
    keys = [json.dumps(t, sort_keys=True) for t in issued]
    assert len(keys) == len(set(keys))  # the reference (finetune none, seed 0) is one of the 6, run once
    assert len(issued) == 6 and s.exhausted == "6 distinct configurations, all run"
    assert json.loads((tmp_path / SEARCH_FILE).read_text())["exhausted"] == s.exhausted
    study = s.study()
    repeats = [t for t in study.trials if t.user_attrs.get("repeat_of")]
    assert len(repeats) == s.repeats
    results = {t.user_attrs["config_key"]: t.values for t in study.trials
               if t.state.name == "COMPLETE" and not t.user_attrs.get("repeat_of")}
    for t in repeats:  # told exactly what the configuration's own trial gave
        assert t.state.name == "COMPLETE" and t.values == results[t.user_attrs["repeat_of"]]
    if sampler == "random":
        assert s.repeats > 0


def test_a_repeat_of_a_running_trial_waits_for_its_result():
    data = {"fixed": FIXED, "search": "random", "num_samples": 3, "references": [],
            "space": {"finetune": {"choice": ["none", "clean"]}}}
    s = searcher(data)
    first = s.suggest("a")["trial"]
    second = s.suggest("b")["trial"]
    assert first != second  # the one other configuration, after any repeats of the first
    waiting = sum(len(v) for v in s.waiting.values())
    assert waiting == s.repeats  # repeats of running trials wait, still running in the study
    s.on_trial_complete("a", fake_result(first))
    s.on_trial_complete("b", fake_result(second))
    assert not s.waiting
    assert all(t.state.name == "COMPLETE" for t in s.study().trials)
    assert s.suggest("c") == Searcher.FINISHED and s.exhausted == "2 distinct configurations, all run"


def test_a_collapsed_configuration_is_never_run_again_and_other_failures_may_be(tmp_path):
    data = {"fixed": FIXED, "search": "random", "num_samples": 6, "references": [],
            "space": {"finetune": {"choice": ["none", "clean"]}}}
    s = searcher(data, tmp_path)
    a = s.suggest("a")["trial"]
    (tmp_path / "trials" / "a").mkdir(parents=True)
    (tmp_path / "trials" / "a" / "collapsed.json").write_text("{}")
    s.on_trial_complete("a", error=True)  # deterministic: its configuration is done for this sweep
    b = s.suggest("b")["trial"]
    assert b != a
    s.on_trial_complete("b", error=True)  # e.g. a lost node: the configuration may run again
    c = s.suggest("c")["trial"]
    assert c == b
    failed = [t for t in s.study().trials if t.user_attrs.get("deterministic_failure")]
    assert [t.user_attrs["config_key"] for t in failed] == [json.dumps(a, sort_keys=True, default=str)]


def test_floats_on_a_declared_step_are_compared_exactly():
    data = {"fixed": FIXED, "search": "random", "num_samples": 30, "references": [],
            "space": {"compression": {"choice": ["prune_structured"]},
                      "sparsity": {"uniform": [0.1, 0.9], "step": 0.1}}}
    s = searcher(data)
    issued = run(s, 30)
    values = sorted(t["sparsity"] for t in issued)
    assert values == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]  # on the grid, each once, then done
    assert s.exhausted == "9 distinct configurations, all run"


def test_references_are_in_the_study_with_the_parameters_they_share(tmp_path):
    s = searcher({**DISCRETE, "search": "tpe"}, tmp_path)
    refs = [s.suggest("r0"), s.suggest("r1")]
    assert all(r["reference"] for r in refs)
    s.on_trial_complete("r0", {"robust_acc": 0.0, "model_bits": 1e6, "flags": ""})
    s.on_trial_complete("r1", {"robust_acc": 0.8, "model_bits": 1e6, "flags": ""})
    study = s.study()
    added = [t for t in study.trials if t.user_attrs.get("reference")]
    assert [t.params for t in added] == [{"pretrain": "standard"}, {"pretrain": "adversarial"}]
    # sizes are told on the hypervolume's scale: log10(model_bits)
    assert [t.values for t in added] == [[0.0, 6.0], [0.8, 6.0]]
    assert added[1].user_attrs["config"]["compression"] == "none"
    assert (tmp_path / STUDY_FILE).is_file()
    # a new searcher on the same folder (a resumed driver) finds them in the journal
    state = s.get_state()
    s2 = searcher({**DISCRETE, "search": "tpe"}, tmp_path)
    s2.set_state(state)
    assert [t.params for t in s2.study().trials if t.user_attrs.get("reference")] == [{"pretrain": "standard"},
                                                                                      {"pretrain": "adversarial"}]


def test_the_sampler_learns_from_the_references():
    """TPE with the references as its startup trials: 'adversarial' pretraining, the reference
    with the better robust accuracy at the same size, is drawn more often than without them."""
    def adversarial_share(with_refs: bool) -> float:
        drawn = []
        for seed in range(6):
            data = {**DISCRETE, "search": {"sampler": "tpe", "n_startup_trials": 2}, "search_seed": seed,
                    "references": REFS if with_refs else []}
            s = searcher(data)
            if with_refs:
                s.suggest("r0"), s.suggest("r1")
                s.on_trial_complete("r0", {"robust_acc": 0.02, "model_bits": 1e6, "flags": ""})
                s.on_trial_complete("r1", {"robust_acc": 0.8, "model_bits": 1e6, "flags": ""})
            else:  # two trials the sampler drew itself, which tell it nothing (failed)
                for i in range(2):
                    s.suggest(f"x{i}")
                    s.on_trial_complete(f"x{i}", error=True)
            for i in range(4):
                drawn.append(s.suggest(f"t{i}")["trial"]["pretrain"])
                if not with_refs:  # still in its startup: it would wait for a running trial
                    s.on_trial_complete(f"t{i}", error=True)
        return drawn.count("adversarial") / len(drawn)

    assert adversarial_share(True) >= 0.75 > adversarial_share(False)


def test_stale_running_trials_are_closed_on_resume(tmp_path):
    s = searcher({**DISCRETE, "references": [], "search": "random"}, tmp_path)
    s.suggest("a")
    state = s.get_state()  # Tune's last save: one trial issued
    s.suggest("b")  # asked after the save; then the driver is killed
    s2 = searcher({**DISCRETE, "references": [], "search": "random"}, tmp_path)
    s2.set_state(state)
    trials = s2.study().trials
    a = state["numbers"]["a"]
    # 'a' continues under Tune; 'b' and the suggestions held back with it are closed
    assert trials[a].state.name == "RUNNING" and len(trials) > 1
    assert all(t.state.name == "FAIL" for t in trials if t.number != a)
    s2.on_trial_complete("a", {"robust_acc": 0.5, "model_bits": 1e5, "flags": ""})
    assert s2.study().trials[a].state.name == "COMPLETE"
    assert s2.suggest("c")["trial"] is not None  # and the sampler goes on from the journal


def test_trials_finished_after_the_last_save_are_set_aside_and_references_told_once(tmp_path):
    """A driver killed after Tune's last save: a trial it issued and completed after that save is
    set aside by the runner, so its configuration may run again; a reference Tune reports again
    on resume is not added to the study twice."""
    data = {**DISCRETE, "references": [REFS[0]], "search": "random"}
    s = searcher(data, tmp_path)
    ref = s.suggest("r")
    s.on_trial_complete("r", fake_result({**ref["trial"], "finetune": "none"}))
    kept = s.suggest("a")["trial"]
    s.on_trial_complete("a", fake_result(kept))
    state = s.get_state()  # Tune's last save
    lost = s.suggest("b")["trial"]
    s.on_trial_complete("b", fake_result(lost))  # then the driver is killed
    state["refs"] = {"r": REFS[0]}  # as if the save had caught the reference still running
    s2 = searcher(data, tmp_path)
    s2.set_state(state)
    s2.on_trial_complete("r", fake_result({**ref["trial"], "finetune": "none"}))  # Tune reports it again
    study = s2.study()
    assert sum(bool(t.user_attrs.get("reference")) for t in study.trials) == 1
    assert s2._known.get(config_key(load_sweep(data).trial_config(kept))) == "finished"
    assert config_key(load_sweep(data).trial_config(lost)) not in s2._known  # may run again


def test_nsga2_crosses_over_the_searched_parameters_not_only_those_the_references_share():
    """The references carry only the parameters they share with the space (``pretrain``); NSGA-II's
    relative search space is the intersection over the trials it drew, so that it still crosses
    over ``compression`` and ``finetune`` (with the references in it, it was random search)."""
    s = searcher({**DISCRETE, "search": {"sampler": "nsga2", "population_size": 4}})
    run(s, 8)
    study = s.study()
    assert [t.params for t in study.trials if t.user_attrs.get("reference")] == [{"pretrain": "standard"},
                                                                                 {"pretrain": "adversarial"}]
    space = study.sampler.infer_relative_search_space(study, study.trials[-1])
    assert {"pretrain", "compression", "finetune"} <= space.keys()


def test_constraints_and_flags_reach_the_sampler_as_constraint_values(tmp_path):
    data = {**DISCRETE, "references": [], "search": "tpe", "constraints": {"clean_acc": ">= 0.7"}}
    s = searcher(data, tmp_path)
    for i, (clean, flags) in enumerate([(0.9, ""), (0.5, ""), (0.95, "suspect")]):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", {"robust_acc": 0.5, "model_bits": 1e5, "clean_acc": clean, "flags": flags})
    told = [t.constraints for t in s.study().trials]
    assert told[0] == {"clean_acc >= 0.7": pytest.approx(-0.2), "trusted": 0.0}
    assert told[1]["clean_acc >= 0.7"] == pytest.approx(0.2)  # violated
    assert told[2]["trusted"] == 1.0  # suspect: infeasible whatever its metrics
    s.suggest("t3")
    s.on_trial_complete("t3", {"robust_acc": 0.5, "model_bits": 1e5, "clean_acc": 0.9, "flags": "collapsed"})
    assert s.study().trials[-1].state.name == "FAIL"  # the flag table says: told failed


def test_config_key_separates_seeds_and_drops_what_does_not_apply():
    spec = load_sweep(DISCRETE)
    a = spec.trial_config({"pretrain": "standard", "compression": "quant", "weight_bits": 8, "sparsity": 0.5,
                           "finetune": "clean"})
    b = spec.trial_config({"pretrain": "standard", "compression": "quant", "weight_bits": 8, "sparsity": 0.9,
                           "finetune": "clean"})
    assert config_key(a) == config_key(b)  # sparsity does not apply to quantization
    assert config_key(a) != config_key(a.replace(seed=1))


def test_no_suggestion_while_the_samplers_startup_trials_run(tmp_path):
    """The default sampler's startup is the 2 references and 1 random trial: a 4th suggestion made
    while a reference runs would be a random draw too, so the searcher makes none (Tune asks again)
    until the references are complete; a searched startup trial is not waited for, nor a startup
    left short by a failure."""
    s = searcher({**DISCRETE}, tmp_path)
    r0, r1 = s.suggest("r0"), s.suggest("r1")
    assert r0["reference"] and r1["reference"]
    s.on_trial_complete("r0", fake_result(r0["trial"]))
    t2 = s.suggest("t2")
    assert t2 is not None and not t2["reference"]  # the startup's random trial
    assert s.suggest("t3") is None  # r1 and t2 run: they complete the startup, and r1 is a reference
    s.on_trial_complete("r1", fake_result(r1["trial"]))
    t3 = s.suggest("t3")  # only t2 runs, a searched trial: not waited for
    assert t3 is not None and s.issued == 4
    s.on_trial_complete("t2", error=True)
    assert s.suggest("t4") is not None
    # a reference that fails leaves the startup short: the next suggestion is not held back
    (tmp_path / "f").mkdir()
    f = searcher({**DISCRETE}, tmp_path / "f")
    f.suggest("r0"), f.suggest("r1")
    f.on_trial_complete("r0", error=True)
    assert f.suggest("t2") is not None and f.suggest("t3") is not None  # 0 complete + 2 running < 3
    # random search has no startup: it never waits
    r = searcher({**DISCRETE, "search": "random"})
    assert all(r.suggest(f"u{i}") is not None for i in range(5))
