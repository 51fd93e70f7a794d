"""The most informative CIFAR-10 cells of the study at full ResNet-18 width, for one GPU in at most
about 8 minutes (issue 7.3). Without Ray, so that it runs on a bare GPU machine with only torch,
torchvision, numpy, pandas, pyyaml and torch-pruning:

- dense standard and dense adversarial training (shared by the cells below: trained once each);
- standard and adversarial pretraining x {structured pruning 0.5, 4-bit PTQ} x {no, adversarial
  fine-tuning of 3 epochs}: 8 cells, the study's question (does adversarial fine-tuning of a
  compressed standard model recover the robustness of adversarial training, and at what cost).

eps 8/255 (L-inf, pixel units), PGD-7 with a random start in training, APGD-CE + APGD-DLR
evaluation with the gradient-masking checks. The folder it writes is a sweep folder
(``results.csv``, ``trials/<id>/``), so ``rcsweep report OUT`` and ``rcsweep verify OUT`` work on it.

On the GPU machine (the CIFAR-10 subset travels in an ignored folder; torch-pruning as a wheel)::

    mkdir -p .data && cp -r ../shared/datasets/cifar-10-batches-bin .data/ && echo /.data/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl torch-pruning
    # run: carry [".data", ".whl"], command:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:. \
      && PYTHONUNBUFFERED=1 python3 benchmarks/gpu_cifar10_cells.py --data-dir .data --out $OUT/cifar10_gpu

On a CPU, ``--smoke`` runs the same cells at a tiny size (a check of the script, not a result).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CELLS = [dict(compression="prune_structured", sparsity=0.5), dict(compression="quant", weight_bits=4)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="sweep-like folder to write (must not exist)")
    ap.add_argument("--data-dir", help="folder holding cifar-10-batches-bin")
    ap.add_argument("--device", default=None, help="default: cuda if available")
    ap.add_argument("--pretrain-epochs", type=int, default=15)
    ap.add_argument("--smoke", action="store_true", help="tiny CPU check of the script")
    args = ap.parse_args(argv)

    from rcsweep.config import TrialConfig, applicable
    from rcsweep.pipeline import resolve_device, run_trial
    from rcsweep.results import record_to_row, upsert_rows

    if args.out.exists():
        print(f"--out: {args.out} exists; choose a new folder", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    base = dict(dataset="cifar10", model="resnet18", width=1.0, batch_size=128, lr=0.1, eps_eval=8 / 255,
                pretrain_epochs=args.pretrain_epochs, finetune_epochs=3, attack_steps=7, eval_restarts=1,
                test_size=1000)
    if args.smoke:
        base.update(width=0.125, train_size=1000, test_size=64, pretrain_epochs=3, finetune_epochs=1, attack_steps=1,
                    eval_steps=2, batch_size=64)
    started = time.perf_counter()
    log = []

    def config(**kw) -> TrialConfig:  # drop what does not apply (fine-tuning epochs of a dense model, ...)
        d = {**base, **kw}
        return TrialConfig(**{k: v for k, v in d.items() if applicable(k, d)})

    def run(tid: str, cfg: TrialConfig, pretrained=None, reference=False):
        t = time.perf_counter()
        folder = args.out / "trials" / tid
        row = dict(trial_id=tid, params=cfg.to_flat(), is_reference=reference)
        try:
            record = run_trial(cfg, folder, data_dir=args.data_dir, device=device, pretrained_path=pretrained)
        except Exception as e:  # noqa: BLE001 - recorded, the other cells go on
            upsert_rows(args.out, [record_to_row(status="failed", error=f"{type(e).__name__}: {e}", **row)])
            print(f"{tid}: failed: {e}", flush=True)
            return None
        upsert_rows(args.out, [record_to_row(status="finished", record=record, **row)])
        m = record["metrics"]
        log.append({"trial": tid, "seconds": time.perf_counter() - t, **{k: m[k] for k in ("clean_acc", "robust_acc",
                                                                                          "model_bits")}})
        print(f"{tid}: clean {m['clean_acc']:.3f} robust {m['robust_acc']:.3f} bits {m['model_bits']:.3g} "
              f"({time.perf_counter() - t:.0f} s, {time.perf_counter() - started:.0f} s in all)", flush=True)
        return folder

    args.out.mkdir(parents=True)
    for pretrain in ("standard", "adversarial"):
        dense = run(f"dense_{pretrain}", config(pretrain=pretrain), reference=True)
        if dense is None:
            continue
        for cell in CELLS:
            for ft in ("none", "adversarial"):
                name = f"{pretrain[:3]}_{cell['compression']}_{ft}"
                run(name, config(pretrain=pretrain, finetune=ft, **cell), pretrained=dense)
    (args.out / "gpu_log.json").write_text(json.dumps({"device": str(device), "seconds": time.perf_counter() - started,
                                                       "trials": log}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
