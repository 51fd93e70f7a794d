"""Do two runs of the same sweep give the same trials? (issue 14: a refactor leaves existing sweep
files' results unchanged.)

Reads the ``results.csv`` of run A and run B (a file, a sweep folder, or a storage folder holding
one sweep folder) and matches their rows on the trial parameters (the columns of
``rcsweep.config.FIELD_NAMES`` both files have: dataset, seed, methods, their parameters...), not on
trial ids. For each matched pair every other column both files have must be equal (numbers
exactly; NaN equals NaN): accuracies, flags, sizes (``params``, ``model_bits``...), MACs, BOPs and
FLOPs. Not compared: trial ids, times, latencies, paths, timestamps and error text (they change
from run to run), and columns only one file has (new columns are allowed; they are listed).

Prints the columns compared, the rows matched and every difference; exits 1 on a difference or on
a row of one run whose parameters the other run has not (the runs chose different trials).

    python benchmarks/compare_runs.py /tmp/q_before /tmp/q_after
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rcsweep.config import FIELD_NAMES  # noqa: E402  (the trial parameters: one vocabulary)

IGNORED = re.compile(r"(^trial_id$|^error$|^time_|latency|seconds|path|timestamp|date|host|pid$|_id$)")
RESULTS_FILE = "results.csv"


def results_path(arg: str) -> Path:
    """``arg`` as a results.csv: the file itself, DIR/results.csv, or DIR/*/results.csv when unique."""
    p = Path(arg)
    if p.is_file():
        return p
    if (p / RESULTS_FILE).is_file():
        return p / RESULTS_FILE
    found = sorted(p.glob(f"*/{RESULTS_FILE}"))
    if len(found) != 1:
        raise SystemExit(f"compare_runs: no single {RESULTS_FILE} in {p} (found {len(found)})")
    return found[0]


def same(a, b) -> bool:
    """Equal values, NaN equal to NaN (numbers as floats: 8 and 8.0 are the same)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return float(a) == float(b) or (math.isnan(float(a)) and math.isnan(float(b)))
    except (TypeError, ValueError):
        return a == b


def key_of(row, params) -> tuple:
    return tuple("" if pd.isna(row[c]) else str(row[c]) for c in params)


def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """The comparison of two results tables: the columns used, rows matched and unmatched, and each
    difference as (parameters, column, value in A, value in B)."""
    common = [c for c in a.columns if c in b.columns]
    params = [c for c in common if c in FIELD_NAMES]
    ignored = [c for c in common if c not in params and IGNORED.search(c)]
    compared = [c for c in common if c not in params and c not in ignored]
    rows_b: dict = {}
    for _, r in b.iterrows():
        rows_b.setdefault(key_of(r, params), []).append(r)
    matched, only_a, diffs = [], [], []
    for _, ra in a.iterrows():
        k = key_of(ra, params)
        if not rows_b.get(k):
            only_a.append(k)
            continue
        rb = rows_b[k].pop(0)
        matched.append(k)
        diffs += [(k, c, ra[c], rb[c]) for c in compared if not same(ra[c], rb[c])]
    only_b = [k for k, rest in rows_b.items() for _ in rest]
    return {"params": params, "compared": compared, "ignored": ignored,
            "only_in_a": [c for c in a.columns if c not in b.columns],
            "only_in_b": [c for c in b.columns if c not in a.columns],
            "matched": matched, "rows_only_a": only_a, "rows_only_b": only_b, "diffs": diffs}


def describe(k: tuple, params, a: pd.DataFrame) -> str:
    """A row's parameters that vary in the table (the others are the same for every row)."""
    varying = [c for c in params if a[c].astype(str).nunique() > 1]
    return ", ".join(f"{c}={v}" for c, v in zip(params, k) if c in varying and v != "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="run A: results.csv, its sweep folder or the storage folder")
    ap.add_argument("b", help="run B: the same")
    args = ap.parse_args(argv)
    pa, pb = results_path(args.a), results_path(args.b)
    a, b = pd.read_csv(pa), pd.read_csv(pb)
    r = compare(a, b)
    print(f"A: {pa} ({len(a)} rows)\nB: {pb} ({len(b)} rows)")
    print(f"parameters matched on ({len(r['params'])}): {', '.join(r['params'])}")
    print(f"columns compared ({len(r['compared'])}): {', '.join(r['compared'])}")
    print(f"columns ignored ({len(r['ignored'])}): {', '.join(r['ignored'])}")
    for side in ("a", "b"):
        if r[f"only_in_{side}"]:
            print(f"columns only in {side.upper()} (not compared): {', '.join(r[f'only_in_{side}'])}")
    print(f"rows matched: {len(r['matched'])} of {len(a)} (A) and {len(b)} (B)")
    for k in r["matched"]:
        print(f"  {describe(k, r['params'], a)}")
    for side in ("a", "b"):
        for k in r[f"rows_only_{side}"]:
            print(f"row only in {side.upper()}: {describe(k, r['params'], a)}")
    for k, c, va, vb in r["diffs"]:
        print(f"DIFFERENT {c}: A {va!r} B {vb!r}  ({describe(k, r['params'], a)})")
    bad = len(r["diffs"]) + len(r["rows_only_a"]) + len(r["rows_only_b"])
    print(f"differences: {len(r['diffs'])} values in {len({c for _, c, _, _ in r['diffs']})} columns; "
          f"unmatched rows: {len(r['rows_only_a'])} (A), {len(r['rows_only_b'])} (B)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
