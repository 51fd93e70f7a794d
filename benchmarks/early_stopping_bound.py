"""How far early stopping *could* cut the compute of the early-stopping benchmark's sweeps (issue 16).

Reads the per-trial CSVs that ``bench_early_stopping.py`` committed (``<space>_<search>_s<seed>_full.csv``
and ``..._es.csv``) and writes, per full sweep, how its compute (:mod:`rcsweep.compute`: each shared
pretraining once, plus every trial's fine-tuning, screening and final evaluation; FLOPs and stage
seconds) splits into the shared pretraining and the trials, and two ratios to it:

- ``es``: the sweep with early stopping, as measured (the benchmark's own ratio);
- ``oracle``: a lower bound for any early stopping that keeps the front: the same sweep if every
  trial that is not on its final front, nor a reference, had cost nothing at all (stopped before
  its first rung, screening free). Pretraining is shared and never a rung (issue 16, item 1), so
  no rule can go below ``pretraining share + front trials' share``.

No training: seconds.

    python benchmarks/early_stopping_bound.py --sweeps docs/results/early-stopping/sweeps --out docs/results/early-stopping/bound.md
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

OBJECTIVES = {"grid54": [("robust_acc", "max"), ("model_bits", "min")],
              "continuous": [("robust_acc", "max"), ("model_bits", "min"), ("flops_route", "min")]}


def load(csv: Path):
    """A committed per-trial CSV as :func:`rcsweep.results.load_results` reads a sweep folder."""
    from rcsweep.results import load_results

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(csv, Path(tmp) / "results.csv")
        return load_results(tmp)


def oracle(table, front: set, unit: str = "flops") -> float:
    """The ``oracle`` share (module docstring) of a sweep without early stopping (``table``), whose
    final front holds the trial ids ``front``: its pretraining, its references' and its front
    trials' compute, over its whole compute (``unit``: ``flops`` or ``seconds``)."""
    from rcsweep.compute import sweep_compute

    whole = sweep_compute(table)
    kept = sweep_compute(table[table["trial_id"].isin(front) | table["is_reference"].fillna(False).astype(bool)])
    return (whole[f"{unit}_pretrain"] + kept[unit] - kept[f"{unit}_pretrain"]) / whole[unit]


def bound(full, es, objectives) -> dict:
    """The split of ``full``'s compute and the ``es`` and ``oracle`` ratios (module docstring)."""
    from rcsweep.compute import sweep_compute
    from rcsweep.sweep.summary import front_and_usable

    whole = sweep_compute(full)
    front = set(front_and_usable(full, objectives)[0]["trial_id"])
    out = {"front": len(front), "trials": len(full)}
    for unit in ("flops", "seconds"):
        out[f"pretrain_share_{unit}"] = whole[f"{unit}_pretrain"] / whole[unit]
        out[f"oracle_{unit}"] = oracle(full, front, unit)
        out[f"es_{unit}"] = sweep_compute(es)[unit] / whole[unit]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=Path, default=ROOT / "docs" / "results" / "early-stopping" / "sweeps")
    ap.add_argument("--out", type=Path, default=None, help="a markdown table (default: print only)")
    args = ap.parse_args(argv)
    lines = ["| space | search | seed | front / trials | pretraining share (FLOPs, s) | oracle (FLOPs, s) | "
             "early stopping, measured (FLOPs, s) |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for full_csv in sorted(args.sweeps.glob("*_full.csv")):
        space, rest = full_csv.stem.split("_", 1)
        search, seed = rest.rsplit("_s", 1)[0], rest.rsplit("_s", 1)[1].split("_")[0]
        es_csv = full_csv.with_name(full_csv.name.replace("_full.csv", "_es.csv"))
        if space not in OBJECTIVES or not es_csv.is_file():
            continue
        b = bound(load(full_csv), load(es_csv), OBJECTIVES[space])
        lines.append(f"| {space} | {search} | {seed} | {b['front']} / {b['trials']} | "
                     f"{b['pretrain_share_flops']:.2f}, {b['pretrain_share_seconds']:.2f} | "
                     f"{b['oracle_flops']:.2f}, {b['oracle_seconds']:.2f} | {b['es_flops']:.2f}, {b['es_seconds']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
