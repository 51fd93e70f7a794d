"""Make the example figures in docs/figures/ from small REAL digits sweeps.

Two sweep folders. Seed 0 (22 trials): standard and adversarial pretraining (dense, no
fine-tuning: the reference models), then 80% unstructured pruning and 4-bit weight
fake-quantisation, each with no, clean and adversarial fine-tuning, and 90% pruning + 4-bit
weights with no and adversarial fine-tuning. Seed 1 (9 trials): the two references and seven of
those routes, for the comparison figure. 600 training and 200 test images, 10 pretraining epochs,
PGD-3 for training, PGD-10 (+ DLR) for evaluation, 2 fine-tuning epochs.

Pretraining is shared: the other trials start from the saved dense model of their pretraining
(``run_trial(pretrained_path=...)``) and their row gets that model's pretraining time, so the
compute table shows the full cost of each route. A compression this rcsweep does not support is
skipped; a trial that fails is kept as a failed row. Cost: about 16 CPU-minutes on a shared
2-core machine. Then the analysis commands run on them exactly as a user would:

    rcsweep pareto  WORK/seed0 --by compression --out WORK/seed0/pareto.csv
    rcsweep compare WORK/seed0 WORK/seed1 --out docs/figures/compare.png
    rcsweep report  WORK/seed0 --out docs/figures
    rcsweep features WORK/seed0 --trials std-none-none adv-none-none std-prune80-none std-prune80-adv \\
                     --examples 128 --out docs/figures/features

Usage: ``python benchmarks/make_example_figures.py [--work /tmp/rcsweep_examples] [--fresh] [--smoke-test]``.
Trials already finished in ``--work`` are read back, not rerun (``--fresh`` starts over).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from rcsweep import TrialConfig, run_trial
from rcsweep.cli import main as rcsweep
from rcsweep.errors import UserError
from rcsweep.results import record_to_row, upsert_rows

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
BASE = dict(dataset="digits", batch_size=32, lr=0.05, train_size=600, test_size=200, eps_eval=0.1,
            eps_curve=(0.02, 0.05, 0.1, 0.15, 0.2, 0.3), attack_steps=3, eval_steps=10, eval_restarts=1,
            pretrain_epochs=10)
COMPRESSIONS = {"none": {}, "prune80": dict(compression="prune", sparsity=0.8),
                "quant4": dict(compression="quant", weight_bits=4, act_bits=8),
                "pq90": dict(compression="prune_quant", sparsity=0.9, weight_bits=4, act_bits=8)}
FINETUNES = {"none": {}, "clean": dict(finetune="clean", finetune_epochs=2),
             "adv": dict(finetune="adversarial", finetune_epochs=2)}
NO_CLEAN_FT = {"pq90"}  # to save CPU: the smallest models only without and with adversarial fine-tuning
FEATURE_TRIALS = ["std-none-none", "adv-none-none", "std-prune80-none", "std-prune80-adv"]
# seed 1 is a smaller second sweep for the comparison figure
SEED1_TRIALS = {"std-prune80-none", "std-prune80-adv", "std-quant4-adv", "adv-prune80-adv", "std-none-adv",
                "std-pq90-adv", "adv-pq90-adv"}


def trial_ids(only=None) -> list[tuple]:
    """(trial id, pretrain, compression name, fine-tuning name) in run order; references first."""
    out = []
    for pre, pname in (("standard", "std"), ("adversarial", "adv")):
        for cname in COMPRESSIONS:
            for fname in FINETUNES:
                tid = f"{pname}-{cname}-{fname}"
                ref = cname == "none" and fname == "none"
                if ref or ((only is None or tid in only) and not (cname in NO_CLEAN_FT and fname == "clean")):
                    out.append((tid, pre, cname, fname))
    return out


def run_one(folder: Path, base: dict, tid: str, pre: str, cname: str, fname: str):
    """The record of one trial: read back when ``folder/trials/<tid>/record.json`` exists (so an
    interrupted or extended run only runs what is new), else run. None if unsupported."""
    out = folder / "trials" / tid
    if (out / "record.json").is_file():
        return json.loads((out / "record.json").read_text())
    cfg = TrialConfig(**base, pretrain=pre, **COMPRESSIONS[cname], **FINETUNES[fname])
    ref = folder / "trials" / f"{tid.split('-')[0]}-none-none"
    t = time.perf_counter()
    try:
        rec = run_trial(cfg, out_dir=out, pretrained_path=None if out == ref else ref)
    except UserError as e:  # a compression this rcsweep does not support yet
        print(f"  {tid}: skipped ({e})", flush=True)
        return None
    except Exception as e:  # e.g. TrainingCollapsed: kept as a failed row, as a sweep would
        print(f"  {tid}: failed ({e})", flush=True)
        return {"failed": f"{type(e).__name__}: {e}", "params": cfg.to_flat()}
    print(f"  {tid}: robust {rec['metrics']['robust_acc']:.3f} ({time.perf_counter() - t:.0f} s)", flush=True)
    return rec


def run_sweep(folder: Path, seed: int, smoke: bool, only=None) -> None:
    """The trials of one seed (all, or the references and ``only``): folder/trials/<id>/ and a
    results.csv written afresh in run order."""
    base = dict(BASE, seed=seed, **(dict(pretrain_epochs=1, test_size=50, eps_curve=(0.1,)) if smoke else {}))
    rows, pre_time = [], {}
    for tid, pre, cname, fname in trial_ids(only):
        rec = run_one(folder, base, tid, pre, cname, fname)
        if rec is None:
            continue
        if "failed" in rec:
            rows.append(record_to_row(tid, "failed", params=rec["params"], error=rec["failed"]))
            continue
        if cname == "none" and fname == "none":
            pre_time[pre] = rec["metrics"]["time_pretrain_s"]
        else:
            rec["metrics"]["time_pretrain_s"] = pre_time[pre]  # the shared pretraining's cost
        rows.append(record_to_row(tid, "finished", rec, is_reference=cname == "none" and fname == "none"))
    (folder / "results.csv").unlink(missing_ok=True)
    upsert_rows(folder, rows)


def check(code: int) -> None:
    if code != 0:
        sys.exit(f"an rcsweep command failed with exit code {code}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/rcsweep_examples", help="scratch folder for the two sweeps")
    p.add_argument("--smoke-test", action="store_true", help="1 epoch, 50 test images; figures not committed")
    p.add_argument("--fresh", action="store_true", help="delete --work first (else finished trials are reused)")
    args = p.parse_args(argv)
    work = Path(args.work)
    out = work / "figures" if args.smoke_test else FIGURES
    t0 = time.perf_counter()
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    for seed in (0, 1):
        print(f"sweep seed{seed}", flush=True)
        run_sweep(work / f"seed{seed}", seed, args.smoke_test, None if seed == 0 else SEED1_TRIALS)
    out.mkdir(parents=True, exist_ok=True)
    s0, s1 = work / "seed0", work / "seed1"
    check(rcsweep(["pareto", str(s0), "--by", "compression", "--out", str(s0 / "pareto.csv")]))
    shutil.copy(s0 / "pareto.png", out / "pareto_by_compression.png")
    check(rcsweep(["compare", str(s0), str(s1), "--out", str(out / "compare.png")]))
    check(rcsweep(["report", str(s0), "--out", str(out)]))
    check(rcsweep(["features", str(s0), "--trials", *FEATURE_TRIALS, "--examples", "128", "--out",
                   str(out / "features")]))
    for junk in list(out.glob("*.svg")) + list(out.glob("*.json")):
        junk.unlink()  # the PNGs, report.md and its CSV tables are what the docs show
    print(f"done in {time.perf_counter() - t0:.0f} s; figures in {out}")


if __name__ == "__main__":
    main()
