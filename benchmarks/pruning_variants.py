"""Why does rcsweep's structured pruning cost more accuracy than an independent reproduction's?
The same pretrained models pruned (no fine-tuning) three ways at each sparsity:

- ``rcsweep``: every Conv2d and the hidden Linear lose ``round(s x c)`` output channels, ranked by
  Torch-Pruning's group L1 importance (the filter's weights and the next layer's input weights);
- ``conv_only``: the same, but only Conv2d layers are pruned (the hidden Linear stays whole);
- ``filter_l1``: only Conv2d layers, ranked by the L1 norm of each filter alone (Li et al. 2017,
  the study's criterion), through ``torch.nn.utils.prune.ln_structured`` (channels zeroed, not
  removed: the same function).

Clean accuracy on the trial's test images, and robust accuracy under PGD-20 (random start) at the
trial's eps on the first ``--examples`` of them.

    python benchmarks/pruning_variants.py runs/fmnist_study_s0_*/pretrained/* --out pruning_variants.csv
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPARSITIES = (0.1, 0.3, 0.5, 0.7)


def conv_only_prune(model, sparsity, example, filter_l1: bool):
    import torch_pruning as tp
    from torch import nn
    from torch.nn.utils import prune

    from rcsweep.compress.structured import removed_count

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if filter_l1:
        for m in convs:
            n = removed_count(sparsity, m.out_channels)
            if n:
                prune.ln_structured(m, "weight", amount=n, n=1, dim=0)
                prune.remove(m, "weight")
        return model
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    imp = tp.importance.MagnitudeImportance(p=1)
    plans = []
    for group in graph.get_all_groups(root_module_types=[nn.Conv2d]):
        root, fn = group[0].dep.target.module, group[0].dep.handler
        n = removed_count(sparsity, graph.get_out_channels(root))
        if n:
            plans.append((root, fn, imp(group).argsort()[:n].tolist()))
    for root, fn, idxs in plans:
        graph.get_pruning_group(root, fn, idxs).prune()
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--examples", type=int, default=500)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    import pandas as pd
    import torch

    from rcsweep import TrialConfig, load_model
    from rcsweep.attacks import PGD, threat_model
    from rcsweep.batching import accuracy
    from rcsweep.compress import compress_
    from rcsweep.evaluate import robust_correct
    from rcsweep.pipeline import load_trial_data

    torch.set_num_threads(1)
    rows = []
    for folder in [m for m in args.models if (m / "model.json").is_file()]:  # skips the store's .lock files
        base = {k: v for k, v in json.loads((folder / "model.json").read_text())["config"].items() if v is not None}
        data = load_trial_data(TrialConfig.from_flat(base))
        x, y = data.test
        example = x[:1]
        for s in SPARSITIES:
            for how in ("rcsweep", "conv_only", "filter_l1"):
                model = load_model(folder)
                if how == "rcsweep":
                    compress_(model, TrialConfig.from_flat({**base, "compression": "prune_structured", "sparsity": s}),
                              calib=data.val)
                else:
                    conv_only_prune(model, s, example, how == "filter_l1")
                model.eval()
                torch.manual_seed(0)
                atk = PGD(threat_model(base.get("norm", "linf"), base["eps_eval"]), steps=20)
                robust = robust_correct(model, x[:args.examples], y[:args.examples], [atk], "cpu")
                rows.append({"model": folder.name, "pretrain": base["pretrain"], "seed": base["seed"], "sparsity": s,
                             "pruning": how, "params": sum(p.numel() for p in model.parameters()),
                             "clean_acc": accuracy(model, x, y, "cpu"), "robust_acc_pgd20": robust.float().mean().item()})
                print(rows[-1], flush=True)
                pd.DataFrame(rows).to_csv(args.out, index=False)
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
