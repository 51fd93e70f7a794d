"""Energy trackers on this machine, and what measuring energy costs a trial (benchmarks/RESULTS.md, *Energy*).

1. The trackers compared: one fixed CPU workload (float32 matmuls on one thread for ``--seconds``)
   measured by rcsweep's estimate (CPU seconds x ``cpu_watts``), codecarbon's offline tracker
   (process-level) and carbontracker (if installed); each one's start-up cost too.
2. The overhead: the same small digits trial run ``--pairs`` times with each meter, interleaved, in
   one process: ``estimate`` (what rcsweep uses where no counter is readable) and ``codecarbon``
   (what it uses where RAPL or NVML is: the tracker's task API around every stage, its sampling
   thread running), against the trial's own time. codecarbon's first start is reported apart: one
   tracker serves every trial of a worker process.

    python benchmarks/bench_energy.py [--seconds 20] [--pairs 3] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from rcsweep import TrialConfig, run_trial  # noqa: E402
from rcsweep import energy  # noqa: E402

# a quickstart trial (sweeps/quickstart.yaml's fixed parameters and evaluation)
TRIAL = dict(dataset="digits", batch_size=32, pretrain_epochs=10, eps_eval=0.2, attack_steps=5, eval_restarts=2,
             compression="prune_structured", sparsity=0.5, finetune="clean", finetune_epochs=2)


def workload(seconds: float) -> float:
    """Matmuls on one thread for ``seconds`` of wall time; returns the CPU seconds spent."""
    c0, t0 = time.process_time(), time.perf_counter()
    a = torch.randn(384, 384)
    while time.perf_counter() - t0 < seconds:
        a = torch.tanh(a @ a)
    return time.process_time() - c0


def compare_trackers(seconds: float) -> dict:
    out = {}
    settings = energy.EnergySettings()
    cpu_s = workload(seconds)
    out["estimate"] = {"kwh": cpu_s * settings.cpu_watts / energy.J_PER_KWH, "cpu_s": cpu_s, "start_s": 0.0,
                       "how": settings.estimate_label}

    t = time.perf_counter()
    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    tracker = OfflineEmissionsTracker(country_iso_code="USA", save_to_file=False, log_level="error",
                                      tracking_mode="process", allow_multiple_runs=True)
    tracker.start_task("bench")
    start = time.perf_counter() - t
    cpu_s = workload(seconds)
    d = tracker.stop_task()
    tracker.stop()
    out["codecarbon"] = {"kwh": d.cpu_energy, "kwh_with_ram": d.energy_consumed, "cpu_s": cpu_s, "start_s": start,
                         "how": f"process mode, CPU {d.cpu_power:.2f} W (its fallback), RAM {d.ram_power:.1f} W"}

    try:
        t = time.perf_counter()
        from carbontracker.tracker import CarbonTracker

        log_dir = tempfile.mkdtemp(prefix="carbontracker-")
        ct = CarbonTracker(epochs=1, components="cpu", monitor_epochs=1, update_interval=1, epochs_before_pred=0,
                           verbose=0, log_dir=log_dir, decimal_precision=12)
        ct.epoch_start()
        start = time.perf_counter() - t
        cpu_s = workload(seconds)
        ct.epoch_end()
        ct.stop()
        text = "".join(open(os.path.join(log_dir, f)).read() for f in os.listdir(log_dir) if f.endswith("output.log"))
        kwh = float(text.split("Energy:")[1].split("kWh")[0]) if "Energy:" in text else float("nan")
        out["carbontracker"] = {"kwh": kwh, "cpu_s": cpu_s, "start_s": start, "how": "machine level, TDP x 50%"}
    except ImportError:
        pass
    for v in out.values():
        v["watts"] = v["kwh"] * energy.J_PER_KWH / seconds
    return out


def overhead(pairs: int) -> dict:
    """Wall and CPU seconds of the same trial with each meter, interleaved, after one warm-up trial
    (data loading, first kernels); codecarbon's start apart."""
    t = time.perf_counter()
    tracker = energy._start_codecarbon()
    tracker.start_task("first")
    tracker.stop_task()
    first_start = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as out:
        run_trial(TrialConfig(**TRIAL), out, device="cpu")
    runs = {"estimate": [], "codecarbon": []}
    for i in range(pairs):
        for name in (("estimate", "codecarbon") if i % 2 == 0 else ("codecarbon", "estimate")):
            energy._METER = energy.ProcessMeter(tracker if name == "codecarbon" else None)
            c0, t0 = time.process_time(), time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                rec = run_trial(TrialConfig(**TRIAL), out, device="cpu")
            runs[name].append({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                               "source": rec["metrics"]["energy_source"]})
            if name == "codecarbon":
                tracker.stop_task()  # its sampling thread stops with the task
    tracker.stop()
    mean = lambda name, k: sum(r[k] for r in runs[name]) / len(runs[name])  # noqa: E731
    # the estimate's own cost: its readings, timed, times the readings a trial takes (2 per stage + 1 per epoch)
    meter, settings = energy.ProcessMeter(), energy.EnergySettings()
    t = time.perf_counter()
    for _ in range(10000):
        meter.kwh_since(meter.mark(), settings)
    per_reading = (time.perf_counter() - t) / 10000
    readings = 2 * len(energy.STAGES) + TRIAL["pretrain_epochs"] + TRIAL["finetune_epochs"]
    return {"runs": runs, "codecarbon_start_s": first_start,
            "wall_ratio": mean("codecarbon", "wall_s") / mean("estimate", "wall_s"),
            "cpu_ratio": mean("codecarbon", "cpu_s") / mean("estimate", "cpu_s"),
            "estimate_reading_s": per_reading, "estimate_share": per_reading * readings / mean("estimate", "wall_s"),
            "load_average": os.getloadavg()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"RAPL readable: {energy.rapl_readable()}; load average {os.getloadavg()}", flush=True)
    trackers = compare_trackers(args.seconds)
    for name, v in trackers.items():
        print(f"{name:14s} {v['kwh']:.3e} kWh = {v['watts']:7.2f} W over {args.seconds:g} s wall "
              f"({v['cpu_s']:.1f} CPU s); start {v['start_s']:.2f} s; {v['how']}", flush=True)
    cost = overhead(args.pairs)
    for name, rs in cost["runs"].items():
        print(f"{name:14s} trials: " + ", ".join(f"{r['wall_s']:.1f} s wall / {r['cpu_s']:.1f} s CPU" for r in rs))
    print(f"codecarbon vs estimate: wall x{cost['wall_ratio']:.3f}, CPU x{cost['cpu_ratio']:.3f}; codecarbon's start "
          f"{cost['codecarbon_start_s']:.2f} s (its first in a process: {trackers['codecarbon']['start_s']:.2f} s, "
          f"once per process); the estimate's readings "
          f"{cost['estimate_reading_s'] * 1e6:.1f} us each, {100 * cost['estimate_share']:.4f}% of a trial")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"trackers": trackers, "overhead": cost, "trial": TRIAL}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
