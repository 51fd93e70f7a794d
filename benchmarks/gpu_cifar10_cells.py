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
``--train-size``, ``--test-size``, ``--finetune-epochs`` and ``--precision`` cut the cells to a
time budget (benchmarks/gpu_check.py runs them so). A cell whose method needs a package that is not
installed (Torch-Pruning for structured pruning; torchattacks for the Square check of a model that
quantizes its activations) is skipped with a line saying which, and the others run.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CELLS = [dict(compression="prune_structured", sparsity=0.5), dict(compression="quant", weight_bits=4)]


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # an import hook that refuses it (tests/test_gpu_check.py's stand-in for a bare machine)
        return False


def missing_package(cfg) -> str:
    """'' when ``cfg`` can run here, else which package it needs and why."""
    if cfg.compression.startswith("prune_structured") and not installed("torch_pruning"):
        return "torch_pruning (structured pruning removes channels with it)"
    if cfg.compression.endswith("quant") and cfg.act_bits < 32 and not installed("torchattacks"):
        return "torchattacks (the Square check of a model that quantizes its activations)"
    return ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="sweep-like folder to write (must not exist)")
    ap.add_argument("--data-dir", help="folder holding cifar-10-batches-bin")
    ap.add_argument("--device", default=None, help="default: cuda if available")
    ap.add_argument("--pretrain-epochs", type=int, help="default 15 (--smoke: 3)")
    ap.add_argument("--finetune-epochs", type=int, help="default 3 (--smoke: 1)")
    ap.add_argument("--train-size", type=int, help="default: the whole training pool (--smoke: 1000)")
    ap.add_argument("--test-size", type=int, help="default 1000 (--smoke: 64)")
    ap.add_argument("--width", type=float, help="ResNet-18's channel multiplier, default 1 (--smoke: 0.125)")
    ap.add_argument("--batch-size", type=int, help="default 128 (--smoke: 64)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="of training (evaluation: fp32)")
    ap.add_argument("--pretrain", choices=("standard", "adversarial", "both"), default="both",
                    help="the pretraining(s) whose cells run (default both)")
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
                pretrain_epochs=15, finetune_epochs=3, attack_steps=7, eval_restarts=1, test_size=1000,
                precision=args.precision)
    if args.smoke:
        base.update(width=0.125, train_size=1000, test_size=64, pretrain_epochs=3, finetune_epochs=1, attack_steps=1,
                    eval_steps=2, batch_size=64)
    base.update({k: v for k in ("pretrain_epochs", "finetune_epochs", "train_size", "test_size", "width", "batch_size")
                 if (v := getattr(args, k)) is not None})  # what the command line gives wins
    started = time.perf_counter()
    log = []

    def config(**kw) -> TrialConfig:  # drop what does not apply (fine-tuning epochs of a dense model, ...)
        d = {**base, **kw}
        return TrialConfig(**{k: v for k, v in d.items() if applicable(k, d)})

    def write_log():  # after every cell: a run cut short by a time limit keeps what it measured
        (args.out / "gpu_log.json").write_text(json.dumps({"device": str(device), "seconds": time.perf_counter() - started,
                                                           "trials": log}, indent=1))

    def run(tid: str, cfg: TrialConfig, pretrained=None, reference=False):
        t = time.perf_counter()
        try:
            return _run(tid, cfg, t, pretrained, reference)
        finally:
            write_log()

    def _run(tid: str, cfg: TrialConfig, t: float, pretrained, reference):
        folder = args.out / "trials" / tid
        row = dict(trial_id=tid, params=cfg.to_flat(), is_reference=reference)
        if missing_package(cfg):
            log.append({"trial": tid, "skipped": f"needs {missing_package(cfg)}, not installed"})
            print(f"{tid}: skipped: needs {missing_package(cfg)}, which is not installed", flush=True)
            return None
        try:
            record = run_trial(cfg, folder, data_dir=args.data_dir, device=device, pretrained_path=pretrained)
        except Exception as e:  # noqa: BLE001 - recorded, the other cells go on
            upsert_rows(args.out, [record_to_row(status="failed", error=f"{type(e).__name__}: {e}", **row)])
            log.append({"trial": tid, "failed": f"{type(e).__name__}: {e}"})
            print(f"{tid}: failed: {e}", flush=True)
            return None
        upsert_rows(args.out, [record_to_row(status="finished", record=record, **row)])
        m = record["metrics"]
        log.append({"trial": tid, "seconds": time.perf_counter() - t, **{k: m[k] for k in ("clean_acc", "robust_acc",
                                                                                          "model_bits")},
                    "peak_gpu_memory_bytes": record["runtime"]["peak_gpu_memory_bytes"]})
        print(f"{tid}: clean {m['clean_acc']:.3f} robust {m['robust_acc']:.3f} bits {m['model_bits']:.3g} "
              f"({time.perf_counter() - t:.0f} s, {time.perf_counter() - started:.0f} s in all)", flush=True)
        return folder

    args.out.mkdir(parents=True)
    for pretrain in ("standard", "adversarial") if args.pretrain == "both" else (args.pretrain,):
        dense = run(f"dense_{pretrain}", config(pretrain=pretrain), reference=True)
        if dense is None:
            continue
        for cell in CELLS:
            for ft in ("none", "adversarial"):
                name = f"{pretrain[:3]}_{cell['compression']}_{ft}"
                run(name, config(pretrain=pretrain, finetune=ft, **cell), pretrained=dense)
    write_log()
    return 0


if __name__ == "__main__":
    sys.exit(main())
