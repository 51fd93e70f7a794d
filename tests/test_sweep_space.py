"""The conditional search space and the sweep searcher (no Ray cluster needed)."""
import optuna
import pytest

from rcsweep.sweepfile import load_sweep

SPACE = {
    "fixed": {"dataset": "digits", "pretrain_epochs": 2},
    "space": {"pretrain": {"choice": ["standard", "adversarial"]},
              "compression": {"choice": ["none", "prune_structured", "quant"]},
              "sparsity": {"uniform": [0.1, 0.9]},
              "weight_bits": {"choice": [2, 4, 8]},
              "finetune": {"choice": ["none", "clean", "adversarial"]},
              "eps_finetune": {"uniform": [0.05, 0.2]}},
    "references": [{"compression": "none", "finetune": "none", "pretrain": "standard"},
                   {"compression": "none", "finetune": "none", "pretrain": "adversarial"}],
    "num_samples": 30,
}


def test_space_draws_parameters_only_where_they_apply():
    from rcsweep.sweep.space import ConditionalSpace

    space = ConditionalSpace(load_sweep(SPACE))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        p = space(trial)
        seen.add((p["compression"], p["finetune"]))
        assert ("sparsity" in p) == (p["compression"] == "prune_structured")
        assert ("weight_bits" in p) == (p["compression"] == "quant")
        assert ("eps_finetune" in p) == (p["finetune"] == "adversarial")
        assert set(trial.params) == set(p)  # Optuna models exactly the parameters that acted
        study.tell(trial, [0.5, 1.0])
    assert len(seen) == 9  # every method combination was drawn


def _searcher(data):
    from rcsweep.sweep.search import build_searcher

    limiter = build_searcher(load_sweep(data)).searcher
    return limiter, limiter.searcher


def test_references_come_first_and_count_in_num_samples():
    from ray.tune.search import Searcher

    # random search: TPE's startup would wait for its running trials (tested in test_search.py)
    _, s = _searcher({**SPACE, "num_samples": 4, "search": "random"})
    out = [s.suggest(f"t{i}") for i in range(5)]
    assert out[0]["reference"] and out[0]["trial"]["pretrain"] == "standard"
    assert out[1]["reference"] and out[1]["trial"]["pretrain"] == "adversarial"
    assert not out[2]["reference"] and not out[3]["reference"]
    assert out[4] == Searcher.FINISHED
    assert out[0]["trial"]["compression"] == "none" and out[0]["trial"]["sparsity"] is None


def test_same_seed_same_trials_and_state_round_trip(tmp_path):
    _, a = _searcher({**SPACE, "search_seed": 7, "search": "random"})
    _, b = _searcher({**SPACE, "search_seed": 7, "search": "random"})
    first = [a.suggest(f"t{i}")["trial"] for i in range(6)]
    assert first == [b.suggest(f"t{i}")["trial"] for i in range(6)]
    path = tmp_path / "state.pkl"
    a.save(str(path))
    _, c = _searcher({**SPACE, "search_seed": 7, "search": "random"})
    c.restore(str(path))
    assert c.issued == 6


def test_grid_runs_every_point_once_and_num_samples_extends():
    from ray.tune.search import Searcher

    data = {"fixed": {"dataset": "digits"}, "search": "grid",
            "space": {"compression": {"choice": ["none", "quant"]}, "weight_bits": {"choice": [4, 8]}},
            "references": [{"compression": "none", "seed": 1}]}
    spec = load_sweep(data)
    assert spec.total_trials() == 1 + 3  # none drops weight_bits: 3 distinct points
    _, s = _searcher(data)
    trials = [s.suggest(f"t{i}") for i in range(4)]
    assert s.suggest("t4") == Searcher.FINISHED
    assert trials[0]["trial"]["seed"] == 1
    assert sorted((t["trial"]["compression"], t["trial"]["weight_bits"]) for t in trials[1:]) == \
        [("none", None), ("quant", 4), ("quant", 8)]
    # resume --num-samples: Tune hands the new count over through set_search_properties
    _, s = _searcher({**SPACE, "num_samples": 3})
    assert [s.suggest(f"t{i}") is not Searcher.FINISHED for i in range(3)] == [True] * 3
    s.set_search_properties(None, None, {"_sweep": {"num_samples": 5}})
    assert s.suggest("t3") != Searcher.FINISHED


@pytest.mark.parametrize("objectives", [{"robust_acc": "max"}, {"robust_acc": "max", "model_bits": "min"}])
def test_optuna_learns_from_completed_trials(objectives):
    _, s = _searcher({**SPACE, "objectives": objectives, "references": [], "num_samples": 3})
    s.suggest("a")
    s.on_trial_complete("a", {"robust_acc": 0.4, "model_bits": 1000})
    study = s.study()
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    assert list(study.trials[0].values) == [0.4, 3.0][:len(objectives)]  # log10(model_bits)
    s.suggest("b")
    s.on_trial_complete("b", error=True)
    assert study.trials[-1].state.name == "FAIL"


def test_suggestions_that_would_wait_for_a_pretraining_are_held_back(tmp_path):
    from rcsweep import TrialConfig
    from rcsweep.sweep.store import pretrain_id

    data = {**SPACE, "space": {"pretrain": SPACE["space"]["pretrain"], "finetune": SPACE["space"]["finetune"]},
            "num_samples": 12, "search": "random"}
    _, s = _searcher(data)
    s.set_search_properties(None, None, {"_sweep": {"dir": str(tmp_path), "num_samples": 12}})
    refs = [s.suggest(f"ref{i}")["trial"]["pretrain"] for i in range(2)]
    assert refs == ["standard", "adversarial"]  # both models are being trained now
    (tmp_path / "pretrained" / pretrain_id(TrialConfig(**SPACE["fixed"])) / "pretrain.json").parent.mkdir(parents=True)
    (tmp_path / "pretrained" / pretrain_id(TrialConfig(**SPACE["fixed"])) / "pretrain.json").write_text("{}")
    # the standard model is ready, the adversarial one is not: standard trials go first (the
    # sampler's first suggestion is made adversarial, so that one is surely held back)
    s.study().enqueue_trial({"pretrain": "adversarial", "finetune": "clean"})
    nxt = [s.suggest(f"t{i}")["trial"]["pretrain"] for i in range(2)]
    held = len(s.held)
    assert nxt == ["standard", "standard"] and held >= 1 and all(p["pretrain"] == "adversarial" for _, p in s.held)
    s.on_trial_complete("ref1")  # the adversarial model is done (its trial finished)
    assert [s.suggest(f"u{i}")["trial"]["pretrain"] for i in range(held)] == ["adversarial"] * held  # oldest first
    asked = [t for t in s.study().trials if not t.user_attrs.get("repeat_of") and not t.user_attrs.get("reference")]
    assert s.issued == 4 + held and len(asked) == 2 + held  # every new suggestion Optuna made ran, none was lost
