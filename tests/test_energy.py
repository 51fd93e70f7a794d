"""Energy meters (rcsweep.energy): the estimate is the process's CPU time x the configured wattage;
codecarbon's offline tracker starts without touching the network and, where it finds no RAPL
counter (this CI), leaves the CPU's energy to that estimate; settings name their bad field."""
import socket
import time

import pytest

from rcsweep.energy import (DEFAULT_CPU_WATTS, DEFAULT_GRID_GCO2_PER_KWH, EnergySettings, ProcessMeter, StageClock,
                            process_meter, rapl_readable)
from rcsweep.errors import ConfigError


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1


def test_estimate_is_cpu_seconds_times_the_wattage():
    meter, settings = ProcessMeter(), EnergySettings(cpu_watts=30.0)
    start = meter.mark()
    _busy(0.3)
    end = meter.mark()
    kwh = meter.kwh_since(start, settings, end)
    assert kwh == pytest.approx((end.cpu_s - start.cpu_s) * 30.0 / 3.6e6) and kwh >= 0.3 * 30 / 3.6e6
    assert meter.source(settings) == "estimate: cpu_seconds x 30 W"
    assert settings.co2_g(kwh) == pytest.approx(kwh * DEFAULT_GRID_GCO2_PER_KWH)


def test_stage_clock_carries_an_earlier_part_of_the_stage():
    clock = StageClock(EnergySettings(), offset=(5.0, 1e-3))
    _busy(0.05)
    seconds, kwh = clock.read()
    assert seconds > 5.0 and kwh > 1e-3


def test_settings_defaults_and_bad_values_name_the_field():
    assert EnergySettings.from_dict(None) == EnergySettings(DEFAULT_CPU_WATTS, DEFAULT_GRID_GCO2_PER_KWH)
    assert EnergySettings.from_dict({"grid_gco2_per_kwh": 0}).grid_gco2_per_kwh == 0.0  # renewables
    for bad, field in (({"cpu_watts": 0}, "energy.cpu_watts"), ({"cpu_watts": "12"}, "energy.cpu_watts"),
                       ({"grid_gco2_per_kwh": float("inf")}, "energy.grid_gco2_per_kwh"), ([12], "energy")):
        with pytest.raises(ConfigError) as e:
            EnergySettings.from_dict(bad)
        assert e.value.field == field


def test_codecarbon_runs_offline_and_only_counters_replace_the_estimate(monkeypatch):
    pytest.importorskip("codecarbon")
    tried = []

    def no_network(self, address, *a, **k):
        tried.append(address)
        raise OSError("no network in this test")

    from rcsweep import energy

    monkeypatch.setattr(energy, "_METER", None)  # put back afterwards: the session's meter stays as it was
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: no_network(None, address))
    meter = process_meter("codecarbon")
    try:
        assert meter.tracker is not None
        settings = EnergySettings()
        start = meter.mark()
        _busy(0.3)
        kwh = meter.kwh_since(start, settings)
        assert kwh > 0 and tried == []
        if not rapl_readable():  # codecarbon's own fallback (a TDP guess) is not used
            assert meter.source(settings).startswith("estimate: cpu_seconds x 12 W")
    finally:
        meter.tracker.stop()


def test_readings_close_together_share_one_tracker_reading(monkeypatch):
    from types import SimpleNamespace

    from rcsweep import energy

    class Tracker:  # codecarbon's task API, counted
        reads = 0

        def start_task(self, name):
            pass

        def stop_task(self):
            Tracker.reads += 1
            return SimpleNamespace(cpu_energy=1e-6, gpu_energy=0.0, gpu_count=0)

    monkeypatch.setattr(energy, "REUSE_S", 60.0)  # every reading below falls within it, however loaded the machine
    meter = ProcessMeter(Tracker())
    start = meter.mark()
    _busy(0.05)
    end = meter.mark()
    assert Tracker.reads == 1  # the second reading reused the first's counters...
    assert meter.kwh_since(start, EnergySettings(), end) > 0  # ...but read the CPU seconds afresh
    monkeypatch.setattr(energy, "REUSE_S", 0.0)
    meter.mark()
    assert Tracker.reads == 2
