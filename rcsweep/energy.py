"""Energy per trial stage, and its CO2 at a grid intensity.

A stage's energy comes from a real counter where the machine has one, otherwise from a documented
estimate, and every record says which (``energy_source``):

- ``rapl``: the CPU package (and DRAM) counters, read through codecarbon's offline tracker
  (``OfflineEmissionsTracker``, no network). RAPL counts the whole package, so a stage gets the
  package energy times its process's share of the CPU time the machine spent meanwhile (two trials
  on one machine do not both count the other's work);
- ``estimate: cpu_seconds x W``: the CPU time of the trial's process (all its threads) times
  :attr:`EnergySettings.cpu_watts` per busy core, where no RAPL counter is readable (most VMs and
  containers, this project's CI). Trackers' own fallbacks are guesses from a CPU model's TDP that
  differ by two orders of magnitude on one machine (benchmarks/RESULTS.md, *Energy*), so rcsweep uses
  one documented, configurable figure instead;
- ``+ nvml gpu``: the GPU's energy counter (NVML, through codecarbon) is added where the trial ran
  on a GPU.

codecarbon is used only where it has a counter to read (RAPL or NVML); its first start takes
seconds, so one tracker serves every stage of every trial a process runs (:func:`process_meter`).
Memory energy is not counted where no DRAM counter is readable. Nothing here imports torch.
"""
from __future__ import annotations

import glob
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from typing import Optional

from .errors import ConfigError, did_you_mean

J_PER_KWH = 3.6e6
#: W per busy core: the Green Algorithms calculator's default per-core power (Lannelongue et al. 2021)
DEFAULT_CPU_WATTS = 12.0
#: gCO2eq/kWh: the world average electricity carbon intensity for 2024 (IEA, *Electricity 2025*)
DEFAULT_GRID_GCO2_PER_KWH = 445.0
#: the pipeline's stages, as in the ``time_<stage>_s`` metrics; energies are ``energy_kwh_<stage>``
STAGES = ("pretrain", "compress", "finetune", "evaluate")
RAPL_FILES = "/sys/class/powercap/intel-rapl:*/energy_uj"
#: a tracker reading taken less than this long ago (s) is reused (a stage's start is the previous one's
#: end): the counters' energy of a shorter span goes to the next; CPU seconds are always read afresh
REUSE_S = 0.5


def metric_name(stage: str) -> str:
    return f"energy_kwh_{stage}"


@dataclass(frozen=True)
class EnergySettings:
    """The sweep file's ``energy`` section.

    Args:
        cpu_watts: W per busy core for the estimate where no counter is readable (default 12, > 0).
        grid_gco2_per_kwh: carbon intensity of the electricity, gCO2eq per kWh, for ``co2_g``
            (default 445, the 2024 world average; >= 0).
    """
    cpu_watts: float = DEFAULT_CPU_WATTS
    grid_gco2_per_kwh: float = DEFAULT_GRID_GCO2_PER_KWH

    def __post_init__(self):
        for name, low in (("cpu_watts", "> 0"), ("grid_gco2_per_kwh", ">= 0")):
            v = getattr(self, name)
            bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            if bad or (v <= 0 if low == "> 0" else v < 0):
                raise ConfigError(f"energy.{name}", f"must be a finite number {low}, got {v!r}")
            object.__setattr__(self, name, float(v))

    @classmethod
    def from_dict(cls, d) -> "EnergySettings":
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ConfigError("energy", f"must be a mapping like {{cpu_watts: 12, grid_gco2_per_kwh: 445}}, got {d!r}")
        known = [f.name for f in fields(cls)]
        for k in d:
            if k not in known:
                raise ConfigError(f"energy.{k}", "unknown field" + did_you_mean(str(k), known) + f"; fields: {', '.join(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def estimate_label(self) -> str:
        return f"estimate: cpu_seconds x {self.cpu_watts:g} W"

    def co2_g(self, kwh: float) -> float:
        return kwh * self.grid_gco2_per_kwh


@dataclass(frozen=True)
class Mark:
    """A reading of a :class:`ProcessMeter`'s cumulative counters."""
    cpu_s: float  # this process's CPU time (all threads)
    busy_s: float = 0.0  # the machine's busy CPU time (RAPL share), 0 without a tracker
    rapl_kwh: float = 0.0
    gpu_kwh: float = 0.0


class ProcessMeter:
    """The energy counters of this process: CPU time always, and codecarbon's RAPL and NVML
    counters where it found them. Use :func:`process_meter` (one per process)."""

    def __init__(self, tracker=None):
        self.tracker = tracker
        self.rapl = tracker is not None and rapl_readable()  # codecarbon reads RAPL first where it can
        self.gpu = False  # whether codecarbon found a GPU (NVML), known after the first reading
        self._totals = [0.0, 0.0]  # rapl kWh, gpu kWh since the tracker started
        self._read_at: Optional[float] = None  # perf_counter of the last tracker reading
        if tracker is not None:
            tracker.start_task("rcsweep")

    def mark(self) -> Mark:
        if self.tracker is not None:  # close the running task, add its energy, open the next
            if self._read_at is None or time.perf_counter() - self._read_at >= REUSE_S:
                self._read_tracker()  # ~10 ms of CPU and a thread's stop: shared by readings close together
        return Mark(time.process_time(), _machine_busy_s() if self.rapl else 0.0, *self._totals)

    def _read_tracker(self) -> None:
        data = self.tracker.stop_task()
        if data is not None:
            self._totals[0] += data.cpu_energy  # with DRAM's counter (rapl_include_dram); RAM's estimate is left out
            self._totals[1] += data.gpu_energy
            self.gpu = self.gpu or bool(data.gpu_count)
        self.tracker.start_task("rcsweep")
        self._read_at = time.perf_counter()

    def source(self, settings: EnergySettings) -> str:
        cpu = "rapl" if self.rapl else settings.estimate_label
        return cpu + (" + nvml gpu" if self.gpu else "")

    def kwh_since(self, start: Mark, settings: EnergySettings, end: Optional[Mark] = None) -> float:
        """Energy (kWh) of this process from ``start`` to ``end`` (default: now)."""
        end = end or self.mark()
        cpu_s = max(0.0, end.cpu_s - start.cpu_s)
        if self.rapl:
            busy = end.busy_s - start.busy_s
            share = min(1.0, cpu_s / busy) if busy > 0 else 1.0
            cpu = (end.rapl_kwh - start.rapl_kwh) * share
        else:
            cpu = cpu_s * settings.cpu_watts / J_PER_KWH
        return cpu + (end.gpu_kwh - start.gpu_kwh)


class StageClock:
    """Wall time and energy of one stage: ``seconds, kwh = clock.read()``; ``offset`` carries a
    stage's earlier (seconds, kWh) across a restart."""

    def __init__(self, settings: EnergySettings, offset: tuple = (0.0, 0.0)):
        self.settings = settings
        self.meter = process_meter()
        self.offset = offset
        self.t0, self.mark0 = time.perf_counter(), self.meter.mark()

    def read(self) -> tuple[float, float]:
        return (self.offset[0] + time.perf_counter() - self.t0,
                self.offset[1] + self.meter.kwh_since(self.mark0, self.settings))

    @property
    def source(self) -> str:
        return self.meter.source(self.settings)


_METER: Optional[ProcessMeter] = None


def process_meter(backend: str = "auto") -> ProcessMeter:
    """This process's meter, made on first use. ``backend``: ``auto`` (codecarbon where a RAPL or
    NVML counter is readable and codecarbon is installed, else CPU time alone), ``codecarbon``
    (always, for measuring its cost), ``estimate`` (never)."""
    global _METER
    if _METER is None or backend != "auto":
        use = backend == "codecarbon" or (backend == "auto" and (rapl_readable() or _nvml_present()))
        _METER = ProcessMeter(_start_codecarbon() if use else None)
    return _METER


def rapl_readable() -> bool:
    """Whether some RAPL package counter can be read (Linux powercap; often root-only)."""
    for path in glob.glob(RAPL_FILES):
        try:
            with open(path) as f:
                int(f.read())
            return True
        except (OSError, ValueError):
            continue
    return False


def _nvml_present() -> bool:
    return os.path.exists("/dev/nvidiactl")


def _start_codecarbon():
    """codecarbon's offline tracker, quiet, writing nothing; None if codecarbon is not installed."""
    try:
        from codecarbon import OfflineEmissionsTracker
    except ImportError:
        return None
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    # the country only sets codecarbon's own CO2 figure, which rcsweep does not use (EnergySettings does)
    return OfflineEmissionsTracker(country_iso_code="USA", save_to_file=False, log_level="error",
                                   tracking_mode="process", allow_multiple_runs=True, rapl_include_dram=True)


def _machine_busy_s() -> float:
    import psutil  # a codecarbon dependency; used only with RAPL

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)
