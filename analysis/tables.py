"""The study's tables, computed (``analysis.report`` writes them): accuracy per pretraining x
compression level x fine-tuning with mean, spread over seeds and a 95% confidence interval;
robustness curves; time, energy and training FLOPs per stage.

Confidence interval: Wilson's score interval for a proportion, at the (seed-mean) accuracy with
``n = n_test`` test images. It is the test-set sampling uncertainty of one evaluation (1,000
images give about +-3 points at 50%); seeds are evaluated on the same test images, so pooling
them would overstate the precision, and their spread is reported separately (standard deviation).
"""
from __future__ import annotations

import math

import pandas as pd

from rcsweep.config import COMPRESSION, FIELD_NAMES, FINETUNE, PRETRAIN
from rcsweep.energy import STAGES, metric_name

from .common import compression_level, route

Z95 = 1.959963984540054
METHOD_FIELDS = ("seed", "pretrain", "compression", "sparsity", "prune_scope", "weight_bits", "act_bits", "quant_mode",
                 "quant_scheme", "finetune", "finetune_epochs", "finetune_lr", "eps_finetune", "eps_curve", "eps_pretrain",
                 "eps_ramp_epochs")
FINETUNE_FIELDS = ("finetune_epochs", "finetune_lr", "eps_finetune")
STAGE_TIMES = tuple(f"time_{s}_s" for s in STAGES)
STAGE_ENERGY = tuple(metric_name(s) for s in STAGES)


def wilson_interval(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` trials (NaN if unknown)."""
    if not n or n != n or p != p:
        return math.nan, math.nan
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _varying(df: pd.DataFrame, fields) -> list[str]:
    out = []
    for f in fields:
        if f in df and df[f].map(lambda v: repr(v) if isinstance(v, (list, tuple)) else v).dropna().nunique() > 1:
            out.append(f)
    return out


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def label_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``compression_level``, ``route``, ``row`` (pretraining x compression level, plus any other
    parameter that varies between the rows) and ``column`` (fine-tuning, plus its parameters that
    vary) to a copy of ``df``."""
    df = df.copy()
    df["compression_level"] = [compression_level(r) for _, r in df.iterrows()]
    df["route"] = [route(r) for _, r in df.iterrows()]
    other = _varying(df, [f for f in FIELD_NAMES if f not in METHOD_FIELDS])
    df["row"] = [" | ".join([f"{r['pretrain']} pretrain", r["compression_level"]] +
                            [f"{f}={_fmt(r[f])}" for f in other]) for _, r in df.iterrows()]
    vary = {ft: _varying(sub, FINETUNE_FIELDS) for ft, sub in df.groupby("finetune")}
    df["column"] = [r["finetune"] + (f" ({', '.join(f'{f}={_fmt(r[f])}' for f in vary[r['finetune']])})"
                                     if vary.get(r["finetune"]) else "") for _, r in df.iterrows()]
    df["_order"] = _order_key(df)
    return df


def _order_key(df: pd.DataFrame) -> pd.Series:
    """Study order: standard before adversarial, none before the compressions in config order."""
    rank = lambda seq, v: seq.index(v) if v in seq else len(seq)  # noqa: E731
    return pd.Series([(rank(PRETRAIN, r["pretrain"]), rank(COMPRESSION, r["compression"]),
                       _num(r.get("sparsity"), 0.0), -_num(r.get("weight_bits"), 99.0), rank(FINETUNE, r["finetune"]),
                       r["row"], r["column"]) for _, r in df.iterrows()], index=df.index)


def _num(v, default: float) -> float:
    return default if v is None or v != v else float(v)


def accuracy_long(df: pd.DataFrame, n_test: pd.Series) -> pd.DataFrame:
    """One row per (row, column, metric): mean, std over seeds (NaN for one seed), n_seeds,
    n_test and the Wilson 95% interval ``ci_low``/``ci_high`` at the mean. ``df``: usable rows."""
    d = label_rows(df)
    d["n_test"] = n_test.reindex(d.index)
    d = d.sort_values("_order", kind="stable")
    out = []
    for (row, col), g in d.groupby(["row", "column"], sort=False):
        for metric in ("clean_acc", "robust_acc"):
            v = g[metric].astype(float).dropna()
            if v.empty:
                continue
            mean, n = float(v.mean()), float(g["n_test"].min())
            lo, hi = wilson_interval(mean, n)
            out.append({"row": row, "column": col, "metric": metric, "mean": mean,
                        "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan, "n_seeds": len(v),
                        "n_test": n, "ci_low": lo, "ci_high": hi, "trial_ids": list(g["trial_id"])})
    return pd.DataFrame(out, columns=["row", "column", "metric", "mean", "std", "n_seeds", "n_test", "ci_low",
                                      "ci_high", "trial_ids"])


def format_cell(r) -> str:
    """'85.3 ± 1.2 [82.1, 88.0] (n=3)' in percent; spread and n only with several seeds."""
    s = f"{100 * r['mean']:.1f}"
    if r["n_seeds"] > 1:
        s += f" ± {100 * r['std']:.1f}"
    if r["ci_low"] == r["ci_low"]:
        s += f" [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"
    return s + (f" (n={r['n_seeds']})" if r["n_seeds"] > 1 else "")


def study_table(long: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Wide table of formatted cells: rows pretraining x compression level, columns fine-tuning."""
    m = long[long["metric"] == metric]
    if m.empty:
        return pd.DataFrame()
    rows = list(dict.fromkeys(m["row"]))
    cols = sorted(dict.fromkeys(m["column"]), key=lambda c: (FINETUNE.index(c.split()[0]) if c.split()[0] in FINETUNE
                                                             else 9, c))
    table = pd.DataFrame("–", index=rows, columns=cols)
    for _, r in m.iterrows():
        table.loc[r["row"], r["column"]] = format_cell(r)
    table.index.name = "pretraining | compression"
    return table


def robustness_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy against epsilon per (route, compression level): epsilon 0 is the clean accuracy,
    then ``robust_acc_curve`` and ``robust_acc`` at ``eps_eval``; mean, std and n over seeds."""
    d = label_rows(df)
    pts = []
    for _, r in d.iterrows():
        curve = {0.0: r["clean_acc"], float(r["eps_eval"]): r["robust_acc"]}
        curve.update({float(e): a for e, a in (r.get("robust_acc_curve") or {}).items()})
        label = f"{r['route']}, {r['compression_level']}"
        pts += [{"label": label, "route": r["route"], "compression_level": r["compression_level"], "eps": e, "acc": a,
                 "_order": r["_order"]} for e, a in curve.items() if a == a]
    if not pts:
        return pd.DataFrame(columns=["label", "route", "compression_level", "eps", "mean", "std", "n"])
    p = pd.DataFrame(pts).sort_values(["_order", "eps"], kind="stable")
    g = p.groupby(["label", "route", "compression_level", "eps"], sort=False)["acc"]
    return g.agg(mean="mean", std="std", n="count").reset_index()


def energy_sources(df: pd.DataFrame) -> str:
    """The distinct ``energy_source`` values of ``df``'s rows, joined by "; " ("" if none)."""
    if "energy_source" not in df:
        return ""
    return "; ".join(sorted({str(v) for v in df["energy_source"] if isinstance(v, str) and v}))


def compute_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean time (s), energy (kWh) and training FLOPs per stage for each route x compression level,
    the sources of the energies (``energy_source``: measured or estimated), and the training FLOPs
    relative to full adversarial training (adversarial pretraining, no fine-tuning) at the same
    compression level, or of the dense model where that is missing."""
    d = label_rows(df).sort_values("_order", kind="stable")
    cols = [c for c in STAGE_TIMES + STAGE_ENERGY + ("flops_pretrain", "flops_finetune", "robust_acc") if c in d]
    keys = ["route", "compression_level", "pretrain", "finetune"]
    groups = d.groupby(keys, sort=False)
    t = groups[cols].mean().reset_index()
    t["energy_source"] = [energy_sources(g) for _, g in groups]
    t["train_flops"] = t.get("flops_pretrain", 0) + t.get("flops_finetune", 0)
    t["train_time_s"] = sum(t[c] for c in ("time_pretrain_s", "time_compress_s", "time_finetune_s") if c in t)
    train_energy = [metric_name(s) for s in ("pretrain", "compress", "finetune") if metric_name(s) in t]
    t["train_energy_kwh"] = t[train_energy].sum(axis=1, min_count=len(train_energy)) if train_energy else math.nan
    full = t[(t["pretrain"] == "adversarial") & (t["finetune"] == "none")].set_index("compression_level")["train_flops"]
    dense = full.get("none", math.nan)
    t["flops_vs_full_adv"] = [f / full.get(lvl, dense) if full.get(lvl, dense) else math.nan
                              for f, lvl in zip(t["train_flops"], t["compression_level"])]
    t.insert(0, "label", t["route"] + ", " + t["compression_level"])
    return t


def recovery_table(df: pd.DataFrame, n_test: pd.Series, pretrain_s: pd.Series | None = None) -> pd.DataFrame:
    """The study's question per compression level: robust accuracy of a standard model compressed and
    adversarially fine-tuned (``std+AFT``) against the adversarially pretrained model compressed
    (``adv``, no fine-tuning; and ``adv+AFT``), the share of ``adv``'s robust accuracy ``std+AFT``
    reaches, and what each costs: training FLOPs, wall time and energy of the adversarial
    fine-tuning against those of full adversarial training (adversarial pretraining), with the
    energies' sources (``energy_source``). Means over seeds, Wilson
    95% intervals at the mean; ``pretrain_s``: pretraining wall time per row (see
    :func:`analysis.common.pretrain_seconds`)."""
    d = label_rows(df).sort_values("_order", kind="stable")
    d["n_test"] = n_test.reindex(d.index)
    d["pretrain_s"] = pretrain_s.reindex(d.index) if pretrain_s is not None else math.nan
    rows = []
    for level, g in d[d["compression"] != "none"].groupby("compression_level", sort=False):
        pick = lambda pre, ft: g[(g["pretrain"] == pre) & (g["finetune"] == ft)]  # noqa: E731
        std0, aft, adv0, adv_aft = (pick("standard", "none"), pick("standard", "adversarial"),
                                    pick("adversarial", "none"), pick("adversarial", "adversarial"))
        if aft.empty or adv0.empty:
            continue
        mean = lambda sub, c: float(sub[c].astype(float).mean()) if len(sub) else math.nan  # noqa: E731
        row = {"compression_level": level, "n_seeds": len(aft)}
        for name, sub in (("std", std0), ("std+AFT", aft), ("adv", adv0), ("adv+AFT", adv_aft)):
            m, n = mean(sub, "robust_acc"), float(sub["n_test"].min()) if len(sub) else math.nan
            lo, hi = wilson_interval(m, n)
            row.update({f"robust {name}": m, f"robust {name} ci_low": lo, f"robust {name} ci_high": hi,
                        f"clean {name}": mean(sub, "clean_acc")})
        row["share of adv robustness"] = row["robust std+AFT"] / row["robust adv"] if row["robust adv"] else math.nan
        row["AFT flops"] = mean(aft, "flops_finetune")
        row["adv training flops"] = mean(adv0, "flops_pretrain")
        row["std pretrain flops"] = mean(aft, "flops_pretrain")
        row["AFT time_s"] = mean(aft, "time_finetune_s")
        # the same pretraining serves every level: where these rows reused a saved model without its
        # history, take the time from any row of that pretraining mode that has it (the dense reference)
        for key, sub, mode in (("adv training time_s", adv0, "adversarial"), ("std pretrain time_s", aft, "standard")):
            row[key] = mean(sub, "pretrain_s")
            if row[key] != row[key]:
                row[key] = mean(d[d["pretrain"] == mode], "pretrain_s")
        # energy_kwh_pretrain is the whole pretraining's (as its FLOPs), whichever trial ran it
        row["AFT energy_kwh"] = mean(aft, metric_name("finetune")) if metric_name("finetune") in g else math.nan
        row["adv training energy_kwh"] = (mean(adv0, metric_name("pretrain")) if metric_name("pretrain") in g
                                          else math.nan)
        row["energy_source"] = energy_sources(pd.concat([aft, adv0]))
        row["AFT flops / adv training"] = row["AFT flops"] / row["adv training flops"]
        row["AFT time / adv training"] = row["AFT time_s"] / row["adv training time_s"]
        row["AFT energy / adv training"] = (row["AFT energy_kwh"] / row["adv training energy_kwh"]
                                            if row["adv training energy_kwh"] else math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def flagged_rows(excluded: pd.DataFrame) -> pd.DataFrame:
    """Finished trials kept out by a flag (suspect, degenerate, invalid, ...; the table of statuses
    and flags, :mod:`rcsweep.trial_status`), with the reason. ``excluded``: from
    :func:`analysis.common.split_usable`."""
    from rcsweep.trial_status import excluding_flags, flag_reason

    cols = ["trial_id", "route", "compression_level", "clean_acc", "robust_acc", "reason"]
    s = excluded[(excluded["status"] == "finished") & ~excluded["reason"].str.startswith("missing")]
    if s.empty:
        return pd.DataFrame(columns=cols)

    def reasons(r) -> str:  # every flag that keeps the trial out, each with its reason
        return "; ".join(flag_reason(r, f) for f in excluding_flags(r)) or r["reason"]

    return label_rows(s.assign(reason=[reasons(r) for _, r in s.iterrows()]))[cols]


def suspect_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Finished trials whose evaluation failed a gradient-masking check or verification, with the reasons."""
    s = df[(df["status"] == "finished") & df["suspect"].astype(bool)]
    if s.empty:
        return pd.DataFrame(columns=["trial_id", "route", "compression_level", "robust_acc", "suspect_reason"])
    s = label_rows(s)
    return s[["trial_id", "route", "compression_level", "robust_acc", "suspect_reason"]]


def compression_curves(df: pd.DataFrame) -> pd.DataFrame:
    """The study's Figure 1 as a table: clean and robust accuracy against structured sparsity and
    against weight bits, per training route (pretraining x fine-tuning), over seeds.

    ``df``: usable rows. The dense model of a route is the point at sparsity 0 and at 32 bits.
    Columns: ``route``, ``axis`` (``sparsity`` | ``weight_bits``), ``x``, ``metric`` (``clean_acc`` |
    ``robust_acc``), ``mean``, ``std`` (over seeds; NaN with one), ``n_seeds``, ``trial_ids``.
    Unstructured pruning, pruning combined with quantization, non-default quantizers and act bits
    other than 8 are left out (they have figures of their own in the report)."""
    rows = []
    d = label_rows(df)
    dense = d[d["compression"] == "none"]
    prune = d[d["compression"] == "prune_structured"]
    quant = d[(d["compression"] == "quant") & (d["act_bits"] == 8)
              & (d.get("quant_scheme", pd.Series("mse_channel", index=d.index)).fillna("mse_channel") == "mse_channel")]
    for axis, part, dense_x in (("sparsity", prune, 0.0), ("weight_bits", quant, 32.0)):
        both = pd.concat([dense.assign(_x=dense_x), part.assign(_x=part[axis].astype(float))])
        for (rt, x), g in both.groupby(["route", "_x"], sort=True):
            for metric in ("clean_acc", "robust_acc"):
                v = g[metric].astype(float)
                rows.append({"route": rt, "axis": axis, "x": x, "metric": metric, "mean": v.mean(),
                             "std": v.std() if len(v) > 1 else float("nan"), "n_seeds": len(v),
                             "trial_ids": list(g["trial_id"])})
    return pd.DataFrame(rows, columns=["route", "axis", "x", "metric", "mean", "std", "n_seeds", "trial_ids"])
