"""Which training choice makes the study's net fragile to structured pruning? (issue 18)

rcsweep's FashionMNIST models lose far more clean accuracy than an independent reproduction's when
half their filters go without fine-tuning (standard model at 50%: 71.9% over 3 seeds against 83.6%).
``benchmarks/pruning_variants.py`` ruled out the pruning criterion. This script retrains the dense
standard model with one training choice changed at a time and prunes each (rcsweep's structured
pruning, no fine-tuning) at several sparsities:

- ``rcsweep``: the study part's recipe as committed (He initialisation, weight decay 5e-4, cosine lr);
- ``torch_init``: PyTorch's default initialisation (``reset_parameters``: Kaiming-uniform with
  a = sqrt(5), about 1/sqrt(3) of He's scale) instead of He;
- ``no_wd``: weight decay 0;
- ``constant_lr``: constant learning rate instead of cosine to 0;
- ``torch_init_no_wd``: both of the first two.

Each row: clean accuracy on the first 1,000 test images, dense and pruned (with
``--robust-examples N``, also robust accuracy under PGD-20 with a random start at the trial's eps on
the first N), and the share of the dense model's total conv-weight L1 norm that pruning removed
(the pruned filters and the input weights that read their outputs). The recipe is read from a pretrained model's ``model.json`` (the study part's), so only the
named choice differs.

    python benchmarks/pruning_fragility.py docs/results/fmnist/pretrained/7e4a022cc1d1c5a7 \
        --seeds 0 1 2 --out docs/results/fmnist/pruning_fragility.csv
    # the adversarially pretrained model (PGD-7 at eps 0.1): two variants, robust accuracy too
    python benchmarks/pruning_fragility.py docs/results/fmnist/pretrained/cba096ebc09d92e3 \
        --variants rcsweep torch_init --robust-examples 500 --out pruning_fragility_adversarial.csv
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPARSITIES = (0.3, 0.5, 0.7)
VARIANTS = {
    "rcsweep": {},
    "torch_init": {"init": "torch"},
    "no_wd": {"weight_decay": 0.0},
    "constant_lr": {"lr_schedule": "constant"},
    "torch_init_no_wd": {"init": "torch", "weight_decay": 0.0},
}


def conv_l1(model) -> list:
    """Per Conv2d layer, the L1 norm of each output filter (a 1-D tensor per layer)."""
    from torch import nn
    return [m.weight.detach().abs().sum(dim=(1, 2, 3)) for m in model.modules() if isinstance(m, nn.Conv2d)]


def pruned_l1_share(dense, pruned) -> float:
    """Share of the dense model's total conv-weight L1 norm that pruning removed (removed filters and
    the next layer's input weights that read them)."""
    before = sum(float(v.sum()) for v in conv_l1(dense))
    after = sum(float(v.sum()) for v in conv_l1(pruned))
    return 1.0 - after / before


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="a pretrained model folder (its model.json gives the recipe)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--robust-examples", type=int, default=0,
                    help="also robust accuracy under PGD-20 (random start) at the trial's eps on this many test images")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    import copy

    import pandas as pd
    import torch
    from torch import nn

    from rcsweep import TrialConfig
    from rcsweep.attacks import PGD, threat_model
    from rcsweep.batching import accuracy
    from rcsweep.compress import compress_
    from rcsweep.evaluate import robust_correct
    from rcsweep.models import build_model
    from rcsweep.pipeline import load_trial_data, seed_everything
    from rcsweep.train import FitHooks, TrainSpec, fit

    torch.set_num_threads(1)
    base = {k: v for k, v in json.loads((args.model / "model.json").read_text())["config"].items() if v is not None}
    rows = []
    for seed in args.seeds:
        for name in args.variants:
            change = dict(VARIANTS[name])
            init = change.pop("init", "he")
            cfg = TrialConfig.from_flat({**base, **change, "seed": seed})
            data = load_trial_data(cfg)
            seed_everything(seed)
            model = build_model(cfg.model, data.info, cfg.width)
            if init == "torch":
                for m in model.modules():
                    if isinstance(m, (nn.Conv2d, nn.Linear)):
                        m.reset_parameters()
            t0 = time.perf_counter()
            fit(model, data.train, data.val, TrainSpec.for_stage(cfg, "pretrain", data.info.num_classes), "cpu",
                FitHooks())
            seconds = time.perf_counter() - t0
            model.eval()
            x, y = data.test
            dense_acc = accuracy(model, x, y, "cpu")

            def robust(m):
                if not args.robust_examples:
                    return None
                torch.manual_seed(0)
                atk = PGD(threat_model(cfg.norm, cfg.eps_eval), steps=20)
                n = args.robust_examples
                return robust_correct(m, x[:n], y[:n], [atk], "cpu").float().mean().item()

            dense_robust = robust(model)
            for s in SPARSITIES:
                pruned = copy.deepcopy(model)
                compress_(pruned, TrialConfig.from_flat({**cfg.to_flat(), "compression": "prune_structured",
                                                         "sparsity": s}), calib=data.val)
                pruned.eval()
                rows.append({"variant": name, "seed": seed, "sparsity": s, "dense_clean_acc": dense_acc,
                             "pruned_clean_acc": accuracy(pruned, x, y, "cpu"),
                             "dense_robust_acc_pgd20": dense_robust, "pruned_robust_acc_pgd20": robust(pruned),
                             "pruned_l1_share": round(pruned_l1_share(model, pruned), 4),
                             "pretrain_seconds": round(seconds, 1)})
                print(rows[-1], flush=True)
                pd.DataFrame(rows).to_csv(args.out, index=False)
    df = pd.DataFrame(rows)
    print(df.groupby(["variant", "sparsity"])[["dense_clean_acc", "pruned_clean_acc", "pruned_l1_share"]]
          .agg(["mean", "std"]).round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
