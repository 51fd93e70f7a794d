"""Experiment trackers as Ray Tune logger callbacks: the sweep file's ``tracking`` section
(:mod:`rcsweep.tracking`) turned into Ray's own ``MLflowLoggerCallback`` and ``TBXLoggerCallback``.

Tune hands them every trial's config (its parameters, under ``trial/``), every report (per
pretraining and fine-tuning epoch: ``epoch``, ``val_clean_acc``; per stage) and the final metrics
(:func:`.trainable.final_metrics`). They run in the driver, so the MLflow store is the driver's.
"""
from __future__ import annotations

import logging

from ..sweepfile import SweepSpec


def tracker_callbacks(spec: SweepSpec) -> list:
    """The logger callbacks ``spec.tracking`` asks for (none by default)."""
    callbacks = []
    if spec.tracking.mlflow:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        for name in ("mlflow", "alembic"):  # schema migrations and store set-up print pages at INFO
            logging.getLogger(name).setLevel(logging.WARNING)
        callbacks.append(MLflowLoggerCallback(
            tracking_uri=spec.tracking.mlflow, experiment_name=spec.name,
            tags={"rcsweep.sweep": spec.name,
                  "rcsweep.energy": "energy_kwh_*: RAPL/NVML counters where readable, else "
                                    f"{spec.energy.estimate_label}; each trial's energy_source is in results.csv"}))
    if spec.tracking.tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        callbacks.append(TBXLoggerCallback())
    return callbacks
