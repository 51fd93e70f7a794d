"""The default sampler, ``tpe_front`` (rcsweep.samplers.tpe_front): TPE's proposals ranked by
optimistic hypervolume improvement, with the objectives the sweep layer says are known before
training. Its contract (distinct configurations, same seed same trials) is the shared suite's."""
import math

import optuna
import pytest

from rcsweep.samplers import DEFAULT, SAMPLERS, SamplerContext
from rcsweep.samplers.tpe_front import _enumerate, _hv, _StudyView
from rcsweep.sweep.space import ConditionalSpace, known_objectives
from rcsweep.sweepfile import load_sweep
from test_search import DISCRETE, FIXED, REFS, run, searcher

SPACE = {"pretrain": optuna.distributions.CategoricalDistribution(["standard", "adversarial"]),
         "compression": optuna.distributions.CategoricalDistribution(["prune_structured", "quant"]),
         "sparsity": optuna.distributions.CategoricalDistribution([0.5, 0.9]),
         "weight_bits": optuna.distributions.CategoricalDistribution([8, 2]),
         "finetune": optuna.distributions.CategoricalDistribution(["clean", "adversarial"])}
DEPS = {1: ("compression", "sparsity", "weight_bits")}


applicable = ConditionalSpace(load_sweep(DISCRETE)).applied


def study_with(rows):
    """A 2-objective study (robust_acc max, log10 bits min) holding ``rows`` as completed trials."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for params, acc, bits in rows:
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: SPACE[k] for k in params},
                                                  values=[acc, math.log10(bits)]))
    return study


def test_it_is_the_default_and_registered():
    assert DEFAULT == "tpe_front" and "tpe_front" in SAMPLERS.names()
    assert load_sweep(DISCRETE).search == "tpe_front"


def test_the_sweep_layer_says_which_objectives_are_known_and_on_what():
    spec = load_sweep(DISCRETE)
    assert known_objectives(spec) == {1: ("compression", "sparsity", "weight_bits")}
    three = load_sweep({**DISCRETE, "objectives": {"robust_acc": "max", "model_bits": "min", "flops_route": "min"},
                        "space": {**DISCRETE["space"], "eps_finetune": {"uniform": [0.1, 0.3]}}})
    known = known_objectives(three)
    assert 0 not in known and "eps_finetune" not in known[2] and {"pretrain", "finetune", "sparsity"} <= set(known[2])


def test_applied_drops_what_does_not_apply():
    space = ConditionalSpace(load_sweep(DISCRETE))
    both = {"pretrain": "standard", "compression": "quant", "sparsity": 0.5, "weight_bits": 8, "finetune": "clean"}
    assert space.applied(both) == {"pretrain": "standard", "compression": "quant", "weight_bits": 8, "finetune": "clean"}


def test_an_unseen_small_size_on_a_good_route_adds_most_and_a_seen_one_nothing():
    adv = {"pretrain": "adversarial", "finetune": "adversarial"}
    std = {"pretrain": "standard", "finetune": "adversarial"}
    rows = [({**adv, "compression": "quant", "weight_bits": 8}, 0.6, 2e5),
            ({**adv, "compression": "prune_structured", "sparsity": 0.5}, 0.55, 1.9e5),
            ({**std, "compression": "quant", "weight_bits": 8}, 0.2, 2e5)]
    view = _StudyView(study_with(rows), DEPS, applicable)
    seen = {**rows[0][0], "sparsity": 0.9}  # sparsity does not apply to quant: the same configuration
    quant2_adv = {**adv, "compression": "quant", "weight_bits": 2}
    quant2_std = {**std, "compression": "quant", "weight_bits": 2}
    assert view.score(seen) == -1.0
    assert view.score(quant2_adv) > 0 and view.score(quant2_std) < view.score(quant2_adv)
    # the standard route is bounded by what standard pretraining showed at a size at least as large
    assert view.optimistic(applicable(quant2_std))[0] == pytest.approx(-0.2)
    assert view.optimistic(applicable(quant2_adv))[0] == pytest.approx(-0.6)


def test_a_size_not_seen_is_fitted_along_its_numeric_parameter():
    adv = {"pretrain": "adversarial", "finetune": "adversarial", "compression": "prune_structured"}
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = {**{k: SPACE[k] for k in adv}, "sparsity": optuna.distributions.FloatDistribution(0.1, 0.9)}
    for s, bits in ((0.1, 6e5), (0.5, 2e5)):
        study.add_trial(optuna.trial.create_trial(params={**adv, "sparsity": s}, distributions=dist,
                                                  values=[0.5, math.log10(bits)]))
    view = _StudyView(study, DEPS, None)
    got = view.optimistic({**adv, "sparsity": 0.3})[1]
    assert got == pytest.approx((math.log10(6e5) + math.log10(2e5)) / 2)


def test_enumerates_a_finite_space_once_per_configuration():
    got = _enumerate(SPACE, applicable)
    assert len(got) == 2 * (2 + 2) * 2
    assert _enumerate({**SPACE, "lr": optuna.distributions.FloatDistribution(0.1, 1.0)}, applicable) == []


def test_a_small_finite_space_runs_without_repeats(tmp_path):
    s = searcher({**DISCRETE, "search": "tpe_front", "num_samples": 30}, tmp_path)
    issued = run(s, 30)
    assert len(issued) == 30 and len({str(sorted(t.items())) for t in issued}) == 30
    assert s.repeats == 0  # every proposal run, or an unseen configuration ranked instead


def test_startup_is_the_references_and_one():
    ctx = SamplerContext(seed=0, num_samples=56, n_references=2)
    sampler = SAMPLERS.get("tpe_front")().build(ctx)
    assert sampler._base._n_startup_trials == 3 == SAMPLERS.get("tpe_front")().startup(ctx)


def test_without_known_objectives_it_is_tpe():
    ctx = SamplerContext(seed=3, num_samples=20, n_references=0)
    front, tpe = SAMPLERS.get("tpe_front"), SAMPLERS.get("tpe")
    a = front(front.Params(n_startup_trials=5)).build(ctx)
    b = tpe(tpe.Params(n_startup_trials=5)).build(ctx)
    studies = [optuna.create_study(directions=["maximize", "minimize"], sampler=x) for x in (a, b)]
    for study in studies:
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=15)
    assert [t.params for t in studies[0].trials] == [t.params for t in studies[1].trials]


def test_pretraining_bounds_robustness_by_size_where_route_flops_are_an_objective():
    # objectives: robust_acc max, log10 bits min, flops min; flops follow from pretraining and
    # compression, the size from compression only: standard pretraining is bounded by what it showed
    # at a size at least as large (the dense reference), though every such trial is costlier in FLOPs
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    pre = {"pretrain": SPACE["pretrain"]}
    for p, acc, flops in (("standard", 0.01, 1e10), ("adversarial", 0.6, 6e10)):
        study.add_trial(optuna.trial.create_trial(params={"pretrain": p}, distributions=pre,
                                                  values=[acc, math.log10(7e5), flops]))
    dist = {k: SPACE[k] for k in ("pretrain", "compression", "weight_bits")}
    study.add_trial(optuna.trial.create_trial(
        params={"pretrain": "adversarial", "compression": "quant", "weight_bits": 8}, distributions=dist,
        values=[0.55, math.log10(2e5), 6.5e10]))
    known = {1: ("compression", "weight_bits"), 2: ("pretrain", "compression", "weight_bits")}
    view = _StudyView(study, known, None)
    std = view.optimistic({"pretrain": "standard", "compression": "quant", "weight_bits": 8})
    adv = view.optimistic({"pretrain": "adversarial", "compression": "quant", "weight_bits": 2})
    assert std[0] == pytest.approx(-0.01) and adv[0] == pytest.approx(-0.6)


def test_infeasible_and_untrusted_trials_are_not_on_its_front():
    study = optuna.create_study(directions=["maximize", "minimize"])
    adv = {"pretrain": "adversarial", "finetune": "adversarial", "compression": "quant", "weight_bits": 8}
    dist = {k: SPACE[k] for k in adv}
    study.add_trial(optuna.trial.create_trial(params=adv, distributions=dist, values=[0.6, 5.3],
                                              constraints={"trusted": 0.0}))
    suspect = {**adv, "weight_bits": 2}
    study.add_trial(optuna.trial.create_trial(params=suspect, distributions=dist, values=[0.9, 4.7],
                                              constraints={"trusted": 1.0}))
    view = _StudyView(study, DEPS, None)
    assert [c for c, _ in view.complete] == [adv]


def test_a_candidate_near_collapsed_trials_of_its_method_is_discounted():
    # standard-pretrained pruning collapsed twice at high sparsity and trained once at low
    # sparsity; adversarial pruning trained: the collapse chance is high near the collapses, lower
    # far from them (shrunk toward the method's rate), and nil for the other method
    std = {"pretrain": "standard", "finetune": "adversarial", "compression": "prune_structured"}
    adv = {**std, "pretrain": "adversarial"}
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = {**{k: SPACE[k] for k in std}, "sparsity": optuna.distributions.FloatDistribution(0.1, 0.9)}
    for params, values in (({**adv, "sparsity": 0.5}, [0.5, 5.3]), ({**std, "sparsity": 0.1}, [0.4, 5.8]),
                           ({**adv, "sparsity": 0.8}, [0.3, 4.8])):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dist, values=values))
    view = _StudyView(study, DEPS, None)
    assert view.collapse_probability({**std, "sparsity": 0.85}) == 0.0  # no collapse yet: no discount
    for s in (0.85, 0.9):
        study.add_trial(optuna.trial.create_trial(params={**std, "sparsity": s}, distributions=dist,
                                                  state=optuna.trial.TrialState.FAIL,
                                                  user_attrs={"deterministic_failure": True}))
    study.add_trial(optuna.trial.create_trial(params={**std, "sparsity": 0.5}, distributions=dist,
                                              state=optuna.trial.TrialState.FAIL))  # not a collapse: may not repeat
    view = _StudyView(study, DEPS, None)
    near, far = (view.collapse_probability({**std, "sparsity": s}) for s in (0.87, 0.2))
    assert 0.5 < near < 1 and 0 < far < 0.5 * near
    assert view.collapse_probability({**adv, "sparsity": 0.87}) == 0.0
    # the score is the improvement times the chance that it trains
    cand = {**std, "sparsity": 0.87}
    point = view.optimistic(cand)
    gain = _hv(view.front + [point], view.ref) - view.base_hv
    assert gain > 0 and view.score(cand) == pytest.approx(gain * (1 - near))


def test_a_size_no_trial_measured_is_the_measured_one_not_a_guess():
    # one pruned trial: no line through one point, so without a measurement the size of sparsity
    # 0.9 is guessed as the smallest seen; with one it is what the probe measured
    adv = {"pretrain": "adversarial", "finetune": "adversarial"}
    rows = [({**adv, "compression": "prune_structured", "sparsity": 0.5}, 0.55, 2e5),
            ({**adv, "compression": "quant", "weight_bits": 8}, 0.6, 1.9e5)]
    new = {**adv, "compression": "prune_structured", "sparsity": 0.9}
    asked = []

    def measure(params):
        asked.append(params)
        return {1: math.log10(1e4)} if params.get("sparsity") == 0.9 else {}

    guessed = _StudyView(study_with(rows), DEPS, applicable).optimistic(applicable(new))[1]
    measured = _StudyView(study_with(rows), DEPS, applicable, measure).optimistic(applicable(new))[1]
    assert guessed == pytest.approx(math.log10(1.9e5)) and measured == pytest.approx(4.0)
    # a size some trial measured is taken from it, not measured again
    seen = _StudyView(study_with(rows), DEPS, applicable, measure).optimistic(applicable(rows[0][0]))[1]
    assert seen == pytest.approx(math.log10(2e5)) and asked == [applicable(new)]


def test_where_no_proposal_adds_to_the_front_an_unseen_configuration_that_does_is_chosen():
    # TPE (here a stand-in that always proposes one configuration whose optimistic point is
    # dominated) proposes nothing that adds: in a finite space the unseen configuration with the
    # largest optimistic improvement is taken instead of TPE's own proposal
    from rcsweep.samplers.tpe_front import _FrontTPE

    adv = {"pretrain": "adversarial", "finetune": "adversarial"}
    std = {"pretrain": "standard", "finetune": "clean"}
    rows = [({**adv, "compression": "quant", "weight_bits": 8}, 0.6, 2e5),
            ({**adv, "compression": "prune_structured", "sparsity": 0.5}, 0.55, 1.9e5),
            ({**std, "compression": "quant", "weight_bits": 8}, 0.02, 2e5)]
    dominated = {**std, "compression": "prune_structured", "sparsity": 0.5, "weight_bits": 8}

    class Proposes:
        def sample_relative(self, study, trial, space):
            return dict(dominated)

    study = study_with(rows)
    view = _StudyView(study, DEPS, applicable)
    assert view.score(dominated) == 0.0
    sampler = _FrontTPE(Proposes(), SamplerContext(seed=0, num_samples=20, known=DEPS, applicable=applicable), 4)
    chosen = sampler.sample_relative(study, None, SPACE)
    best = max(_enumerate(SPACE, applicable), key=view.score)
    assert view.score(chosen) > 0 and view.score(chosen) == view.score(best)
    # where nothing unseen adds either (a trial at 0.99 with 10 bits dominates every optimistic
    # point), TPE's own proposal stands
    beaten = study_with(rows + [({**adv, "compression": "quant", "weight_bits": 2}, 0.99, 10.0)])
    assert sampler.sample_relative(beaten, None, SPACE) == dominated


def test_a_choice_worse_across_the_compressions_tried_is_bounded_by_how_much_worse():
    # clean fine-tuning beat adversarial fine-tuning by 0.02 at 8 bits and lost by 0.15 at
    # sparsities 0.5 and 0.9; at 2 bits only adversarial fine-tuning ran (0.45). The per-choice bound
    # alone puts clean fine-tuning at 2 bits at its best at a size at least as large (0.62); the
    # additive model, which sees clean fine-tuning worse on average, bounds it near 0.45 - 0.1
    adv = {"pretrain": "adversarial", "finetune": "adversarial"}
    clean = {"pretrain": "adversarial", "finetune": "clean"}
    rows = []
    for comp, a, c, size in ((("quant", "weight_bits", 8), 0.60, 0.62, 2e5),
                             (("prune_structured", "sparsity", 0.5), 0.55, 0.40, 1.9e5),
                             (("prune_structured", "sparsity", 0.9), 0.25, 0.10, 1e4)):
        at = {"compression": comp[0], comp[1]: comp[2]}
        rows += [({**adv, **at}, a, size), ({**clean, **at}, c, size)]
    rows.append(({**adv, "compression": "quant", "weight_bits": 2}, 0.45, 5.5e4))
    q2_clean = {**clean, "compression": "quant", "weight_bits": 2}
    bound = _StudyView(study_with(rows), DEPS, applicable)
    assert bound.model is None and bound.optimistic(applicable(q2_clean))[0] == pytest.approx(-0.62)
    assert bound.score(q2_clean) > 0
    both = _StudyView(study_with(rows), DEPS, applicable, kappa=1.0)
    got = both.optimistic(applicable(q2_clean))
    assert -0.45 < got[0] < -0.3  # minimisation scale: below 2-bit adversarial fine-tuning's 0.45
    assert got[1] == bound.optimistic(applicable(q2_clean))[1]  # the size is untouched
    assert both.score(q2_clean) == 0.0  # dominated by the 2-bit trial at its bound: nothing to add
    # the model only lowers a bound: with kappa large it is the per-choice bound again
    loose = _StudyView(study_with(rows), DEPS, applicable, kappa=100.0)
    assert loose.optimistic(applicable(q2_clean)) == bound.optimistic(applicable(q2_clean))


def test_the_additive_model_recovers_additive_effects_and_is_unsure_where_it_saw_nothing():
    from rcsweep.samplers.tpe_front import _AdditiveModel

    pre = {"adversarial": 0.3, "standard": -0.25}
    fine = {"adversarial": 0.2, "clean": 0.0}
    bits = {16: 5.5, 8: 5.2, 4: 4.9, 2: 4.6}
    rows = []
    for p in pre:
        for f in fine:
            for b in (16, 8, 4):
                rows.append(({"pretrain": p, "finetune": f, "compression": "quant", "weight_bits": b},
                             0.2 + pre[p] + fine[f] + 0.1 * (bits[b] - 4.6), 10 ** bits[b]))
    dist = {**{k: SPACE[k] for k in ("pretrain", "finetune", "compression")},
            "weight_bits": optuna.distributions.CategoricalDistribution([16, 8, 4, 2])}
    study = optuna.create_study(directions=["maximize", "minimize"])
    for params, acc, size in rows:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dist, values=[acc, math.log10(size)]))
    view = _StudyView(study, DEPS, applicable, kappa=0.0)
    model = view.model
    assert isinstance(model, _AdditiveModel)
    for p in pre:
        for f in fine:
            cfg = {"pretrain": p, "finetune": f, "compression": "quant", "weight_bits": 8}
            got = -model.tighten(cfg, [-1.0, 5.2])[0]  # an unbounded point: the model's mean alone
            assert got == pytest.approx(0.2 + pre[p] + fine[f] + 0.06, abs=0.02)
    # the posterior is wider for a choice no trial made (pruning) than for one many made
    import numpy as np

    sd = lambda cfg, size: math.sqrt(float(np.array(model._row(cfg, [0.0, size])) @ model.cov  # noqa: E731
                                           @ np.array(model._row(cfg, [0.0, size]))))
    seen = {"pretrain": "adversarial", "finetune": "adversarial", "compression": "quant", "weight_bits": 8}
    unseen = {"pretrain": "adversarial", "finetune": "adversarial", "compression": "prune_structured", "sparsity": 0.5}
    assert sd(unseen, 5.2) > 3 * sd(seen, 5.2)


def test_kappa_is_an_option_and_null_turns_the_model_off():
    front = SAMPLERS.get("tpe_front")
    assert front.Params().kappa == 1.0 and front.Params(kappa=None).kappa is None
    ctx = SamplerContext(seed=0, num_samples=20, n_references=0, known=DEPS, applicable=applicable)
    assert front(front.Params(kappa=2.5)).build(ctx)._kappa == 2.5
    assert load_sweep({**DISCRETE, "search": {"sampler": "tpe_front", "kappa": None}}).search == "tpe_front"
    from rcsweep.errors import ConfigError

    with pytest.raises(ConfigError, match=r"search\.kappa: must be in \[0, 100\], got -1"):
        load_sweep({**DISCRETE, "search": {"sampler": "tpe_front", "kappa": -1}})


def test_a_one_valued_parameter_is_part_of_the_configuration_scored(tmp_path):
    # compression has one choice: Optuna's relative search space leaves it out of TPE's proposals, so
    # they were scored without it (and without sparsity, which applies only to pruning): no proposal
    # looked like a configuration already run, and a new user's 14-trial sweep of this 18-point space
    # answered 101 repeated suggestions and issued its last 5 trials by the repeat fallback
    data = {"fixed": FIXED, "references": REFS, "num_samples": 14, "search": "tpe_front",
            "space": {"pretrain": {"choice": ["standard", "adversarial"]},
                      "compression": {"choice": ["prune_structured"]},
                      "sparsity": {"choice": [0.25, 0.5, 0.75]},
                      "finetune": {"choice": ["none", "clean", "adversarial"]}}}
    s = searcher(data, tmp_path)
    issued = run(s, 14)
    assert len(issued) == 14 and len({str(sorted(t.items())) for t in issued}) == 14
    assert s.repeats == 0


def test_a_sweep_whose_trials_are_all_infeasible_so_far_goes_on(tmp_path):
    # no feasible trial means no front and no reference point: the sampler takes TPE's proposal
    # (a new user's sweep without references whose first trial was degenerate crashed the driver
    # here, and its resume with it: max() of an empty front)
    data = {"fixed": FIXED, "num_samples": 8, "search": "tpe_front", "constraints": {"clean_acc": ">= 0.999"},
            "space": DISCRETE["space"]}
    s = searcher(data, tmp_path)
    issued = run(s, 8)  # every fake result has clean_acc 0.9: infeasible
    assert len(issued) == 8 and len({str(sorted(t.items())) for t in issued}) == 8
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = {k: SPACE[k] for k in ("pretrain", "finetune", "compression", "weight_bits")}
    params = {"pretrain": "adversarial", "finetune": "adversarial", "compression": "quant", "weight_bits": 8}
    study.add_trial(optuna.trial.create_trial(params=params, distributions=dist, values=[0.6, 5.3],
                                              constraints={"trusted": 1.0}))
    study.add_trial(optuna.trial.create_trial(params={**params, "weight_bits": 2}, distributions=dist,
                                              state=optuna.trial.TrialState.RUNNING))
    view = _StudyView(study, DEPS, applicable, kappa=1.0)
    assert view.complete == [] and view.ref is None and view.score({**params, "pretrain": "standard"}) == 0.0
