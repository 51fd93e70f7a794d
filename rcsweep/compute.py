"""A sweep's compute, defined once (issue 16, item 7).

A sweep's compute is each distinct pretraining counted once (trials that share a pretrained model,
:meth:`rcsweep.config.TrialConfig.pretrain_key`, repeat its ``flops_pretrain`` on every row), plus
every trial's fine-tuning (``flops_finetune``: what it ran, so a trial stopped early counts the
epochs it ran), screening (``flops_screen``) and final evaluation (``flops_evaluate``), in FLOPs; and
the same in wall time (``time_pretrain_s``, the longest of the rows sharing a pretraining, plus each
trial's ``time_compress_s``, ``time_finetune_s``, ``time_screen_s`` and ``time_evaluate_s``).
Wall time here is the sum of the stages' own times, not the sweep's elapsed time: trials that ran
at once both count. Empty cells (a stage a trial never ran, metrics an older sweep lacks) count 0.
"""
from __future__ import annotations

import json
import math

from .config import TrialConfig
from .errors import ConfigError

PER_TRIAL_FLOPS = ("flops_finetune", "flops_screen", "flops_evaluate")
PER_TRIAL_SECONDS = ("time_compress_s", "time_finetune_s", "time_screen_s", "time_evaluate_s")


def number(v) -> float:
    """A cell as a float; 0.0 for an empty, non-numeric or non-finite one."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return 0.0
    return x if math.isfinite(x) else 0.0


def pretraining_key(row) -> str:
    """Which pretrained model a results row used (its trial id when the row cannot be read back)."""
    try:
        return json.dumps(TrialConfig.from_row(row).pretrain_key(), sort_keys=True, default=str)
    except (ConfigError, TypeError, ValueError):
        return f"trial {row.get('trial_id')}"


def sweep_compute(table) -> dict:
    """The compute of the rows of a results table (``rcsweep.results.load_results``), as the module
    docstring defines it: ``flops`` and ``seconds`` totals, and each part (``flops_pretrain``,
    ``flops_finetune``, ``flops_screen``, ``flops_evaluate``; ``seconds_pretrain``,
    ``seconds_trials``) and ``pretrainings`` (distinct pretrained models)."""
    pre_flops, pre_s = {}, {}
    parts = dict.fromkeys(PER_TRIAL_FLOPS, 0.0)
    trial_s = 0.0
    for _, row in table.iterrows():
        key = pretraining_key(row)
        pre_flops[key] = max(pre_flops.get(key, 0.0), number(row.get("flops_pretrain")))
        pre_s[key] = max(pre_s.get(key, 0.0), number(row.get("time_pretrain_s")))
        for k in PER_TRIAL_FLOPS:
            parts[k] += number(row.get(k))
        trial_s += sum(number(row.get(k)) for k in PER_TRIAL_SECONDS)
    out = {"flops_pretrain": sum(pre_flops.values()), **parts, "seconds_pretrain": sum(pre_s.values()),
           "seconds_trials": trial_s, "pretrainings": len(pre_flops)}
    out["flops"] = out["flops_pretrain"] + sum(parts.values())
    out["seconds"] = out["seconds_pretrain"] + trial_s
    return out
