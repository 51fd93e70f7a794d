"""The ``model_card.json`` of an exported model (``rcsweep export``, :mod:`.export`): what the files
are, what they take and give, how accurate and robust the trial measured the model, its size and
latency as the trial measured them, and per file its precision, bytes, stored tensors and agreement
with rcsweep's model. Metric names, and their units, are those of :mod:`rcsweep.metrics_table`."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch

from analysis.common import trial_dir

from ..checkpoint import library_versions
from ..compress import export as backends
from ..compress.plain import grid_bits
from ..data import dataset_info
from ..metrics_table import metric
from ..trial_status import row_flags

CARD_METRICS = {"accuracy": ("clean_acc", "robust_acc", "verified_robust_acc"),
                "size": ("params", "params_nonzero", "model_bits", "dense_model_bits", "sparsity_measured",
                         "channels_removed", "weight_bits_measured"),
                "latency": ("latency_ms_b1", "latency_ms_b128", "latency_model", "latency_threads")}


def file_size(path: Path) -> dict:
    """Bytes of a file and of the tensors it stores, by dtype (to compare with the card's ``size``)."""
    tensors = backends.stored_tensors(path)
    by_dtype: dict = {}
    for dtype, n in tensors.values():
        by_dtype[dtype] = by_dtype.get(dtype, 0) + n
    return {"bytes": path.stat().st_size, "tensor_elements": by_dtype,
            "tensor_bytes": sum(n * torch.empty(0, dtype=getattr(torch, d)).element_size() for d, n in by_dtype.items()),
            "tensors": sorted(tensors)}


def model_card(folder, row, p: dict, model, files: dict, skipped: dict) -> dict:
    """The ``model_card.json`` of one exported trial (module docstring), as a JSON-able dict.

    ``folder``: the sweep; ``row``: the trial's results.csv row; ``p``: its flat parameters;
    ``model``: rcsweep's model of it; ``files``: ``{file name: {format, weights, activations, bytes,
    tensor_elements, agreement, ...}}``; ``skipped``: ``{file name: why it was not written}``."""
    info = dataset_info(p["dataset"])
    metrics = _metrics(folder, row)
    wbits, abits = grid_bits(model)
    card = {"format": "rcsweep-model-card", "trial_id": str(row["trial_id"]), "dataset": p["dataset"],
            "model": p["model"], "width": p["width"], "classes": info.num_classes,
            "input": {"name": backends.INPUT, "dtype": "float32", "shape": ["N", *info.shape], "layout": "NCHW",
                      "range": [0.0, 1.0], "normalisation": {"inside_model": True, "mean": list(info.mean),
                                                             "std": list(info.std)}},
            "output": {"name": backends.OUTPUT, "shape": ["N", info.num_classes], "meaning": "logits"},
            "threat_model": {"norm": p["norm"], "eps": p["eps_eval"], "units": "pixels of [0, 1] images"},
            "compression": {"method": p["compression"], "sparsity": p.get("sparsity"), "weight_bits": wbits,
                            "act_bits": abits},
            "files": files, "files_not_written": skipped, "flags": row_flags(row), "parameters": p,
            "rcsweep_version": library_versions()["rcsweep"], "versions": library_versions(), "exported_at": now()}
    for section, names in CARD_METRICS.items():
        card[section] = {n: metrics.get(n) for n in names}
        card[section]["units"] = {n: metric(n).unit for n in names if metric(n).unit}
    card["accuracy"].update(n_test=metrics.get("n_test"), attack=metrics.get("attack"))
    card["size"]["note"] = ("as the trial measured them: params counts every stored parameter, pruned zeros "
                            "included; model_bits is the storage the compression needs; each file's bytes and "
                            "tensor_elements are what it holds")
    card["latency"]["note"] = "measured by the trial on latency_model with latency_threads CPU threads, not these files"
    return card


def _metrics(folder, row) -> dict:
    """The trial's metrics: its record.json's (with ``n_test`` and ``attack``), else its results row's."""
    path = trial_dir(folder, row["trial_id"]) / "record.json"
    if path.is_file():
        record = json.loads(path.read_text())
        ev = record.get("evaluation") or {}
        return {**(record.get("metrics") or {}), "n_test": ev.get("n_test"), "attack": ev.get("attack")}
    values = {k: v.item() if hasattr(v, "item") else v for k, v in row.items()}  # numpy scalars -> Python
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in values.items()}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
