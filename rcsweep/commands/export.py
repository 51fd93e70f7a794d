"""``rcsweep export``: the chosen trials' models (the Pareto front's, or named ones) as files that
run without rcsweep, each checked against rcsweep's own model before the export counts.

Formats (``formats``, one or more), per trial in ``OUT/<trial_id>/``:

- ``onnx``: ``model.onnx`` (:func:`rcsweep.compress.export.write_onnx`: ``torch.onnx.export`` with
  ``dynamo=True``, the exporter's default opset). A quantized model whose grids fit 8 bits also gets
  ``model.qdq.onnx``: int8 weight codes (DequantizeLinear) and uint8 activation QDQ
  (:mod:`rcsweep.compress.plain`), kept only when it passes the agreement check below: integer
  runtimes quantize the float bias to int32 at (input scale x weight scale), which rcsweep's
  simulation does not, and on coarse grids (w4a4) that moves predictions. Otherwise the card says why.
- ``pt2``: ``model.pt2``, a ``torch.export`` program (``torch.export.load(path).module()``).
- ``state_dict``: ``model.pt`` + ``model.json``, rcsweep's own format with the pruning masks baked
  into plain weights (:func:`rcsweep.compress.masks_baked`); loads with ``rcsweep.load_model``.

Every file is a plain model (:func:`rcsweep.compress.plain.plain_copy`): removed channels absent,
pruned zeros in plain ``weight`` tensors (no ``weight_orig`` / ``weight_mask``), quantized weights
as float32 holding exactly the simulated grid values and activation grids as plain ops in the
graph. Input ``images`` float32 (N, C, H, W) in [0, 1] (normalisation inside), N dynamic.

Agreement check, per file, on the test images the trial was evaluated on (its dataset and
``test_size``; ``n_examples``: the first N): the file, run by onnxruntime (ONNX) or torch (pt2,
state_dict), predicts the class rcsweep's model does on at least ``MIN_AGREEMENT`` of them, and on
PGD examples crafted on rcsweep's model (the trial's ``norm``, ``eps_eval`` and ``eval_steps``;
seeded with its seed) its accuracy is at most ``TRANSFER_TOLERANCE`` above rcsweep's model's.
A failure raises :class:`ExportMismatch` and nothing is written.

``model_card.json`` beside the files: dataset, input (shape, range [0, 1], normalisation inside),
threat model, clean and robust accuracy, size, latency, compression, per file its precision,
bytes, stored tensors and agreement, the trial's parameters, rcsweep's version. ``OUT/export.json``
marks the folder as an export and ``OUT/trials.csv`` holds the trials' results rows. Everything
is written into a temporary folder next to ``OUT`` and renamed at the end; an earlier export in
``OUT`` is replaced as a whole; a non-empty ``OUT`` that is not one is refused.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import torch

from analysis.common import to_csv, trial_dir

from ..attacks import PGD, threat_model
from ..checkpoint import library_versions, load_model, read_meta, save_model
from ..compress import export as backends
from ..compress import masks_baked
from ..compress.plain import INT_BITS, grid_bits, plain_copy
from ..config import TrialConfig
from ..data import load_dataset
from ..errors import UserError
from ..fileio import atomic_write_json, make_folder, sha256_file, temp_folder
from ..trial_status import flag_reason, row_flags
from .features import load_trial
from .model_card import file_size, model_card, now
from .verify import check_trials

FORMATS = ("onnx", "pt2", "state_dict")
REFUSED_FLAGS = ("suspect", "degenerate")  # exported only with force=True
MIN_AGREEMENT = 0.995
TRANSFER_TOLERANCE = 0.01  # accuracy (1 point)
FLOAT_SLACK = 1e-6
EXPORT_FILE, CARD_FILE, ROWS_FILE = "export.json", "model_card.json", "trials.csv"


class ExportMismatch(RuntimeError):
    """An exported file disagrees with rcsweep's model (module docstring); the message names it."""


def check_out(out: Path) -> None:
    """A UserError unless ``out`` is new, empty, or an earlier rcsweep export (it holds ``export.json``)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_export(out):
        raise UserError(f"--out {out} holds other files and is not an earlier rcsweep export (no {EXPORT_FILE}); "
                        "choose a new or empty folder")


def _is_export(out: Path) -> bool:
    try:
        return json.loads((out / EXPORT_FILE).read_text()).get("format") == "rcsweep-export"
    except (OSError, ValueError, AttributeError):
        return False


def check_models(folder, rows: pd.DataFrame) -> None:
    """A UserError naming the first chosen trial whose model.pt does not match its recorded sha256."""
    for tid in rows["trial_id"]:
        pt, meta = read_meta(trial_dir(folder, tid))
        if meta.get("sha256") and sha256_file(pt) != meta["sha256"]:
            raise UserError(f"{pt} is corrupted: its sha256 does not match model.json; nothing exported")


def check_flags(rows: pd.DataFrame, force: bool) -> None:
    """A UserError naming the first trial flagged suspect or degenerate, unless ``force``."""
    for _, r in rows.iterrows():
        bad = [f for f in row_flags(r) if f in REFUSED_FLAGS]
        if bad and not force:
            raise UserError(f"trial {r['trial_id']!r} is flagged {flag_reason(r, bad[0])}; "
                            "export it anyway with --force")


def export_trials(folder, rows: pd.DataFrame, out, formats=("onnx",), force: bool = False, n_examples=None,
                  device="cpu", data_dir=None, on_done=None) -> Path:
    """Export every trial in ``rows`` (results.csv rows) to ``out`` in ``formats`` (module
    docstring); ``on_done(card)`` after each. Bad input (a trial unfinished, without a model,
    flagged without ``force``; an unusable ``out``; an unknown format) raises UserError before
    anything is written; a disagreeing file raises :class:`ExportMismatch`. Returns ``out``."""
    out, formats = Path(out), list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"unknown export format {unknown[0]!r}; use one or more of {', '.join(FORMATS)}")
    if "onnx" in formats:
        backends.require_onnx()
    check_out(out)
    rows = rows.drop_duplicates("trial_id")
    if not len(rows):
        raise UserError(f"{folder}: no trials to export")
    check_trials(folder, rows, "export", "exported")
    check_models(folder, rows)
    check_flags(rows, force)
    make_folder(out.parent, "--out")
    stage = temp_folder(out.parent, f".{out.name}.export-")
    try:
        for _, r in rows.iterrows():
            card = export_trial(folder, r, stage / str(r["trial_id"]), formats, n_examples, device, data_dir)
            card["forced"] = bool(force and any(f in REFUSED_FLAGS for f in row_flags(r)))
            atomic_write_json(stage / str(r["trial_id"]) / CARD_FILE, card)
            if on_done is not None:
                on_done(card)
        to_csv(rows, stage / ROWS_FILE)
        atomic_write_json(stage / EXPORT_FILE, {"format": "rcsweep-export", "source": str(Path(folder).resolve()),
                                                "formats": formats, "trials": [str(t) for t in rows["trial_id"]],
                                                "exported_at": now(), "versions": library_versions()})
        _replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out


def _replace(stage: Path, out: Path) -> None:
    """Put ``stage`` at ``out``; an earlier export (or empty folder) there is removed only after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{stage.name}"
        out.rename(old)
    stage.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_trial(folder, row, dest: Path, formats, n_examples=None, device="cpu", data_dir=None) -> dict:
    """Write one trial's files into ``dest`` and check each (module docstring); returns its card
    (without ``forced``)."""
    tid = str(row["trial_id"])
    model, p = load_trial(folder, tid)
    model.to(device)
    x, y = load_dataset(p["dataset"], "test", data_dir=data_dir, test_size=p["test_size"])
    x, y = x[:n_examples], y[:n_examples]
    torch.manual_seed(p["seed"])
    x_adv = PGD(threat_model(p["norm"], p["eps_eval"]), steps=p["eval_steps"])(model, x.to(device), y.to(device))
    reference = {"x": x, "y": y, "x_adv": x_adv.cpu(), "pred": _predict(model, x, device),
                 "pred_adv": _predict(model, x_adv, device)}
    dest.mkdir(parents=True)
    model.cpu()
    example = x[:2].cpu()
    files, skipped = {}, {}
    for fmt in formats:
        for name, write, run, precision, optional in _artifacts(fmt, model, folder, tid):
            path = dest / name
            info = write(path, example)
            check = agreement(run(path), reference)
            entry = {"format": fmt, **precision, **info, **file_size(path), "agreement": check}
            if check["passed"]:
                files[name] = entry
                continue
            if not optional:
                raise ExportMismatch(f"trial {tid!r}: {name} disagrees with rcsweep's model: {check['detail']}; "
                                     "nothing exported")
            path.unlink()
            skipped[name] = (f"not written: {check['detail']} (onnxruntime runs the integer graph its own way: it "
                             "quantizes the float bias to int32 at input x weight scale, which rcsweep keeps float)")
    return model_card(folder, row, p, model, files, skipped)


def _artifacts(fmt: str, model, folder, tid: str):
    """``(file name, write(path, example) -> info, runner(path) -> run, precision, optional)`` for one format."""
    wbits, abits = grid_bits(model)
    grid = {"weights": "float32" if wbits >= 32 else f"float32 holding {wbits}-bit grid values (per channel)",
            "activations": "float32" if abits >= 32 else f"float32, rounded to a {abits}-bit grid by ops in the graph"}
    if fmt == "onnx":
        plain = plain_copy(model, "float")
        yield "model.onnx", lambda path, ex: backends.write_onnx(plain, ex, path), backends.onnx_runner, grid, False
        if wbits <= INT_BITS or abits <= INT_BITS:
            integer = plain_copy(model, "integer")
            qdq = {"weights": f"int8 codes of the {wbits}-bit grid x float scale per channel (DequantizeLinear)"
                   if wbits <= INT_BITS else grid["weights"],
                   "activations": f"uint8 codes of the {abits}-bit grid (QuantizeLinear / DequantizeLinear)"
                   if abits <= INT_BITS else grid["activations"]}
            yield ("model.qdq.onnx", lambda path, ex: backends.write_onnx(integer, ex, path), backends.onnx_runner,
                   qdq, True)
    elif fmt == "pt2":
        plain = plain_copy(model, "float")
        yield "model.pt2", lambda path, ex: backends.write_pt2(plain, ex, path), backends.pt2_runner, grid, False
    else:
        sd = {**grid, "activations": grid["activations"] if abits >= 32 else
              f"ranges of the {abits}-bit grids in act_quant.lo / act_quant.hi (rcsweep's fake quantizers)"}
        yield "model.pt", lambda path, ex: _write_state_dict(model, folder, tid, path), _state_dict_runner, sd, False


def _write_state_dict(model, folder, tid: str, path: Path) -> dict:
    _, meta = read_meta(trial_dir(folder, tid))
    save_model(model, path.parent, TrialConfig.from_flat(meta["config"]),
               {"compression": masks_baked(meta.get("compression", {})), "exported_from": tid})
    return {"load": "rcsweep.load_model(folder); its tensors: torch.load(path, weights_only=True)"}


def _state_dict_runner(path):
    model = load_model(path.parent)
    return lambda x: _logits(model, x, "cpu")


def _logits(model, x, device) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(xb.to(device)).cpu() for xb in x.split(backends.BATCH)])


def _predict(model, x, device) -> torch.Tensor:
    return _logits(model, x, device).argmax(1)


def agreement(run, ref: dict) -> dict:
    """How an exported model (``run(images) -> logits``) agrees with rcsweep's (``ref``: images ``x``,
    labels ``y``, PGD examples ``x_adv`` crafted on rcsweep's model, its predictions ``pred`` and
    ``pred_adv``): the share of equal predictions on ``x`` and both robust accuracies on ``x_adv``."""
    pred, pred_adv = run(ref["x"]).argmax(1), run(ref["x_adv"]).argmax(1)
    agree = (pred == ref["pred"]).float().mean().item()
    robust_ref = (ref["pred_adv"] == ref["y"]).float().mean().item()
    robust = (pred_adv == ref["y"]).float().mean().item()
    why = []
    if agree < MIN_AGREEMENT - FLOAT_SLACK:
        why.append(f"same prediction on {agree:.1%} of {len(pred)} test images (< {MIN_AGREEMENT:.1%})")
    if robust - robust_ref > TRANSFER_TOLERANCE + FLOAT_SLACK:
        why.append(f"robust accuracy {robust:.3f} on PGD examples crafted on rcsweep's model, which scores "
                   f"{robust_ref:.3f} (more than {TRANSFER_TOLERANCE:.0%} higher)")
    return {"examples": len(pred), "agreement": agree, "agreement_adversarial": (pred_adv == ref["pred_adv"]).float()
            .mean().item(), "robust_acc_rcsweep": robust_ref, "robust_acc_exported": robust,
            "passed": not why, "detail": "; ".join(why)}


