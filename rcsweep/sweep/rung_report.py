"""What a trial measures and reports at a rung of early stopping (issue 16), on the trial's side.
No Ray: the trainable (:mod:`.trainable`) calls :func:`at_rung` from its stage hook and sends what it
returns to Tune, where :class:`.scheduler.RungScheduler` decides.

At each rung of the sweep's ``early_stopping`` that the trial reaches (rung 0: the compressed
model; rung r: after r fine-tuning epochs) the model is screened (:func:`rcsweep.screening.screen`),
the result appended to ``progress.history["screening"]`` (so that a stage checkpoint carries it and
the finished record holds every rung), and ``trials/<id>/rungs.json`` written: the screening so far
and what the trial has cost until now (``spent``), which is what results.csv records for a trial
stopped there.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..config import TrialConfig
from ..fileio import atomic_write_json
from ..metrics import count_macs, efficiency
from ..pipeline import Progress, TrialData, stage_flops
from ..rungs import group_key, rung_values
from ..screening import screen

RUNGS_FILE = "rungs.json"  # trials/<id>/: the screening so far and the cost spent (written at each rung)


def rung_now(progress: Progress) -> int:
    """The rung a stage hook is at: fine-tuning epochs done (0 right after compression)."""
    return progress.finetune_epochs_done if progress.stage == "finetuning" else 0


def at_rung(model, cfg: TrialConfig, data: TrialData, progress: Progress, folder: Path, early_stopping: dict,
            objectives, device) -> dict:
    """Screen ``model`` if the trial is at one of ``early_stopping["rungs"]`` not screened yet;
    returns the rung's report to Tune (``rung``, ``rung_group``, ``rung_classes``, ``screen_*``,
    and each objective's rung value as ``rung_value.<metric>``), or {} when not at a new rung.
    ``objectives``: the sweep's ``(metric, direction)`` pairs; ``early_stopping``:
    :meth:`rcsweep.early_stopping.EarlyStopping.to_dict`."""
    rung = rung_now(progress)
    history = progress.history.setdefault("screening", [])
    if rung not in early_stopping["rungs"] or any(h["rung"] == rung for h in history):
        return {}
    # screen() and efficiency() leave torch's random state as it was: a screened trial trains on
    # exactly as an unscreened one (tests/test_screening.py)
    shape = data.info.shape
    macs = count_macs(model, shape)
    entry = screen(model, data.val, norm=cfg.norm, eps=cfg.eps_eval, macs=macs, rung=rung,
                   size=early_stopping["screen_size"], steps=early_stopping["screen_steps"],
                   seed=early_stopping["screen_seed"], device=device)
    history.append(entry)
    full = stage_flops(cfg, progress.dense["macs"], macs, len(data.train[0]))
    sizes = efficiency(model, cfg, shape, progress.dense["params"], latency=False)  # fixed once compressed
    measured = {**full, **sizes}
    total = cfg.finetune_epochs or 0
    spent_ft = full["flops_finetune"] * (progress.finetune_epochs_done / total if total else 0.0)
    spent = {**progress.times, **{k: v for k, v in progress.energy.items() if v is not None},
             "flops_pretrain": full["flops_pretrain"], "flops_finetune": spent_ft,
             "flops_route": full["flops_pretrain"] + spent_ft}
    values = rung_values(objectives, entry, measured)
    entry["values"] = values  # what the decision compared, kept in screen_history for rcsweep replay
    report = {"rung": rung, "rung_group": group_key(cfg.to_flat()), "rung_classes": data.info.num_classes,
              "rung_n": entry["n"], "screen_clean_acc": entry["clean_acc"], "screen_robust_acc": entry["robust_acc"],
              **{f"rung_value.{m}": v for m, v in values.items()}}
    atomic_write_json(folder / RUNGS_FILE, {"history": history, "spent": spent, "sizes": sizes, "report": report})
    return report


def last_rung_report(folder: Path, progress: Progress) -> dict:
    """The report of the rung a trial resumed at (``progress`` from its checkpoint), read from its
    ``rungs.json``; {} when the checkpoint is not at a rung."""
    try:
        report = json.loads((folder / RUNGS_FILE).read_text()).get("report") or {}
    except (OSError, ValueError):
        return {}
    screened = progress.history.get("screening") or [{}]
    return report if report.get("rung") == rung_now(progress) == screened[-1].get("rung") else {}


def rung_point(result: dict, trial_id: str):
    """The :class:`rcsweep.rungs.RungPoint` of a rung report (:func:`at_rung`'s, as Tune hands it on)."""
    from ..rungs import RungPoint

    values = {k[len("rung_value."):]: float(v) for k, v in result.items() if k.startswith("rung_value.")}
    return RungPoint(trial_id, values, int(result["rung_n"]), float(result["screen_clean_acc"]))
