"""Export backends: a plain model (:func:`.plain.plain_copy`) written as a file that runs without
rcsweep, and the runners that read such files back (used by ``rcsweep export``'s agreement check).

- ONNX (:func:`write_onnx`): ``torch.onnx.export(..., dynamo=True)``, torch's exporter built on
  ``torch.export`` and onnxscript (the TorchScript-based one is deprecated in torch 2.x), at the
  exporter's default opset (recorded by the caller); run with onnxruntime (:func:`onnx_runner`).
- pt2 (:func:`write_pt2`): a ``torch.export`` program saved with ``torch.export.save``; load it with
  ``torch.export.load(path).module()`` (:func:`pt2_runner`). It needs torch, not rcsweep.

Both take one input, ``images``: float32 (N, C, H, W) in [0, 1], normalisation inside the graph,
N dynamic; and give ``logits`` (N, classes). The exporters' stack traces (file paths of the machine
that exported) are left out of both. The ONNX packages are an optional dependency
(``pip install 'rcsweep[export]'``); :func:`require_onnx` says so in one line.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import UserError

INPUT, OUTPUT = "images", "logits"
BATCH = 512  # images per run of an exported model


def require_onnx() -> None:
    """Import onnx, onnxscript and onnxruntime, or raise a one-line UserError saying how to install them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise UserError(f"ONNX export needs onnx, onnxscript and onnxruntime ({e.name} is not installed): "
                        "pip install 'rcsweep[export]'") from None


def _dynamic_batch() -> dict:
    return {"x": {0: torch.export.Dim("batch", min=1)}}


def write_onnx(model: nn.Module, example: torch.Tensor, path) -> dict:
    """Write ``model`` (plain, CPU, eval mode) to ``path`` as ONNX; ``example``: images (n, C, H, W)
    that fix the shape but for the batch. Returns ``{"opset": int, "exporter": str}``."""
    import onnx
    import onnxscript

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on deprecated torch.export internals
        torch.onnx.export(model, (example.clone(),), str(path), dynamo=True, dynamic_shapes=_dynamic_batch(),
                          input_names=[INPUT], output_names=[OUTPUT], external_data=False, verbose=False)
    proto = onnx.load(str(path))
    for node in proto.graph.node:
        keep = [m for m in node.metadata_props if m.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.save(proto, str(path))
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {"opset": int(opset), "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}, "
                                             f"onnxscript {onnxscript.__version__}"}


def write_pt2(model: nn.Module, example: torch.Tensor, path) -> dict:
    """Write ``model`` (plain, CPU, eval mode) to ``path`` as a ``torch.export`` program. Returns
    ``{"exporter": str}``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # a view (images[:2]) would be saved with its whole storage as the program's sample input
        program = torch.export.export(model, (example.clone(),), dynamic_shapes=_dynamic_batch())
    for node in program.graph.nodes:
        node.meta.pop("stack_trace", None)
    torch.export.save(program, str(path))
    return {"exporter": f"torch.export, torch {torch.__version__}"}


def onnx_runner(path) -> Callable[[torch.Tensor], torch.Tensor]:
    """``run(images) -> logits`` of an ONNX file, on onnxruntime's CPU provider (default graph
    optimisations, as a user gets them)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.from_numpy(session.run([OUTPUT], {INPUT: xb.float().cpu().numpy()})[0])
                          for xb in x.split(BATCH)])
    return run


def pt2_runner(path) -> Callable[[torch.Tensor], torch.Tensor]:
    """``run(images) -> logits`` of a saved ``torch.export`` program."""
    module = torch.export.load(str(path)).module()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([module(xb.float().cpu()) for xb in x.split(BATCH)])
    return run


def stored_tensors(path) -> dict[str, tuple[str, int]]:
    """``{name: (dtype, elements)}`` of the weights and buffers stored in an exported file
    (``.onnx`` initializers, a ``.pt2`` program's state_dict and constants, a ``.pt`` state_dict)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        return {t.name: (onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name, int(torch.Size(t.dims).numel()))
                for t in onnx.load(str(path)).graph.initializer}
    if path.suffix == ".pt2":
        program = torch.export.load(str(path))
        tensors = {**program.state_dict, **{k: v for k, v in program.constants.items() if isinstance(v, torch.Tensor)}}
    else:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    return {k: (str(v.dtype).removeprefix("torch."), v.numel()) for k, v in tensors.items()}
