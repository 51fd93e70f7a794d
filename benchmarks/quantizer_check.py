"""Is the study's 4-bit collapse its quantizer's? The same pretrained models quantized (PTQ, no
fine-tuning) by rcsweep's quantizer (``quant_scheme: mse_channel``: weights per output channel with
MSE-optimal clipping, activations at the MSE-optimal range) and by the study's kind
(``minmax_tensor``: one weight scale per tensor from max|w|, activations at their observed min and
max), at 16, 8, 4 and 2 weight bits with 8-bit activations, and at w4a4.

    python benchmarks/quantizer_check.py docs/results/fmnist/pretrained/* --out docs/results/fmnist/quantizer_check.csv

Each argument is a pretrained model folder (``model.pt`` + ``model.json``, as a sweep's
``pretrained/<key>/`` holds); its configuration (dataset, seed, sizes, evaluation settings) is
read from ``model.json``, so the trials see the same data and test images as the sweep's. One row
per (model, scheme, bits): clean and robust accuracy (rcsweep's evaluation at ``eps_eval``),
suspect/degenerate flags and seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = [(16, 8), (8, 8), (4, 8), (2, 8), (4, 4)]
SCHEMES = ("mse_channel", "minmax_tensor")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    import pandas as pd
    import torch

    from rcsweep import TrialConfig, run_trial

    torch.set_num_threads(1)
    rows = []
    for folder in [m for m in args.models if (m / "model.json").is_file()]:  # skips the store's .lock files
        meta = json.loads((folder / "model.json").read_text())
        base = {k: v for k, v in meta["config"].items() if v is not None}
        for bits, act in SETTINGS:
            for scheme in SCHEMES:
                cfg = TrialConfig.from_flat({**base, "compression": "quant", "weight_bits": bits, "act_bits": act,
                                             "quant_scheme": scheme, "finetune": "none"})
                t = time.perf_counter()
                rec = run_trial(cfg, pretrained_path=folder, device="cpu")
                m = rec["metrics"]
                rows.append({"model": folder.name, "seed": cfg.seed, "pretrain": cfg.pretrain, "weight_bits": bits,
                             "act_bits": act, "scheme": scheme, "clean_acc": m["clean_acc"],
                             "robust_acc": m["robust_acc"], "flags": m["flags"], "seconds": time.perf_counter() - t})
                print(rows[-1], flush=True)
                pd.DataFrame(rows).to_csv(args.out, index=False)
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
