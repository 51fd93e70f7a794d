"""The table of trial statuses and flags, each with its rule for the Pareto front, for cell means
and for the sampler; and the degeneracy rule every evaluated model is checked against.

A trial has exactly one **status** (``results.csv`` column ``status``) and any number of **flags**
(column ``flags``, ``;``-separated, each with a reason in ``<flag>_reason`` or ``error``). The
driver's own state (``running``, ``stopped``, ``unknown`` in ``rcsweep status``) is not a trial
status.

============== ===================================================== ====== ========== ===================
name           meaning                                               front  cell means sampler
============== ===================================================== ====== ========== ===================
running        started, not finished (or its driver was killed)      no     no         pending
finished       evaluated; record.json written                        yes    yes        its objectives
failed         raised an error (after Tune's retries)                no     no         failed
early_stopped  stopped at a rung by early stopping (issue 16)        no     no         pruned
-------------- ----------------------------------------------------- ------ ---------- -------------------
suspect        a gradient-masking check failed, or verification      no     no         infeasible
               found rcsweep's robust accuracy > 1 point too high
degenerate     clean accuracy within the 95% binomial interval of    no     no         infeasible
               chance or of the majority-class rate, or the model
               predicts a single class
collapsed      training collapsed (NaN loss / chance accuracy);      no     no         failed
               set on failed trials, not retried
infeasible     violates a sweep's ``constraints`` (issue 15)         no     no         infeasible
invalid        a metric is non-finite or out of its range            no     no         not told
               (a damaged or hand-edited results.csv)
weak_eval      evaluation budget below the documented floor          yes    yes        its objectives
               (said in validate, the record and the report)
============== ===================================================== ====== ========== ===================

:func:`usable` applies the table: a row counts on a front and in cell means only when its status is
``finished`` and it has no flag whose rule says ``no``. ``rcsweep report`` counts the excluded rows
per status and flag.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

STATUS_RUNNING, STATUS_FINISHED, STATUS_FAILED, STATUS_EARLY_STOPPED = ("running", "finished", "failed",
                                                                        "early_stopped")


@dataclass(frozen=True)
class Rule:
    name: str
    meaning: str
    on_front: bool
    in_cell_means: bool
    sampler: str  # what the sampler is told: objectives | failed | pruned | infeasible | pending | not told


STATUSES: dict[str, Rule] = {r.name: r for r in (
    Rule("running", "started, not finished", False, False, "pending"),
    Rule("finished", "evaluated; record.json written", True, True, "objectives"),
    Rule("failed", "raised an error", False, False, "failed"),
    Rule("early_stopped", "stopped at a rung by early stopping", False, False, "pruned"),
)}
FLAGS: dict[str, Rule] = {r.name: r for r in (
    Rule("suspect", "a gradient-masking check failed, or verification found the robust accuracy too high",
         False, False, "infeasible"),
    Rule("degenerate", "chance-level clean accuracy, or a single predicted class", False, False, "infeasible"),
    Rule("collapsed", "training collapsed (not retried)", False, False, "failed"),
    Rule("infeasible", "violates the sweep's constraints", False, False, "infeasible"),
    Rule("invalid", "a metric is non-finite or out of range", False, False, "not told"),
    Rule("weak_eval", "evaluation budget below the documented floor", True, True, "objectives"),
)}


def parse_flags(cell) -> list[str]:
    """The flags of a ``flags`` cell (``'suspect;degenerate'``; empty or NaN -> [])."""
    if not isinstance(cell, str) or not cell.strip():
        return []
    return [f for f in (s.strip() for s in cell.split(";")) if f]


def join_flags(flags) -> str:
    """``flags`` as one cell, in table order, each once."""
    have = set(flags)
    return ";".join([f for f in FLAGS if f in have] + sorted(have - set(FLAGS)))


def row_flags(row) -> list[str]:
    """Every flag of a results row: the ``flags`` column plus the boolean ``suspect`` / ``degenerate``
    columns (rows written before the ``flags`` column existed)."""
    flags = parse_flags(row.get("flags"))
    for f in ("suspect", "degenerate"):
        v = row.get(f)
        if (v is True or str(v).strip().lower() == "true") and f not in flags:
            flags.append(f)
    return flags


def excluding_flags(row, use: str = "front") -> list[str]:
    """The flags of ``row`` whose rule keeps it off the front (``use="front"``) or out of cell means."""
    return [f for f in row_flags(row) if f in FLAGS
            and not (FLAGS[f].on_front if use == "front" else FLAGS[f].in_cell_means)]


#: flags only results.csv knows (set by the sweep, not derived from a trial's record)
ROW_ONLY_FLAGS = ("collapsed", "infeasible")


def merge_row_flags(from_record, from_row) -> str:
    """A results row's ``flags`` cell after its record's flags were derived again: the record's
    flags plus the row-only ones (:data:`ROW_ONLY_FLAGS`) the old cell had."""
    return join_flags(parse_flags(from_record) + [f for f in parse_flags(from_row) if f in ROW_ONLY_FLAGS])


def keep_row_only(new: dict, old: dict) -> dict:
    """``new``, a results row rebuilt from its trial's record, with what only the old row ``old``
    knew: its row-only flags (:func:`merge_row_flags`) and their ``<flag>_reason`` cells
    (``infeasible_reason``, written by the sweep). Changes and returns ``new``."""
    new["flags"] = merge_row_flags(new.get("flags"), old.get("flags"))
    for flag in set(ROW_ONLY_FLAGS) & set(parse_flags(old.get("flags"))):
        why = old.get(f"{flag}_reason")
        if isinstance(why, str) and why and not new.get(f"{flag}_reason"):
            new[f"{flag}_reason"] = why
    return new


def exclusion(row, use: str = "front") -> str:
    """'' if the row counts for ``use`` (``front`` or ``cell``), else why not (one line)."""
    status = row.get("status")
    rule = STATUSES.get(status)
    if rule is None:
        return f"unknown status {status!r}"
    if not (rule.on_front if use == "front" else rule.in_cell_means):
        if status == "failed":
            return "failed: " + (str(row.get("error") or "") or "no error recorded")
        return f"{status}: not finished"
    flags = excluding_flags(row, use)
    return flag_reason(row, flags[0]) if flags else ""


def flag_reason(row, flag: str) -> str:
    """``'<flag>: <its reason>'``: the row's ``<flag>_reason`` cell, else the flag's meaning."""
    reason = row.get(f"{flag}_reason")
    return f"{flag}: {reason if isinstance(reason, str) and reason else FLAGS[flag].meaning}"


# -- degeneracy -----------------------------------------------------------------------------------
Z95 = 1.959964


def binomial_upper(p: float, n: int, z: float = Z95) -> float:
    """Upper end of the normal-approximation interval ``p + z sqrt(p (1 - p) / n)`` of an accuracy
    that is ``p`` in expectation on ``n`` examples (the interval a chance-level model lands in)."""
    return p + z * math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def degeneracy(clean_acc: float, n: int, num_classes: int, majority_rate: float | None = None,
               majority_pred_frac: float | None = None) -> str:
    """'' for a usable model, else the reason it is degenerate.

    ``clean_acc``: accuracy on ``n`` test images; ``num_classes``: chance is ``1 / num_classes``;
    ``majority_rate``: share of the test set's most frequent class (a constant classifier of that
    class scores it); ``majority_pred_frac``: share of the test images predicted as the model's most
    predicted class (1.0: a single predicted class). Degenerate when the clean accuracy is not above
    the 95% binomial interval of chance or of the majority-class rate, or every image gets one class.
    """
    if majority_pred_frac is not None and majority_pred_frac >= 1.0 and num_classes > 1:
        return f"predicts a single class for all {n} test images"
    base = [("chance", 1.0 / num_classes)]
    if majority_rate is not None and majority_rate > 1.0 / num_classes:
        base.append(("the majority-class rate", float(majority_rate)))
    for what, p in base:
        hi = binomial_upper(p, n)
        if clean_acc <= hi:
            return (f"clean accuracy {clean_acc:.3f} within the 95% interval of {what} {p:.3f} "
                    f"(<= {hi:.3f} on {n} images)")
    return ""


# -- a trial record's flags -----------------------------------------------------------------------
FLAG_METRICS = ("suspect", "suspect_reason", "degenerate", "degenerate_reason", "flags", "verified_robust_acc")


def derive_flags(record: dict, num_classes: int) -> dict:
    """Set the flag metrics of a trial record (``record.json`` shape) in place and return it.

    Read from the record itself, so that evaluation, re-evaluation, verification and
    ``rcsweep flags`` all apply the same rules:

    - ``suspect``: a failed masking check (``evaluation.checks``) or a suspect verification
      (``verification``, written by ``rcsweep verify``); ``suspect_reason`` joins the reasons;
    - ``degenerate``: :func:`degeneracy` of ``metrics.clean_acc`` on ``evaluation.n_test`` images
      (``evaluation.majority_rate`` and ``metrics.majority_pred_frac`` where recorded);
    - ``weak_eval``: ``evaluation.weak_eval`` (a non-empty reason) when the evaluation budget was
      below the documented floor;
    - ``verified_robust_acc``: the verification's independent robust accuracy;
    - ``flags``: every flag above that is set, plus ``collapsed`` / ``infeasible`` / others already
      in ``metrics.flags`` that this function does not own.

    ``num_classes``: the dataset's classes (chance is ``1 / num_classes``).
    """
    m = record.setdefault("metrics", {})
    ev = record.get("evaluation") or {}
    ver = record.get("verification") or {}
    suspect = [f"{k}: {v.get('detail', '')}" for k, v in (ev.get("checks") or {}).items()
               if isinstance(v, dict) and not v.get("passed", True)]
    if ver.get("suspect"):
        suspect.append("verify: " + (ver.get("suspect_reason") or "independent attack found a lower robust accuracy"))
    if ver.get("robust_acc_independent") is not None:
        m["verified_robust_acc"] = ver["robust_acc_independent"]
    m["suspect"], m["suspect_reason"] = bool(suspect), "; ".join(suspect)
    deg = ""
    if m.get("clean_acc") is not None and ev.get("n_test"):
        deg = degeneracy(float(m["clean_acc"]), int(ev["n_test"]), num_classes, ev.get("majority_rate"),
                         m.get("majority_pred_frac"))
    m["degenerate"], m["degenerate_reason"] = bool(deg), deg
    owned = {"suspect", "degenerate", "weak_eval"}
    flags = [f for f in parse_flags(m.get("flags")) if f not in owned]
    flags += [f for f, on in (("suspect", m["suspect"]), ("degenerate", m["degenerate"]),
                              ("weak_eval", bool(ev.get("weak_eval")))) if on]
    m["flags"] = join_flags(flags)
    return record
