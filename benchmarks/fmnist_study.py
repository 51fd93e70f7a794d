"""The FashionMNIST study at 10,000 training images, run in parts (sweeps/fmnist_study.yaml, one
part per seed and pretraining mode), merged and set side by side with the published study and an
independent reproduction.

    python benchmarks/fmnist_study.py merge runs/fmnist_study_s0_standard ... --out docs/results/fmnist
    python benchmarks/fmnist_study.py compare docs/results/fmnist > docs/results/fmnist/side_by_side.md

``merge`` appends each part's ``results.csv`` and ``verify.csv`` rows to the committed folder (a
part merged again replaces its rows), copies its pretrained models (``pretrained/<key>/``, about
2 MB each, so that later work can compress the same models without training them again) and
keeps ``parts.csv``: which part ran when, with how many trials. ``compare`` prints the
side-by-side table of the study's issue: per cell, the published number (read off the study's
Figure 1, at its own threat model), the independent reproduction's (structured pruning 0.5 cells),
and rcsweep's mean, seed spread and 95% Wilson interval over the usable trials (flagged ones left
out and counted).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.common import load_sweep, n_test, split_usable  # noqa: E402
from analysis.tables import wilson_interval  # noqa: E402
from rcsweep.results import upsert_rows  # noqa: E402

# The study's Figure 1, FashionMNIST, read off the figure (its threat model: eps 0.1 in normalised
# units = 0.035 in pixel units, PGD without a random start). Structured pruning at 0.1 and 0.9
# only; quantization: 16 and 8 bits keep the dense accuracy, 4 bits collapse to ~0.15 clean.
PUBLISHED = {
    ("standard", "prune_structured 10%", "none"): (0.853, 0.787),
    ("standard", "prune_structured 90%", "none"): (0.807, 0.726),
    ("adversarial", "prune_structured 10%", "none"): (0.873, 0.816),
    ("adversarial", "prune_structured 90%", "none"): (0.815, 0.746),
    ("standard", "quant 4 bits", "none"): (0.15, None),
    ("adversarial", "quant 4 bits", "none"): (0.15, None),
}
# The independent reproduction (10,000 training images, 8 epochs, PGD-7 training, pixel eps 0.1,
# PGD-40 x 2 restarts on 1,000 test images), structured pruning 0.5 and 3 fine-tuning epochs.
REPRODUCTION = {
    ("standard", "none", "none"): (0.844, 0.004),
    ("adversarial", "none", "none"): (0.746, 0.560),
    ("standard", "prune_structured 50%", "none"): (0.836, 0.011),
    ("standard", "prune_structured 50%", "clean"): (0.846, 0.008),
    ("standard", "prune_structured 50%", "adversarial"): (0.762, 0.531),
    ("adversarial", "prune_structured 50%", "none"): (0.741, 0.581),
    ("adversarial", "prune_structured 50%", "adversarial"): (0.746, 0.582),
    ("adversarial", "prune_structured 50%", "clean"): (0.800, 0.220),
}


def level(row) -> str:
    c = row["compression"]
    if c == "prune_structured":
        return f"prune_structured {float(row['sparsity']):.0%}"
    if c == "quant":
        a = int(row["act_bits"])
        scheme = " minmax" if row.get("quant_scheme") == "minmax_tensor" else ""
        return f"quant {int(row['weight_bits'])} bits" + (f" a{a}" if a != 8 else "") + scheme
    return c


def merge(parts: list[str], out: str) -> None:
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    log = []
    for part in map(Path, parts):
        df = load_sweep(part)
        upsert_rows(dest, df.to_dict("records"))
        for name in ("verify.csv",):
            if (part / name).is_file():
                new = pd.read_csv(part / name, dtype={"trial_id": str})
                old = pd.read_csv(dest / name, dtype={"trial_id": str}) if (dest / name).is_file() else new.iloc[:0]
                pd.concat([old[~old["trial_id"].isin(new["trial_id"])], new]).to_csv(dest / name, index=False)
        for model in (part / "pretrained").glob("*/model.pt"):
            target = dest / "pretrained" / model.parent.name
            target.mkdir(parents=True, exist_ok=True)
            for f in ("model.pt", "model.json", "pretrain.json"):
                if (model.parent / f).is_file():
                    shutil.copy2(model.parent / f, target / f)
        status = df["status"].value_counts().to_dict()
        log.append({"part": part.name, "trials": len(df), **{f"n_{k}": v for k, v in status.items()}})
    path = dest / "parts.csv"
    old = pd.read_csv(path) if path.is_file() else pd.DataFrame({"part": []})
    new = pd.DataFrame(log)
    pd.concat([old[~old["part"].isin(new["part"])], new]).to_csv(path, index=False)
    print(f"merged {len(parts)} parts into {dest}")


def _fmt(p) -> str:
    return "–" if p is None else f"{100 * p:.1f}"


def compare(folder: str) -> str:
    df = load_sweep(folder)
    usable, excluded = split_usable(df, ["clean_acc", "robust_acc"], use="cell")
    sizes = n_test(folder, usable)
    usable = usable.assign(_level=[level(r) for _, r in usable.iterrows()], _n=sizes)
    lines = ["| pretraining | compression | fine-tuning | published clean / robust | reproduction clean / robust "
             "| rcsweep clean | rcsweep robust | seeds |", "| --- | --- | --- | --- | --- | --- | --- | ---: |"]
    keys = sorted(set(usable.groupby(["pretrain", "_level", "finetune"]).groups) | set(PUBLISHED) | set(REPRODUCTION))
    for key in keys:
        g = usable[(usable["pretrain"] == key[0]) & (usable["_level"] == key[1]) & (usable["finetune"] == key[2])]
        pub, rep = PUBLISHED.get(key), REPRODUCTION.get(key)
        cells = []
        for metric in ("clean_acc", "robust_acc"):
            if g.empty:
                cells.append("–")
                continue
            m, n = g[metric].mean(), g["_n"].mean()
            lo, hi = wilson_interval(m, n)
            sd = f" ± {100 * g[metric].std():.1f}" if len(g) > 1 else ""
            cells.append(f"{100 * m:.1f}{sd} [{100 * lo:.1f}, {100 * hi:.1f}]")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {_fmt(pub[0]) + ' / ' + _fmt(pub[1]) if pub else '–'} | "
                     f"{_fmt(rep[0]) + ' / ' + _fmt(rep[1]) if rep else '–'} | {cells[0]} | {cells[1]} | {len(g)} |")
    left = excluded[excluded["status"] == "finished"]
    lines.append("")
    lines.append(f"Accuracies in %; rcsweep: mean ± seed standard deviation [95% Wilson interval at the mean for the "
                 f"test images]. Left out as flagged: {len(left)} trials ("
                 + (", ".join(f"{n} {k}" for k, n in left['reason'].str.split(':').str[0].value_counts().items())
                    or "none") + ").")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge")
    m.add_argument("parts", nargs="+")
    m.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("dir")
    args = p.parse_args(argv)
    if args.cmd == "merge":
        merge(args.parts, args.out)
    else:
        print(compare(args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
