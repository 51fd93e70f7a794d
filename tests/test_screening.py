"""The rung screening (issue 16): fixed and seeded (the same model screens the same twice), on val
only, its cost counted, and the trial's random state and model mode left as they were."""
import torch

from rcsweep import TrialConfig
from rcsweep.metrics import count_macs
from rcsweep.pipeline import load_trial_data, pretrain
from rcsweep.screening import screen, screening_metrics


def _model():
    cfg = TrialConfig(dataset="digits", pretrain_epochs=4, train_size=400, val_size=200, test_size=50, batch_size=16, lr=0.1)
    data = load_trial_data(cfg)
    model, _ = pretrain(cfg, data, "cpu")
    return model, data


def test_screening_is_fixed_counts_its_cost_and_leaves_the_trial_alone():
    model, data = _model()
    macs = count_macs(model, data.info.shape)
    model.train()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = screen(model, data.val, norm="linf", eps=0.2, macs=macs, rung=1, size=100, steps=5, seed=0)
    assert torch.equal(torch.rand(3), expected_next)  # the trial's random stream is untouched
    assert model.training  # its mode restored
    b = screen(model, data.val, norm="linf", eps=0.2, macs=macs, rung=1, size=100, steps=5, seed=0)
    assert a["n"] == 100 and (a["clean_acc"], a["robust_acc"]) == (b["clean_acc"], b["robust_acc"])
    assert 0.5 < a["clean_acc"] and a["robust_acc"] < a["clean_acc"]  # the attack fools some images
    # cost: at least one forward per image for the clean pass and 3 per attacked image per step at most
    assert 2 * macs * 100 <= a["flops"] <= 2 * macs * (100 + 100 * 3 * 6)
    clean_only = screen(model, data.val, norm="linf", eps=0.0, macs=macs, rung=0, size=100)
    assert clean_only["robust_acc"] == clean_only["clean_acc"] == a["clean_acc"]
    assert clean_only["flops"] == 2 * macs * 100  # one no-grad forward per image
    big = screen(model, data.val, norm="linf", eps=0.2, macs=macs, rung=1, size=10_000, steps=5)
    assert big["n"] == len(data.val[1]) == 200  # at most the val split


def test_screening_metrics_keep_every_rung_and_sum_the_cost():
    h = [{"rung": 0, "clean_acc": 0.5, "robust_acc": 0.1, "n": 64, "flops": 10.0, "seconds": 1.0},
         {"rung": 2, "clean_acc": 0.8, "robust_acc": 0.3, "n": 64, "flops": 5.0, "seconds": 0.5}]
    m = screening_metrics(h)
    assert (m["screen_rung"], m["screen_clean_acc"], m["screen_robust_acc"]) == (2, 0.8, 0.3)
    assert m["flops_screen"] == 15.0 and m["time_screen_s"] == 1.5 and m["screen_history"] == h
    assert screening_metrics([]) == {}


def test_a_trial_measured_at_its_rungs_trains_and_evaluates_exactly_as_one_that_is_not(tmp_path):
    """Early stopping's rung measurement (screening, sizes: it builds a dense model to count channels)
    leaves torch's random stream alone, so early stopping never changes a trial it does not stop: the
    same fine-tuned weights, the same final robust accuracy (measured: with it leaking, 20 of 25 trials
    of a benchmark sweep ended with another robust accuracy than the same configurations without)."""
    import copy

    from rcsweep.early_stopping import EarlyStopping
    from rcsweep.pipeline import Progress, continue_trial
    from rcsweep.sweep.rung_report import at_rung

    cfg = TrialConfig(dataset="digits", pretrain_epochs=4, train_size=400, val_size=100, test_size=60, batch_size=16, lr=0.1,
                      compression="prune_structured", sparsity=0.5, finetune="adversarial", finetune_epochs=2,
                      eps_eval=0.2, attack_steps=3, eval_steps=5, eval_restarts=1)
    data = load_trial_data(cfg)
    dense, _ = pretrain(cfg, data, "cpu")
    es = EarlyStopping(rungs=(0, 1, 2), screen_size=50, screen_steps=3).to_dict()
    objectives = [("robust_acc", "max"), ("model_bits", "min")]

    def run(measured: bool):
        progress = Progress()
        hook = (lambda p, m: at_rung(m, cfg, data, p, tmp_path, es, objectives, "cpu")) if measured else None
        model, _, record = continue_trial(copy.deepcopy(dense), cfg, data, "cpu", progress, on_stage=hook)
        return model, record["metrics"], progress

    plain, measured = run(False), run(True)
    assert [h["rung"] for h in measured[2].history["screening"]] == [0, 1, 2]  # it was measured at every rung
    for a, b in zip(plain[0].state_dict().values(), measured[0].state_dict().values()):
        assert torch.equal(a, b)
    for k in ("clean_acc", "robust_acc"):
        assert plain[1][k] == measured[1][k]
