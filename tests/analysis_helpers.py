"""Synthetic sweep folders for the analysis tests: real results.csv rows written with
rcsweep.results.upsert_rows from records shaped like pipeline.make_record's."""
from __future__ import annotations

from rcsweep.config import TrialConfig
from rcsweep.results import record_to_row, upsert_rows

DENSE_BITS = 800000  # 25,000 float32 weights; divisible by the ratios used below


def record(pretrain="standard", compression="none", finetune="none", seed=0, clean=0.9, robust=0.3, bits=DENSE_BITS,
           suspect=False, reason="", curve=None, test_size=None, **params):
    cfg = TrialConfig(pretrain=pretrain, compression=compression, finetune=finetune, seed=seed, test_size=test_size,
                      **params)
    adv_pre, adv_ft = pretrain == "adversarial", finetune == "adversarial"
    metrics = {"clean_acc": clean, "robust_acc": robust, "robust_acc_curve": curve or {}, "suspect": suspect,
               "suspect_reason": reason, "params": bits // 32, "params_nonzero": bits // 32,
               "sparsity_measured": 1 - bits / DENSE_BITS, "model_bits": bits, "dense_model_bits": DENSE_BITS,
               "macs": 128640, "time_pretrain_s": 10.0 * (11 if adv_pre else 1), "time_compress_s": 0.1,
               "time_finetune_s": (3.0 * (11 if adv_ft else 1)) if finetune != "none" else 0.0,
               "time_evaluate_s": 1.0, "flops_pretrain": 1e9 * (11 if adv_pre else 1),
               "flops_finetune": (3e8 * (11 if adv_ft else 1)) if finetune != "none" else 0.0}
    # energy as the estimate: 1e-5 kWh per second of each stage
    metrics.update({f"energy_kwh_{s}": 1e-5 * metrics[f"time_{s}_s"] for s in ("pretrain", "compress", "finetune",
                                                                                 "evaluate")})
    metrics.update(energy_source="estimate: cpu_seconds x 12 W",
                   co2_g=445 * sum(metrics[f"energy_kwh_{s}"] for s in ("pretrain", "compress", "finetune", "evaluate")))
    return {"params": cfg.to_flat(), "metrics": metrics}


def write_sweep(folder, rows):
    """rows: (trial_id, status, record-kwargs) triples; failed/running rows carry only parameters."""
    out = []
    for tid, status, kw in rows:
        rec = record(**kw)
        if status == "finished":
            out.append(record_to_row(tid, status, rec))
        else:
            out.append(record_to_row(tid, status, params=rec["params"], error="boom" if status == "failed" else ""))
    upsert_rows(folder, out)
    return folder


# A small sweep: 2 references, compressed models with and without fine-tuning, one dominated,
# one suspect that would be on the front, one failed and one still running.
STANDARD_ROWS = [
    ("t00", "finished", dict(clean=0.97, robust=0.05, curve={"0.05": 0.4, "0.2": 0.0})),
    ("t01", "finished", dict(pretrain="adversarial", clean=0.93, robust=0.60, curve={"0.05": 0.8, "0.2": 0.2})),
    ("t02", "finished", dict(compression="prune", sparsity=0.9, bits=DENSE_BITS // 10, clean=0.95, robust=0.02)),
    ("t03", "finished", dict(compression="prune", sparsity=0.9, finetune="adversarial", bits=DENSE_BITS // 10,
                             clean=0.90, robust=0.50)),
    ("t04", "finished", dict(compression="prune", sparsity=0.5, finetune="clean", bits=DENSE_BITS // 2, clean=0.96,
                             robust=0.04)),  # dominated by t03
    ("t05", "finished", dict(compression="prune", sparsity=0.95, finetune="adversarial", bits=DENSE_BITS // 20,
                             clean=0.85, robust=0.40)),
    ("t06", "finished", dict(compression="prune", sparsity=0.99, finetune="adversarial", bits=DENSE_BITS // 100,
                             clean=0.80, robust=0.99, suspect=True, reason="large_eps: robust accuracy 0.9")),
    ("t07", "failed", dict(compression="prune", sparsity=0.8)),
    ("t08", "running", dict(compression="prune", sparsity=0.7)),
]
