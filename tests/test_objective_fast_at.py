"""Fast AT (Wong et al. 2020): FGSM from a random start with step alpha * eps, 2 passes per example
against PGD-k's k + 1; catastrophic overfitting is detected, warned about and recorded."""
import pytest
import torch

from objective_helpers import tiny_batch, tiny_model
from rcsweep.attacks import threat_model
from rcsweep.config import TrialConfig
from rcsweep.objectives import PGDAT
from rcsweep.objectives.fast_at import FastAT, FastATParams


def test_flops_two_passes_against_pgd_k_plus_one():
    from rcsweep.pipeline import stage_flops

    for k in (1, 7, 10):
        assert FastAT().forward_backward_passes(k) == 2 and PGDAT().forward_backward_passes(k) == k + 1
    fast = stage_flops(TrialConfig(finetune="fast_at", attack_steps=10), 100, 100, 10)["flops_finetune"]
    pgd = stage_flops(TrialConfig(finetune="adversarial", attack_steps=10), 100, 100, 10)["flops_finetune"]
    assert pgd / fast == pytest.approx(11 / 2)


def test_attack_is_one_step_of_alpha_eps_from_a_random_start(monkeypatch):
    import rcsweep.attacks as attacks

    seen = {}
    real = attacks.PGD

    class Spy(real):
        def __init__(self, threat, **kw):
            super().__init__(threat, **kw)
            seen.update(kw, eps=threat.eps, random_start=self.random_start)

    monkeypatch.setattr(attacks, "PGD", Spy)
    model, (x, y) = tiny_model(), tiny_batch()
    FastAT(FastATParams(alpha=1.5)).loss(model, x, y, threat_model("linf", 0.2), 10)
    assert seen == {"steps": 1, "step_size": pytest.approx(0.3), "eps": 0.2, "random_start": True}


def test_catastrophic_overfitting_fires_when_pgd_collapses_and_fgsm_stays_high():
    obj = FastAT()
    assert not obj.overfitting(fgsm_acc=0.70, pgd_acc=0.60)
    assert not obj.overfitting(fgsm_acc=0.75, pgd_acc=0.55)  # normal drift
    with pytest.warns(RuntimeWarning, match="catastrophic overfitting"):
        assert obj.overfitting(fgsm_acc=0.90, pgd_acc=0.05)
    assert not FastAT().overfitting(fgsm_acc=0.10, pgd_acc=0.01)  # both low: a weak model, not overfitting


def test_flag_reaches_the_epoch_history(monkeypatch):
    """A stubbed epoch check where FGSM accuracy stays high and PGD accuracy falls: the history says so."""
    from rcsweep.objectives import Standard
    from rcsweep.train import TrainSpec, fit

    script = iter([(0.6, 0.5), (0.9, 0.02)])

    def checks(self, model, x, y, threat, device):
        fgsm, pgd = next(script)
        return {"val_fgsm_acc": fgsm, "val_pgd10_acc": pgd, "catastrophic_overfitting": self.overfitting(fgsm, pgd)}

    monkeypatch.setattr(FastAT, "epoch_checks", checks)
    monkeypatch.setattr(FastAT, "loss", lambda self, m, x, y, t, k: Standard().loss(m, x, y))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 1, 4, 4, generator=g)
    y = (x[:, 0, 0, 0] * 3).long()  # learnable in two epochs: above the collapse check's 1.5x chance
    spec = TrainSpec(FastAT(), epochs=2, lr=0.2, lr_schedule="constant", momentum=0.9, weight_decay=0,
                     batch_size=8, seed=0, eps=0.1, num_classes=3)
    with pytest.warns(RuntimeWarning, match="catastrophic overfitting"):
        hist = fit(tiny_model(), (x, y), (x, y), spec, "cpu")
    assert [vars(h)["catastrophic_overfitting"] for h in hist] == [False, True]
    assert hist[1].val_pgd10_acc == 0.02 and hist[0].forward_backward_passes == 2
