"""``rcsweep verify``: an independent check of a sweep's robust accuracies. Each chosen trial's
saved model is attacked again with an attack rcsweep did not write (torchattacks, an optional
dependency: ``pip install 'rcsweep[verify]'``), and both numbers are written side by side
(``DIR/verify.csv``).

Attacks (at the trial's ``eps_eval`` and ``norm``, on the first ``n_examples`` images of the split
rcsweep evaluated on: the dataset's test split cut to the trial's ``test_size``; it does not
depend on the seed):

- ``apgd`` (default): torchattacks' APGD on cross-entropy, then APGD-T (targeted DLR, every other
  class as target: AutoAttack's two gradient attacks) on the examples left standing; an example
  counts as robust only if both fail (worst case per example). ``steps``: torchattacks' default (10).
- ``autoattack``: torchattacks' ``AutoAttack(version='standard')`` (APGD-CE, APGD-T, FAB-T, Square).

For a quantized model (fake-quantized activations) the examples still standing are then attacked
by transfer: torchattacks' APGD-CE crafted on the model's float twin (same effective weights,
activations not quantized) and handed to the quantized model. Rounding activations to a grid blunts
the gradients a white-box attack follows (gradient masking); on digits, 4-bit models kept up to 14 points
of "robust" accuracy against white-box APGD that the transfer took away. ``robust_acc_white_box``
is the independent number without the transfer.

rcsweep's own evaluation (APGD-CE + APGD-DLR, the trial's ``eval_steps`` and ``eval_restarts``) is
run again on the same images (``robust_acc_rcsweep``) so that the comparison is like for like; the
sweep's number (``robust_acc_sweep``, on ``n_test`` images) is kept beside it. A model is
``suspect`` when rcsweep's number on the same images is more than ``TOLERANCE`` above the
independent one, or the sweep's number is: directly when the images are the same, else above the
95% Wilson upper bound of the independent accuracy (the subset's sampling error) plus ``TOLERANCE``.

The verdict does not stay in ``verify.csv``: :func:`apply_verification` writes it into each trial's
``record.json`` (``verification``) and ``results.csv`` row (``verified_robust_acc``, the ``suspect``
flag with its reason, through :func:`rcsweep.trial_status.derive_flags`), so a suspect model leaves
the front, the cell means and the report's tables. ``verify.csv`` keeps one row per trial ever
verified (a later run replaces the rows of the trials it verifies).
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from analysis.common import load_sweep, n_test, to_csv, trial_dir
from analysis.tables import wilson_interval

from ..checkpoint import library_versions, read_meta
from ..data import dataset_info, load_dataset
from ..errors import CheckpointError, UserError
from ..evaluate import evaluate, float_twin, robust_correct
from ..fileio import atomic_write_json
from ..metrics_table import missing
from ..results import add_flag, read_rows, record_to_row, upsert_rows
from ..trial_status import derive_flags, keep_row_only
from .features import load_trial

VERIFY_FILE = "verify.csv"
ATTACKS = ("apgd", "autoattack")
TOLERANCE = 0.01  # accuracy (1 point)
FLOAT_SLACK = 1e-6  # float32 rounding of accuracies recorded as shares
PARAM_COLUMNS = ("dataset", "pretrain", "compression", "sparsity", "weight_bits", "act_bits", "finetune", "norm",
                 "eps_eval")
_NORMS = {"linf": "Linf", "l2": "L2"}


def import_torchattacks():
    """torchattacks, or a one-line UserError saying how to install it."""
    try:
        import torchattacks
    except ImportError:
        raise UserError("rcsweep verify needs torchattacks, which is not installed: "
                        "pip install 'rcsweep[verify]' (or pip install torchattacks)") from None
    return torchattacks


def independent_attacks(model, attack: str, norm: str, eps: float, num_classes: int, steps=None, seed: int = 0):
    """``([attack(model, x, y) -> x_adv, ...], description)`` for :func:`rcsweep.evaluate.robust_correct`."""
    ta = import_torchattacks()
    if attack not in ATTACKS:
        raise UserError(f"unknown attack {attack!r}; use one of {', '.join(ATTACKS)}")
    kw = dict(norm=_NORMS[norm], eps=eps, seed=seed)
    if attack == "autoattack":
        if num_classes < 3:
            raise UserError("AutoAttack needs at least 3 classes (its DLR loss)")
        chain = [ta.AutoAttack(model, version="standard", n_classes=num_classes, **kw)]
        text = "torchattacks AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square 5000)"
    else:
        kw.update({"steps": steps} if steps else {})
        chain = [ta.APGD(model, loss="ce", **kw)]
        n = chain[0].steps
        text = f"torchattacks APGD-CE {n} steps"
        if num_classes >= 3:
            chain.append(ta.APGDT(model, n_classes=num_classes, **kw))
            text += f" + APGD-T {n} steps x {num_classes - 1} targets"
    return [lambda _model, x, y, a=a: a(x, y) for a in chain], f"{text} ({ta.__version__})"


def transfer_attack(twin, norm: str, eps: float, steps=None, seed: int = 0):
    """``(attack(model, x, y) -> x_adv, description)``: torchattacks' APGD-CE run on the float twin of a
    quantized model (the same effective weights, activations not quantized; ``float_twin``) and
    the examples handed to the quantized model. Rounding activations blunts the gradients a
    white-box attack follows; attacks crafted on the twin transfer past it."""
    (craft,), text = independent_attacks(twin, "apgd", norm, eps, 2, steps, seed)  # 2 classes: APGD-CE alone
    return (lambda _model, x, y: craft(twin, x, y)), "transfer of " + text.split(" (")[0] + " from the float twin"


def check_trials(folder, rows: pd.DataFrame, verb: str = "verify", participle: str = "verified") -> None:
    """A UserError naming the first chosen trial that did not finish or has no saved model."""
    for _, r in rows.iterrows():
        if r["status"] != "finished":
            raise UserError(f"trial {r['trial_id']!r} did not finish (status {r['status']}); nothing to {verb}")
        try:
            read_meta(trial_dir(folder, r["trial_id"]))
        except CheckpointError as e:
            raise UserError(f"trial {r['trial_id']!r} cannot be {participle}: {e}") from None


def models_at_hand(folder) -> tuple[pd.DataFrame, list[str]]:
    """(finished rows whose model can be read, ids of finished rows whose model is missing)."""
    df = load_sweep(folder)
    fin = df[df["status"] == "finished"]
    ok, missing = [], []
    for i, r in fin.iterrows():
        try:
            read_meta(trial_dir(folder, r["trial_id"]))
            ok.append(i)
        except CheckpointError:
            missing.append(str(r["trial_id"]))
    return fin.loc[ok], missing


def judge(r: dict) -> tuple[bool, str]:
    """(suspect, reason) of a verify row (see the module docstring)."""
    ind, n = r["robust_acc_independent"], r["n_examples"]
    reasons = []
    # accuracies are float32 shares of n images: 2 of 200 is exactly 1 point, never "more than" it
    if r["robust_acc_rcsweep"] - ind > TOLERANCE + FLOAT_SLACK:
        reasons.append(f"rcsweep's attack {r['robust_acc_rcsweep']:.3f} vs independent {ind:.3f} "
                       f"on the same {n} images")
    same = n == r["n_test"]
    bound = ind if same else wilson_interval(ind, n)[1]
    if r["robust_acc_sweep"] - bound > TOLERANCE + FLOAT_SLACK:
        where = "the same images" if same else f"{r['n_test']:.0f} images; 95% upper bound {bound:.3f} on {n}"
        reasons.append(f"the sweep's robust_acc {r['robust_acc_sweep']:.3f} vs independent {ind:.3f} ({where})")
    return bool(reasons), "; ".join(reasons)


def verify_trial(folder, row, n_test_sweep: float, attack: str = "apgd", steps=None, n_examples=None, device="cpu",
                 data_dir=None) -> dict:
    """The verify.csv row of one finished trial (``row``: its results.csv row)."""
    model, p = load_trial(folder, row["trial_id"])
    model.to(device)
    x, y = load_dataset(p["dataset"], "test", data_dir=data_dir, test_size=p["test_size"])
    x, y = x[:n_examples], y[:n_examples]
    num_classes = dataset_info(p["dataset"]).num_classes
    t = time.perf_counter()
    torch.manual_seed(p["seed"])
    ours = evaluate(model, x, y, norm=p["norm"], eps_eval=p["eps_eval"], steps=p["eval_steps"],
                    restarts=p["eval_restarts"], device=device, num_classes=num_classes, checks=False,
                    targets=p.get("eval_targets") or 0)
    t_ours, t = time.perf_counter() - t, time.perf_counter()
    chain, text = independent_attacks(model, attack, p["norm"], p["eps_eval"], num_classes, steps, seed=p["seed"])
    alive = robust_correct(model, x, y, chain, device)
    white_box = alive.float().mean().item()
    twin = float_twin(model, device)
    if twin is not None:  # worst case over the white-box attacks and the transfer from the twin
        tr, tr_text = transfer_attack(twin, p["norm"], p["eps_eval"], steps, seed=p["seed"])
        alive = robust_correct(model, x, y, [tr], device, alive=alive)
        text = f"{text} + {tr_text}"
    independent = alive.float().mean().item()
    known = n_test_sweep == n_test_sweep  # not NaN
    out = {"trial_id": row["trial_id"], **{k: p.get(k) for k in PARAM_COLUMNS},
           "n_test": int(n_test_sweep) if known else n_test_sweep, "n_examples": len(x),
           "clean_acc_sweep": row["clean_acc"], "clean_acc": ours.clean_acc,
           "robust_acc_sweep": row["robust_acc"], "robust_acc_rcsweep": ours.robust_acc,
           "robust_acc_independent": independent, "robust_acc_white_box": white_box, "attack_rcsweep": ours.attack,
           "attack": text}
    out["gap"] = out["robust_acc_rcsweep"] - independent
    out["gap_sweep"] = out["robust_acc_sweep"] - independent
    out["suspect"], out["suspect_reason"] = judge(out)
    return {**out, "seconds_rcsweep": t_ours, "seconds": time.perf_counter() - t}


def run_verify(folder, rows: pd.DataFrame, out=None, attack: str = "apgd", steps=None, n_examples=None,
               device="cpu", data_dir=None) -> tuple[pd.DataFrame, Path]:
    """Verify every trial in ``rows`` (results.csv rows) and write the table to ``out`` (default
    ``folder/verify.csv``, replaced as a whole, atomically). Every trial is checked before any is
    attacked, so bad input writes nothing."""
    import_torchattacks()
    rows = rows.drop_duplicates("trial_id")
    check_trials(folder, rows)
    sizes = n_test(folder, rows)
    path = Path(out) if out else Path(folder) / VERIFY_FILE
    earlier = pd.read_csv(path, dtype={"trial_id": str}) if path.is_file() else pd.DataFrame({"trial_id": []})
    known = set(load_sweep(folder)["trial_id"])
    earlier = earlier[~earlier["trial_id"].isin(rows["trial_id"]) & earlier["trial_id"].isin(known)]
    done = []
    for i, r in rows.iterrows():  # written after each trial: an interrupted run keeps what it verified
        done.append(verify_trial(folder, r, sizes[i], attack, steps, n_examples, device, data_dir))
        to_csv(pd.concat([earlier, pd.DataFrame(done)], ignore_index=True), path)
        apply_verification(folder, pd.DataFrame(done[-1:]))
    return pd.DataFrame(done), path


VERIFICATION_KEYS = ("n_examples", "robust_acc_rcsweep", "robust_acc_independent", "robust_acc_white_box", "gap",
                     "attack", "suspect", "suspect_reason")


def apply_verification(folder, table: pd.DataFrame) -> int:
    """Carry verify rows (``table``, verify.csv's columns) into the sweep: each trial's
    ``record.json`` gets ``verification`` and its flags derived again; its results.csv row is
    rewritten from the record. A trial whose folder is gone (committed results without models)
    has its results.csv row updated directly: ``verified_robust_acc``, and the ``suspect`` flag
    with the verdict's reason. Returns the number of rows updated."""
    rows = {r["trial_id"]: r for r in read_rows(folder)}
    updated = []
    for _, v in table.iterrows():
        tid = str(v["trial_id"])
        if tid not in rows:
            continue
        suspect = str(v.get("suspect")).strip().lower() == "true"
        reason = v.get("suspect_reason")
        reason = reason if isinstance(reason, str) else ""
        ver = {k: None if missing(v.get(k)) else v.get(k) for k in VERIFICATION_KEYS if k in v}
        ver.update(suspect=suspect, suspect_reason=reason, at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   versions=library_versions())
        rec_path = trial_dir(folder, tid) / "record.json"
        row = rows[tid]
        if rec_path.is_file():
            record = json.loads(rec_path.read_text())
            record["verification"] = ver
            derive_flags(record, dataset_info(record["params"]["dataset"]).num_classes)
            atomic_write_json(rec_path, record)
            new = record_to_row(tid, row["status"], record, error=row.get("error") or "",
                                is_reference=str(row.get("is_reference")).lower() == "true")
            keep_row_only(new, row)
        else:
            new = dict(row)
            new["verified_robust_acc"] = ver.get("robust_acc_independent")
            if suspect:
                add_flag(new, "suspect", "verify: " + reason)
        updated.append(new)
    if updated:
        upsert_rows(folder, updated)
    return len(updated)

