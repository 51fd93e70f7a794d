"""The GPU check (issue 19): one script, four stages, about 5 minutes on one H200.

1. ``tests``: the ``gpu``-marked tests (``pytest -m gpu tests/test_gpu.py``).
2. ``pgd``: cost of k-step PGD against k forward+backward passes (as bench_pgd.py part 1), on the
   FashionMNIST net and a full-width ResNet-18, fp32 and bf16 autocast, ResNet-18 also without
   ``channels_last``.
3. ``concurrent``: 4 ``rcsweep trial`` processes on FashionMNIST sharing the GPU: trials per hour,
   each trial's peak GPU memory (torch's, from its record) and the GPU's (nvidia-smi, if present).
4. ``cifar``: the CIFAR-10 cells of benchmarks/gpu_cifar10_cells.py at full ResNet-18 width, cut to
   fit (training subset, epochs); cells needing a package that is missing are skipped with a line.

Each stage writes ``OUT/<n>_<stage>.json`` as soon as it ends, and ``OUT/summary.json`` after
each; ``OUT/0_env.json`` first. Stages share a time budget (``--budget-s``) and each has a cap, so a
slow stage cannot starve the rest. It runs on a bare GPU machine (torch, numpy, pandas, pyyaml,
scikit-learn, pytest; no Ray, Optuna or Torch-Pruning): nothing it imports needs them.

Here, first (the datasets cut to travel within the 64 MiB the machine is sent)::

    python3 benchmarks/gpu_check.py --prepare-data .data

Then on the GPU machine, from the repository root (README, "GPU check")::

    python3 benchmarks/gpu_check.py --data-dir .data --out $OUT

``--smoke`` runs every stage tiny on the CPU (digits for stage 3, synthetic CIFAR-format images
for stage 4): a check of the script, not a result.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from gpu_cifar10_cells import installed  # noqa: E402 - needs the path above

STAGES = ("tests", "pgd", "concurrent", "cifar")
CAP_S = {"tests": 60, "pgd": 40, "concurrent": 75, "cifar": 110}  # each stage's share of the ~5 minutes
CONCURRENT = 4


def env_info() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "gpu_memory_bytes": torch.cuda.get_device_properties(0).total_memory if cuda else None,
            "cpus": os.cpu_count(), **{f"has_{m}": installed(m) for m in ("ray", "optuna", "torch_pruning",
                                                                          "torchattacks")}}


def _child_env(threads: int | None = None) -> dict:
    """The environment of a child process: this checkout importable; ``threads`` torch threads."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return {**env, "OMP_NUM_THREADS": str(threads)} if threads else env


def _tail(text: str, n: int = 3000) -> str:
    return text[-n:]


# -- stage 1 ---------------------------------------------------------------------------------
def stage_tests(args, work: Path, limit: float) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-o", "addopts=",
           str(ROOT / "tests" / "test_gpu.py")]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit, env=_child_env())
    except subprocess.TimeoutExpired as e:
        return {"ok": False, "note": f"timed out after {limit:.0f} s",
                "output": _tail((e.stdout or b"").decode(errors="replace"))}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return {"ok": proc.returncode == 0, "rc": proc.returncode, "summary": lines[-1] if lines else "",
            "output": _tail(proc.stdout + proc.stderr)}


# -- stage 2 ---------------------------------------------------------------------------------
def stage_pgd(args, work: Path, limit: float) -> dict:
    import torch

    from bench_pgd import pgd_cost
    from rcsweep.data import dataset_info
    from rcsweep.device import to_device_
    from rcsweep.models import build_model

    device = torch.device("cpu" if args.smoke else "cuda")
    steps, repeats = (3, 1) if args.smoke else (10, 3)
    cases = [("fmnist_net", "fashion_mnist", 1.0, 16 if args.smoke else 512),
             ("resnet18", "cifar10", 0.125 if args.smoke else 1.0, 4 if args.smoke else 256)]
    started, rows = time.perf_counter(), []
    for model_name, dataset, width, batch in cases:
        info = dataset_info(dataset)
        torch.manual_seed(0)
        x = torch.rand(batch, *info.shape, device=device)
        y = torch.randint(0, info.num_classes, (batch,), device=device)
        # None: the default, channels_last on CUDA; False: without it, to see what it brings
        layouts = (None, False) if model_name == "resnet18" and device.type == "cuda" else (None,)
        for channels_last in layouts:
            model = to_device_(build_model(model_name, info, width), device, channels_last).eval()
            for bf16 in (False, True):
                if time.perf_counter() - started > limit:
                    return {"ok": False, "note": f"stopped at the {limit:.0f} s limit", "cases": rows}
                cost = pgd_cost(model, x, y, eps=8 / 255, steps=steps, repeats=repeats, device=device, bf16=bf16)
                rows.append({"model": model_name, "width": width, "device": str(device),
                             "channels_last": device.type == "cuda" if channels_last is None else channels_last,
                             **cost, "pgd_ms_per_example": 1e3 * cost["pgd_s"] / batch})
                print(f"  pgd {model_name} bf16={bf16} channels_last={rows[-1]['channels_last']}: "
                      f"ratio {cost['ratio']:.3f}, {rows[-1]['pgd_ms_per_example']:.3f} ms/example", flush=True)
    return {"ok": all(r["ratio"] <= 1.10 for r in rows) or args.smoke, "target": "ratio <= 1.10", "cases": rows}


# -- stage 3 ---------------------------------------------------------------------------------
def _concurrent_sweep(args) -> dict:
    fixed = ({"dataset": "digits", "train_size": 600, "test_size": 40, "pretrain_epochs": 5, "batch_size": 16,
              "eval_steps": 2, "eval_restarts": 1, "attack_steps": 2} if args.smoke else
             {"dataset": "fashion_mnist", "train_size": 10000, "test_size": 1000, "pretrain_epochs": 4,
              "batch_size": 128, "attack_steps": 5})
    fixed.update(eps_eval=0.1, compression="quant", weight_bits=4, act_bits=32, finetune="adversarial",
                 finetune_epochs=1, precision=args.precision)
    return {"name": "gpu_check", "fixed": fixed, "space": {"seed": {"choice": list(range(CONCURRENT))}}}


def _gpu_memory_used_mib() -> float | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
        return float(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def stage_concurrent(args, work: Path, limit: float) -> dict:
    import yaml

    sweep = work / "concurrent.yaml"
    sweep.write_text(yaml.safe_dump(_concurrent_sweep(args)))
    device = "cpu" if args.smoke else "cuda"
    data = ["--data-dir", str(args.data_dir)] if args.data_dir else []
    baseline, samples, stop = _gpu_memory_used_mib(), [], threading.Event()

    def sample():
        while not stop.wait(0.5):
            samples.append(_gpu_memory_used_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    procs = [subprocess.Popen([sys.executable, "-m", "rcsweep.cli", "trial", str(sweep), "--set", f"seed={i}",
                               "--device", device, "--out", str(work / f"trial{i}"), *data], cwd=ROOT,
                              env=_child_env(max(1, (os.cpu_count() or 1) // CONCURRENT)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(CONCURRENT)]
    outputs, timed_out = [], False
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=max(1.0, limit - (time.time() - t0)))[0])
        except subprocess.TimeoutExpired:
            timed_out = True
            p.kill()
            outputs.append(p.communicate()[0])
    wall = time.time() - t0
    stop.set()
    sampler.join()
    trials = []
    for i, p in enumerate(procs):
        path = work / f"trial{i}" / "record.json"
        if p.returncode == 0 and path.is_file():
            r = json.loads(path.read_text())
            rt, m = r["runtime"], r["metrics"]
            trials.append({"seed": i, "seconds": rt["ended"] - rt["started"], "device": rt["device"],
                           "peak_gpu_memory_bytes": rt["peak_gpu_memory_bytes"], "clean_acc": m["clean_acc"],
                           "robust_acc": m["robust_acc"]})
        else:
            trials.append({"seed": i, "rc": p.returncode, "output": _tail(outputs[i], 1500)})
    done = [t for t in trials if "seconds" in t]
    used = [s for s in samples if s is not None]
    gpu_mib = (max(used) - baseline) if used and baseline is not None else None
    return {"ok": len(done) == CONCURRENT and not timed_out, "wall_s": wall, "trials_finished": len(done),
            "trials_per_hour": len(done) * 3600 / wall if done else 0.0, "sweep": _concurrent_sweep(args),
            "gpu_memory_mib_all_trials_nvidia_smi": gpu_mib,
            "gpu_memory_mib_per_trial_nvidia_smi": gpu_mib / CONCURRENT if gpu_mib is not None else None,
            "memory_note": "peak_gpu_memory_bytes: torch's reserved peak per trial, without its CUDA context; "
                           "nvidia-smi: the whole GPU's use above the start, contexts included",
            "trials": trials, **({"note_timeout": f"cut at {limit:.0f} s"} if timed_out else {})}


# -- stage 4 ---------------------------------------------------------------------------------
def stage_cifar(args, work: Path, limit: float) -> dict:
    out = work / "cifar10"
    if args.smoke:
        data_dir = work / "synthetic"
        write_synthetic_cifar(data_dir / "cifar-10-batches-bin", n_train=1200, n_test=100)
        sizes = ["--smoke", "--pretrain", "standard", "--width", "0.0625", "--train-size", "320", "--test-size", "32",
                 "--batch-size", "32"]
    else:
        data_dir = args.data_dir
        sizes = ["--pretrain-epochs", "4", "--finetune-epochs", "1", "--train-size", "5000", "--test-size", "500",
                 "--precision", args.precision]
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_cifar10_cells.py"), "--out", str(out), *sizes,
           *(["--data-dir", str(data_dir)] if data_dir else [])]
    timed_out = False
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit, env=_child_env())
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        timed_out, output = True, (e.stdout or b"").decode(errors="replace")
    log = json.loads((out / "gpu_log.json").read_text()) if (out / "gpu_log.json").is_file() else {}
    cells = log.get("trials", [])
    ran = [c for c in cells if "seconds" in c]
    return {"ok": bool(ran) and not timed_out and not any("failed" in c for c in cells),
            "cells_run": len(ran), "cells_skipped": [c for c in cells if "skipped" in c],
            "cells_failed": [c for c in cells if "failed" in c], "log": log, "output": _tail(output),
            **({"note": f"cut at {limit:.0f} s"} if timed_out else {})}


# -- data ------------------------------------------------------------------------------------
def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file (MNIST's format), gzipped."""
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_cifar_bin(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """CIFAR-10's binary format: per image one label byte, then 3x32x32 channel-planar pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.concatenate([np.asarray(y, dtype=np.uint8)[:, None], x.reshape(len(x), -1).astype(np.uint8)], 1)
    rows.tofile(path)


def write_synthetic_cifar(folder: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """CIFAR-format images a tiny net learns in a few epochs: one fixed random template per class
    plus noise (for ``--smoke``, where no real CIFAR-10 is assumed)."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 3, 32, 32))
    for name, n in (("data_batch_1.bin", n_train), ("test_batch.bin", n_test)):
        y = rng.integers(0, 10, n)
        x = np.clip(templates[y] + rng.integers(-30, 31, (n, 3, 32, 32)), 0, 255)
        write_cifar_bin(folder / name, x, y)


def prepare_data(out: Path, fmnist_train: int, cifar_train: int, cifar_src: Path) -> dict:
    """Cut FashionMNIST (its first ``fmnist_train`` training images, the whole test set) and
    CIFAR-10 (its first ``cifar_train`` training images, the test images found) from where
    rcsweep finds them into ``out``, in the layouts its loaders read."""
    from rcsweep.data import dataset_info, default_data_dir

    xf, yf, xft, yft = dataset_info("fashion_mnist").loader(default_data_dir())
    raw = out / "FashionMNIST" / "raw"
    for name, arr in (("train-images-idx3-ubyte", xf[:fmnist_train]), ("train-labels-idx1-ubyte", yf[:fmnist_train]),
                      ("t10k-images-idx3-ubyte", xft), ("t10k-labels-idx1-ubyte", yft)):
        write_idx_gz(raw / f"{name}.gz", arr.astype(np.uint8))
    xc, yc, xct, yct = dataset_info("cifar10").loader(cifar_src)
    write_cifar_bin(out / "cifar-10-batches-bin" / "data_batch_1.bin", xc[:cifar_train], yc[:cifar_train])
    write_cifar_bin(out / "cifar-10-batches-bin" / "test_batch.bin", xct, yct)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"folder": str(out), "fashion_mnist_train": min(fmnist_train, len(xf)), "fashion_mnist_test": len(xft),
            "cifar10_train": min(cifar_train, len(xc)), "cifar10_test": len(xct), "mib": size / 2 ** 20}


# -- driver ----------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                    help="results folder (default $OUT)")
    ap.add_argument("--data-dir", type=Path, help="holds FashionMNIST/raw and cifar-10-batches-bin (--prepare-data)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    ap.add_argument("--budget-s", type=float, default=None, help="all stages together (default 290; --smoke 1200)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="training in stages 3 and 4")
    ap.add_argument("--smoke", action="store_true", help="every stage tiny, on the CPU")
    ap.add_argument("--prepare-data", type=Path, metavar="DIR", help="write the cut datasets to DIR and stop")
    ap.add_argument("--fmnist-train", type=int, default=20000)
    ap.add_argument("--cifar-train", type=int, default=6000)
    ap.add_argument("--cifar-src", type=Path, default=ROOT.parent / "shared" / "datasets",
                    help="folder holding cifar-10-batches-bin (default ../shared/datasets)")
    args = ap.parse_args(argv)
    args.budget_s = args.budget_s or (1200.0 if args.smoke else 290.0)
    if args.prepare_data:
        print(json.dumps(prepare_data(args.prepare_data, args.fmnist_train, args.cifar_train, args.cifar_src)))
        return 0
    stages = [s for s in args.stages.split(",") if s]
    bad = [s for s in stages if s not in STAGES]
    if bad or args.out is None:
        print(f"gpu_check: {'unknown stage ' + bad[0] if bad else '--out (or $OUT) is needed'}", file=sys.stderr)
        return 2
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --smoke for the CPU check of the script", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "0_env.json").write_text(json.dumps(env_info(), indent=1))
    work = Path(tempfile.mkdtemp(prefix="rcsweep-gpu-check-"))
    summary, started = {}, time.perf_counter()
    try:
        for n, stage in enumerate(STAGES, 1):
            if stage not in stages:
                continue
            left = args.budget_s - (time.perf_counter() - started)
            if left < 10:
                summary[stage] = {"ok": False, "note": f"skipped: {left:.0f} s of the budget left"}
            else:
                cap = min(CAP_S[stage] * (4 if args.smoke else 1), left)  # a loaded CPU is slower than a GPU
                print(f"[{n}] {stage} (at most {cap:.0f} s)", flush=True)
                t = time.perf_counter()
                result = globals()[f"stage_{stage}"](args, work, cap)
                result["seconds"] = time.perf_counter() - t
                (args.out / f"{n}_{stage}.json").write_text(json.dumps(result, indent=1, default=float))
                summary[stage] = {k: result[k] for k in ("ok", "seconds", "note", "summary", "trials_per_hour",
                                                         "cells_run") if k in result}
            print(f"[{n}] {stage}: {json.dumps(summary[stage], default=float)}", flush=True)
            (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(s["ok"] for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
