"""Where a trial runs and how: the device (asked for, or placed by Ray), bf16 autocast,
``channels_last``, and evaluation batches sized to the device. Torch only: the sweep layer hands in
the GPU ids Ray assigned, so this module (and every stage using it) runs and is tested without Ray.
Nothing here touches CUDA at import time.

- :func:`parse_device`: ``cpu``, ``cuda``, ``cuda:N`` checked against this machine (a device that
  does not exist is a one-line :class:`~rcsweep.errors.DeviceUnavailable`).
- :func:`placement_device`: the device of a trial Ray gave GPUs to. A node can *declare* GPUs it
  does not have (``ray start --num-gpus``); a trial placed there fails in one line naming the node
  and the sweep-file option ``gpu_fallback: cpu``, or, with that option, runs on the CPU and says
  so in its record. It never runs on the CPU silently.
- :func:`autocast`: bf16 autocast for ``precision: bf16`` (training and its attack only; the
  evaluation stays float32, without TF32 either, :func:`float32`).
- :func:`to_device_`: a model moved to its device, ``channels_last`` on CUDA (cuDNN's fast layout
  for 2-D convolutions; on the CPU the tiny models here gain nothing, so it stays off by default).
- :func:`eval_batch_size`: examples per attacked batch, 256 on the CPU, on a GPU as many as a
  quarter of its free memory holds (other trials may share the GPU).
"""
from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from typing import Sequence

import torch
from torch import nn

from .errors import DeviceUnavailable

CPU_EVAL_BATCH = 256
EVAL_BATCH_RANGE = (256, 8192)  # on a GPU: a power of two in this range


def cuda_usable() -> bool:
    """Whether this process can run on a CUDA device (a CUDA build, a driver, a visible device)."""
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def parse_device(spec=None, what: str = "--device") -> torch.device:
    """The device ``spec`` names (``cpu``, ``cuda``, ``cuda:N``, or a ``torch.device``), checked
    against this machine; ``None``: ``cuda`` if usable, else ``cpu``. Raises
    :class:`DeviceUnavailable` (one line, naming ``what``) for a device this process cannot use."""
    if spec is None:
        return torch.device("cuda" if cuda_usable() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceUnavailable(f"{what}: {spec!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise DeviceUnavailable(f"{what} {spec}: rcsweep runs on cpu or cuda, not {dev.type}")
    if not cuda_usable():
        why = "this torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise DeviceUnavailable(f"{what} {spec}: CUDA is not usable here ({why}); use --device cpu")
    n = torch.cuda.device_count()
    if dev.index is not None and dev.index >= n:
        raise DeviceUnavailable(f"{what} {spec}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    return dev


def placement_device(gpu_ids: Sequence, cpu_fallback: bool = False, node: str = "this node"
                     ) -> tuple[torch.device, dict]:
    """``(device, placement)`` of a trial Ray assigned the GPUs ``gpu_ids`` (``ray.get_gpu_ids()``;
    empty: a CPU trial) on ``node`` (a name for messages).

    With GPUs assigned and CUDA usable: ``cuda`` (Ray's ``CUDA_VISIBLE_DEVICES`` makes the first
    assigned GPU ``cuda:0``). With GPUs assigned and CUDA not usable (a node that declares GPUs it
    lacks): with ``cpu_fallback`` (the sweep file's ``gpu_fallback: cpu``) the CPU, said in
    ``placement["fallback"]``; without, :class:`DeviceUnavailable` in one line naming the node and
    the option. ``placement``: ``gpu_ids`` (as strings), ``device``, ``cuda_available``,
    ``fallback`` (None unless it fell back)."""
    ids = [str(i) for i in gpu_ids]
    usable = cuda_usable()
    placement = {"gpu_ids": ids, "cuda_available": usable, "fallback": None}
    if not ids:
        device = torch.device("cpu")
    elif usable:
        device = torch.device("cuda")
    elif cpu_fallback:
        device = torch.device("cpu")
        placement["fallback"] = (f"Ray assigned GPU(s) {', '.join(ids)} on node {node}, where CUDA is not usable: "
                                 f"ran on the CPU (gpu_fallback: cpu)")
    else:
        raise DeviceUnavailable(f"node {node}: Ray assigned this trial GPU(s) {', '.join(ids)}, but CUDA is not usable "
                                f"there; set 'gpu_fallback: cpu' in the sweep file to run such trials on the CPU, or "
                                f"declare no GPUs on that node")
    placement["device"] = str(device)
    return device, placement


def autocast(device, bf16: bool):
    """The autocast context of training: bf16 on ``device``'s type when ``bf16`` (``precision:
    bf16``), else nothing. bf16 keeps float32's exponent range, so it needs no loss scaling."""
    if not bf16:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def rng_kept(device=None):
    """A context after which torch's random state is as it was before it: the CPU generator's, and
    ``device``'s when it is a CUDA device (``torch.random.fork_rng``). For measurements taken during
    a trial (early stopping's rung screening and sizes, a throwaway model built to count channels,
    latency on random inputs, an attack with its own seed): a trial measured along the way must train
    and be evaluated exactly as one that is not."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    return torch.random.fork_rng(devices=cuda)


@contextmanager
def float32(device):
    """A context in which every op runs in full float32 (evaluation): autocast off even inside an
    autocast region, and on CUDA no TF32 (cuDNN convolutions use it by default on Ampere and later:
    10 bits of mantissa, the same rounding that masks gradients as bf16's, only milder)."""
    dev = torch.device(device)
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        if dev.type == "cuda":
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        with torch.autocast(dev.type, enabled=False):
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def to_device_(model: nn.Module, device, channels_last: bool | None = None) -> nn.Module:
    """Move ``model`` to ``device`` in place (and return it); its 4-D weights in ``channels_last``
    when ``channels_last`` (default: on CUDA only) and it has 2-D convolutions. Outputs are those of
    the contiguous model up to float rounding; ``.to(device)`` later keeps the layout."""
    dev = torch.device(device)
    if (dev.type == "cuda" if channels_last is None else channels_last) and \
            any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return model.to(device=dev, memory_format=torch.channels_last)
    return model.to(dev)


def eval_batch_size(model: nn.Module, input_shape: tuple, device, free_bytes: int | None = None) -> int:
    """Examples per attacked batch in evaluation: :data:`CPU_EVAL_BATCH` (256) on the CPU, where
    larger batches gain nothing; on a GPU the largest power of two in :data:`EVAL_BATCH_RANGE` whose
    activations (every module's output for one example, x3 for what the backward pass of the input
    gradient keeps) fit a quarter of the free memory (``free_bytes``, default: CUDA's count), the
    rest left to the trials sharing the GPU. Small models are launch-bound on a GPU below a few
    thousand examples per batch. Results do not depend on it beyond the random starts' draws."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return CPU_EVAL_BATCH
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(dev)[0]
    return fit_batch(activation_bytes(model, input_shape, dev), free_bytes)


def fit_batch(per_example_bytes: int, free_bytes: int) -> int:
    """The largest power of two in :data:`EVAL_BATCH_RANGE` with ``3 x per_example_bytes`` each in
    a quarter of ``free_bytes``."""
    lo, hi = EVAL_BATCH_RANGE
    n = free_bytes // 4 // max(1, 3 * per_example_bytes)
    return int(min(hi, max(lo, 2 ** int(math.log2(n)) if n >= 1 else lo)))


@torch.no_grad()
def activation_bytes(model: nn.Module, input_shape: tuple, device) -> int:
    """Bytes of every leaf module's float output for one example (float32)."""
    total = 0

    def hook(_, __, out):
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * 4

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was = model.training
    try:
        model.eval()
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return total


def peak_memory_bytes(device) -> int | None:
    """The most CUDA memory torch reserved on ``device`` since :func:`reset_peak_memory`; None on the
    CPU. Reserved (the caching allocator's), not allocated: what other processes cannot use. The
    CUDA context itself (a few hundred MiB per process) is not counted."""
    dev = torch.device(device)
    return int(torch.cuda.max_memory_reserved(dev)) if dev.type == "cuda" else None


def reset_peak_memory(device) -> None:
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
