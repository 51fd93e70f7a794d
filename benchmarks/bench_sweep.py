"""Sweep-engine overheads (issue 4), figures for benchmarks/RESULTS.md, section "Sweep engine".

1. quickstart: wall time of ``sweeps/quickstart.yaml`` against
   1.25 x (the trials' own stage time / concurrency) + Ray start-up (+ shut-down). A trial's own
   stage time is its compress + fine-tune + evaluate time, plus the training time of each shared
   pretrained model once (time spent waiting for one is not counted); Ray start-up is the time
   from the call to the first trial's first stage (Ray, Tune, actor processes and their imports,
   data), shut-down from the last record written to the call's return.
2. sharing: a 12-trial FashionMNIST-subset sweep (20 pretraining, 3 fine-tuning epochs) with
   shared pretraining, against the same 12 trial configurations run with ``rcsweep.run_trial``
   (each pretrains its own model), two at a time like the sweep, without Ray (so the baseline
   carries no Ray overhead at all). The sweep says ``pretrain_resources: {cpu: 2}``
   (``--pretrain-cpus``; 1 leaves it out): the shared pretraining borrows the CPU of the trial
   waiting for it; the result gives its seconds and the threads it ran with. Measure on an idle
   machine: where other work keeps the cores busy, two threads can be far slower than one.
3. memory: the driver's resident memory after 20 and after 200 cheap trials (no pretraining
   epochs, a 20-image evaluation), sampled every 0.2 s.

    python benchmarks/bench_sweep.py [--part quickstart|sharing|memory|all] [--work DIR] [--smoke-test]
                                     [--pretrain-cpus N]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _own_stage_time(folder: Path) -> tuple[float, int]:
    """(sum of the trials' own stage seconds, number of trials), pretraining counted once per model."""
    from rcsweep.results import load_results

    df = load_results(folder).query("status == 'finished'")
    stages = df[["time_compress_s", "time_finetune_s", "time_evaluate_s"]].sum().sum()
    pretraining = sum(json.loads(p.read_text())["seconds"] for p in (folder / "pretrained").glob("*/pretrain.json"))
    return float(stages + pretraining), len(df)


def _work_span(folder: Path) -> tuple[float, float]:
    """(when the first trial began its own work: its pretraining started; when the last trial
    finished: its record was written)."""
    starts = [json.loads(line)["time"] for p in (folder / "pretrained").glob("*/log.jsonl")
              for line in p.read_text().splitlines()]
    ends = [(p / "record.json").stat().st_mtime for p in (folder / "trials").iterdir() if (p / "record.json").is_file()]
    return min(starts), max(ends)


def bench_quickstart(work: Path, smoke: bool) -> dict:
    from rcsweep.sweep.folder import read_spec
    from rcsweep.sweep.runner import run_sweep

    sweep = ROOT / "sweeps" / "quickstart.yaml"
    t0 = time.time()
    out = run_sweep(str(sweep), storage=work, num_samples=3 if smoke else None, quiet=True)
    t_end = time.time()
    own, n = _own_stage_time(out.folder)
    first, last = _work_span(out.folder)
    concurrency = read_spec(out.folder).max_concurrent
    startup, shutdown = first - t0, t_end - last
    return {"trials": n, "wall_s": t_end - t0, "own_stage_s": own, "concurrency": concurrency,
            "ray_startup_s": startup, "ray_shutdown_s": shutdown, "trials_span_s": last - first,
            "bound_with_startup_s": 1.25 * own / concurrency + startup,
            "bound_with_startup_and_shutdown_s": 1.25 * own / concurrency + startup + shutdown,
            "ok": t_end - t0 <= 1.25 * own / concurrency + startup + shutdown}


SHARING = {"name": "sharing", "description": "shared pretraining benchmark",
           "fixed": {"dataset": "fashion_mnist", "train_size": 1000, "test_size": 100, "batch_size": 64,
                     "pretrain_epochs": 20, "finetune_epochs": 3, "eps_eval": 0.1, "eval_steps": 5,
                     "eval_restarts": 1},
           "space": {"compression": {"choice": ["prune_structured"]}, "sparsity": {"uniform": [0.1, 0.9]},
                     "finetune": {"choice": ["none", "clean"]}},
           "search": "random", "num_samples": 12, "max_concurrent": 2, "search_seed": 0}


def _run_trials(flat_params: list) -> None:
    import torch

    from rcsweep import TrialConfig, run_trial

    from rcsweep.errors import TrainingCollapsed

    torch.set_num_threads(1)
    for params in flat_params:
        try:
            run_trial(TrialConfig.from_flat(params), device="cpu")
        except TrainingCollapsed:  # as in the sweep: the same work, then the same collapse
            pass


def bench_sharing(work: Path, smoke: bool, pretrain_cpus: int = 2) -> dict:
    from rcsweep.sweep.runner import run_sweep

    sweep = json.loads(json.dumps(SHARING))
    if pretrain_cpus > 1:
        sweep["pretrain_resources"] = {"cpu": pretrain_cpus}
    if smoke:
        sweep["fixed"].update(train_size=300, pretrain_epochs=4, finetune_epochs=1)
        sweep["num_samples"] = 4
    t0 = time.time()
    out = run_sweep(sweep, storage=work, quiet=True)
    shared = time.time() - t0
    pretrainings = [json.loads(line) for p in (out.folder / "trials").glob("*/stages.jsonl")
                    for line in p.read_text().splitlines() if '"pretrain"' in line]
    # every searched configuration the sweep ran, collapsed ones included: the baseline does the
    # same work (a collapse is deterministic: it pretrains, fine-tunes and collapses there too)
    from rcsweep import TrialConfig

    params = [TrialConfig.from_row(row).to_flat() for _, row in out.results().iterrows()]
    t0 = time.time()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_run_trials, args=(params[i::2],)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    per_trial = time.time() - t0
    return {"trials": len(params), "shared_s": shared, "per_trial_s": per_trial, "speedup": per_trial / shared,
            "pretrain_resources": sweep.get("pretrain_resources"),
            "shared_pretraining": [{k: e.get(k) for k in ("seconds", "threads")} for e in pretrainings],
            "ok": per_trial / shared >= 3, "baseline_exit_codes": [p.exitcode for p in procs]}


def bench_memory(work: Path, smoke: bool) -> dict:
    from rcsweep.results import read_rows
    from rcsweep.sweep.runner import run_sweep

    total, first = (30, 5) if smoke else (200, 20)
    sweep = {"name": "memory", "fixed": {"dataset": "digits", "pretrain_epochs": 0, "finetune": "clean",
                                         "finetune_epochs": 0, "test_size": 20, "eval_steps": 1, "eval_restarts": 1},
             "space": {"finetune_lr": {"loguniform": [1e-4, 1e-1]}}, "num_samples": total, "max_concurrent": 2}
    samples, stop = [], threading.Event()
    folder = work / "memory"

    def sample():
        while not stop.is_set():
            rows = read_rows(folder) if (folder / "results.csv").is_file() else []
            samples.append((sum(r["status"] == "finished" for r in rows), _rss_mb()))
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.time()
    out = run_sweep(sweep, storage=work, quiet=True)
    wall = time.time() - t0
    time.sleep(0.5)  # the last samples: every trial finished, the driver still alive
    stop.set()
    thread.join()
    at_first = next(rss for n, rss in samples if n >= first)
    at_last = max(rss for n, rss in samples if n >= out.finished)
    curve = {n: max(rss for k, rss in samples if k == n) for n in range(0, total + 1, total // 10)
             if any(k == n for k, _ in samples)}
    return {"trials": out.finished, "wall_s": wall, f"rss_mb_at_{first}": at_first, f"rss_mb_at_{total}": at_last,
            "growth_mb": at_last - at_first, "rss_mb_by_finished_trials": curve, "ok": at_last - at_first <= 50}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="all", choices=("quickstart", "sharing", "memory", "all"))
    ap.add_argument("--work", default="/tmp/rcsweep-bench-sweep", help="scratch folder (emptied first)")
    ap.add_argument("--smoke-test", action="store_true", help="tiny sizes: checks the script, not the figures")
    ap.add_argument("--pretrain-cpus", type=int, default=2,
                    help="sharing: pretrain_resources.cpu of the sweep (default 2; 1 leaves the option out)")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    parts = ("quickstart", "sharing", "memory") if args.part == "all" else (args.part,)
    results = {}
    for part in parts:
        extra = {"pretrain_cpus": args.pretrain_cpus} if part == "sharing" else {}
        results[part] = globals()[f"bench_{part}"](work / part, args.smoke_test, **extra)
        print(json.dumps({part: results[part]}, default=float), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=2, default=float))
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
