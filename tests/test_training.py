"""Training: standard digits reaches >= 0.95; adversarial training is clearly more robust; collapse
and NaN stop training with a reason."""
import json

import pytest
import torch

from rcsweep.errors import TrainingCollapsed
from rcsweep.objectives import Standard
from rcsweep.train import FitHooks, TrainSpec, eps_at, fit, lr_at


def _metrics(folder):
    return json.loads((folder / "record.json").read_text())["metrics"]


def test_standard_digits_accuracy(digits_trials):
    assert _metrics(digits_trials["standard"])["clean_acc"] >= 0.95


def test_adversarial_pretraining_is_clearly_more_robust(digits_trials):
    std, adv = _metrics(digits_trials["standard"]), _metrics(digits_trials["adversarial"])
    assert adv["robust_acc"] >= std["robust_acc"] + 0.3
    assert adv["clean_acc"] >= 0.9
    hist = json.loads((digits_trials["adversarial"] / "record.json").read_text())["history"]["pretrain"]
    eps = [h["eps"] for h in hist]
    assert eps[0] < eps[-1] == pytest.approx(0.2)  # the epsilon ramp ran
    assert all(h["val_robust_acc"] is not None for h in hist)


def test_schedules():
    assert lr_at("cosine", 0.1, 0, 10) == pytest.approx(0.1)
    assert lr_at("cosine", 0.1, 5, 10) == pytest.approx(0.05)
    assert lr_at("step", 0.1, 8, 10) == pytest.approx(0.001)
    assert [round(eps_at(0.3, e, 2), 3) for e in range(4)] == [0.1, 0.2, 0.3, 0.3]


def _tiny_data(n=64):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_nan_loss_stops_training():
    from rcsweep.models import build_model

    model = build_model("digits_cnn", "digits")
    data = _tiny_data()
    with pytest.raises(TrainingCollapsed, match="loss became"):
        fit(model, data, data, TrainSpec(Standard(), epochs=3, lr=1e6, lr_schedule="constant", momentum=0.9,
                                         weight_decay=0, batch_size=16, seed=0), "cpu")


def test_accuracy_stuck_at_chance_stops_training():
    from rcsweep.models import build_model

    model = build_model("digits_cnn", "digits")
    x, y = _tiny_data()
    with torch.no_grad():
        wrong = (model(x).argmax(1) + 1) % 10  # labels the (barely moving) model never predicts
    seen = []
    with pytest.raises(TrainingCollapsed, match="chance"):
        fit(model, (x, y), (x, wrong), TrainSpec(Standard(), epochs=2, lr=1e-9, lr_schedule="constant", momentum=0.0,
                                                 weight_decay=0, batch_size=16, seed=0), "cpu",
            FitHooks(on_epoch=lambda s: seen.append(s.epoch)))
    assert seen == [0]  # the collapsed epoch never reaches on_epoch (which checkpoints in a sweep)


def test_training_is_seeded(tmp_path):
    from rcsweep import TrialConfig
    from rcsweep.pipeline import load_trial_data, pretrain

    cfg = TrialConfig(pretrain_epochs=1, train_size=200, batch_size=32, seed=3)
    data = load_trial_data(cfg)
    a, _ = pretrain(cfg, data, "cpu")
    b, _ = pretrain(cfg, data, "cpu")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.slow
@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_one_epoch_reaches_085():
    """The study's net, one epoch of standard training on the full training set."""
    from rcsweep import TrialConfig
    from rcsweep.pipeline import load_trial_data, pretrain
    from rcsweep.train import accuracy

    cfg = TrialConfig(dataset="fashion_mnist", pretrain_epochs=1, batch_size=32, lr=0.02, lr_schedule="constant")
    data = load_trial_data(cfg)
    model, _ = pretrain(cfg, data, "cpu")
    acc = accuracy(model, *data.test, "cpu")
    assert acc >= 0.85, acc


def test_pgd_objective_is_the_old_pgd_training_step():
    """PGD-AT as an objective is bit-for-bit the loop's former step: eval-mode PGD from the same RNG
    state, then cross-entropy on the adversarial batch in train mode."""
    import torch.nn.functional as F

    from rcsweep.attacks import PGD, threat_model
    from rcsweep.models import build_model
    from rcsweep.objectives import PGDAT

    model = build_model("digits_cnn", "digits")
    model.train()
    x, y = _tiny_data(16)
    torch.manual_seed(5)
    new, logits = PGDAT().loss(model, x, y, threat_model("linf", 0.1), 3)
    torch.manual_seed(5)
    old = F.cross_entropy(model(PGD(threat_model("linf", 0.1), steps=3)(model, x, y)), y)
    assert torch.equal(new, old) and PGDAT().forward_backward_passes(3) == 4
