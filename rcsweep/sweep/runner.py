"""Run and resume sweeps: Ray Tune + Optuna over the stages of :mod:`rcsweep.pipeline`.

:func:`run_sweep` checks everything before it writes anything or starts a trial: the sweep file
(before Ray starts), the folder (``STORAGE/NAME`` must not exist), and, once connected, that some
Ray node has the CPUs and GPUs one trial asks for. Then it writes ``DIR/sweep.yaml`` and runs a
Tuner whose state lives in ``DIR/tune``. :func:`resume_sweep` restores that Tuner
(``Tuner.restore``: finished trials stay finished, unfinished ones continue from their last
checkpoint, the searcher's state comes back) from ``DIR/sweep.yaml``, not the file on disk.

A local Ray is started (dashboard off) unless ``address`` or ``RAY_ADDRESS`` names a cluster; the
driver records the processes of that Ray, so that resuming after a SIGKILLed driver stops those it
left behind. Multi-node sweeps need storage that every node sees at the same path: the runner
checks this from every node and warns when they do not see it.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import tune

from ..errors import ConfigError, UserError
from ..fileio import atomic_write_json
from ..results import read_rows, upsert_rows
from ..sweepfile import SweepSpec
from ..tracking import check_trackers
from .folder import (ES_STATE_FILE, SEARCH_FILE, TUNE_DIR, add_resume, clear_driver, driver_alive, now, provenance, read_driver,
                     new_folder, own_ray_processes, read_sweep_file, remove_rows, resolve_spec, search_exhausted,
                     stop_left_behind, write_driver, write_spec)
from .progress import SweepProgress
from .scheduler import RungScheduler, drop_unknown
from .search import build_searcher
from .store import COLLAPSED_FILE as STORE_COLLAPSED_FILE
from .store import STORE_DIR, pretrained_models, seed_store
from .summary import format_status, pareto_front, sweep_status
from .trainable import COLLAPSED_FILE, TRIALS_DIR, sweep_trial
from .trackers import tracker_callbacks

# Tune saves its experiment state at most this often (seconds): a driver killed between two saves
# loses only the trials it started since the last one (see _reconcile); a trial's progress is in its
# own stage checkpoints (.checkpoints), and Tune is given none: it restarts an unfinished trial,
# which resumes from them.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # expected, not a fault
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: Tune prints nothing; SweepProgress reports


@dataclass
class SweepOutcome:
    folder: Path
    planned: int
    finished: int
    failed: int
    pareto: list  # trial ids
    early_stopped: int = 0  # trials stopped at a rung (rcsweep.sweep.scheduler): done, not failed

    @property
    def exit_code(self) -> int:
        return 0 if self.finished + self.early_stopped == self.planned else 1

    def results(self):
        from ..results import load_results

        return load_results(self.folder)


def run_sweep(path_or_dict, name=None, storage=None, address=None, num_samples=None, max_concurrent=None,
              search_seed=None, *, sets: dict | None = None, pretrained_from=None, argv=None,
              quiet: bool = False) -> SweepOutcome:
    """Run the sweep in ``path_or_dict`` (a YAML path or a dict) into ``STORAGE/NAME``.

    Args:
        name: the sweep folder's name (default: the sweep's ``name`` or the file's stem).
        storage: the parent folder or ``file://`` URI (default ``./rcsweep-results``).
        address: a Ray cluster to join (default: ``RAY_ADDRESS``, else a new local Ray).
        num_samples, max_concurrent, search_seed: override the sweep file's values.
        sets: trial parameters fixed for this sweep (``--set``), e.g. ``{"seed": 1}``.
        pretrained_from: a sweep folder whose complete pretrained models are copied into the new
            one first (:func:`.store.seed_store`); trials with a matching pretraining load them.
        argv: the command line, recorded as provenance (default ``sys.argv``).
    """
    spec = resolve_spec(path_or_dict, name, sets, num_samples=num_samples, max_concurrent=max_concurrent,
                        search_seed=search_seed)
    folder = new_folder(storage, spec)
    prov = provenance(argv, path_or_dict if not isinstance(path_or_dict, dict) else None)
    if pretrained_from is not None:
        pretrained_models(pretrained_from)  # nothing to reuse: one line before Ray starts
    with ray_session(address) as (nodes, owned_ray):
        check_resources(spec, nodes)
        folder.mkdir(parents=True)
        check_shared(folder, nodes)
        if pretrained_from is not None:
            prov["pretrained_from"] = {"source": str(Path(pretrained_from).expanduser().resolve()),
                                       "models": seed_store(folder, pretrained_from)}
            if not quiet:
                print(f"rcsweep: {len(prov['pretrained_from']['models'])} pretrained model(s) copied from "
                      f"{pretrained_from}; a trial whose pretraining configuration matches one loads it, "
                      "the others pretrain as usual", flush=True)
        write_spec(folder, spec, prov)
        upsert_rows(folder, [])
        tuner = tune.Tuner(_trainable(spec), param_space=_param_space(spec, folder),
                           tune_config=tune.TuneConfig(search_alg=build_searcher(spec), num_samples=-1,
                                                       scheduler=RungScheduler(spec) if _stops(spec) else None,
                                                       reuse_actors=True, time_budget_s=spec.time_budget_s,
                                                       trial_dirname_creator=_trial_dirname),
                           run_config=tune.RunConfig(name=TUNE_DIR, storage_path=str(folder), verbose=0,
                                                     failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                                     callbacks=[SweepProgress(folder, spec.objectives, spec.total_trials()),
                                                                *tracker_callbacks(spec)]))
        return _fit(tuner, folder, quiet, owned_ray)


def resume_sweep(folder, num_samples=None, retry_failed: bool = False, address=None, *, argv=None,
                 quiet: bool = False) -> SweepOutcome:
    """Continue the sweep in ``folder`` as ``folder/sweep.yaml`` describes it; ``num_samples``
    extends it to that many trials; ``retry_failed`` runs the failed trials again (from their
    last checkpoint)."""
    folder = Path(folder).expanduser().resolve()
    spec, _ = read_sweep_file(folder)
    check_trackers(spec.tracking)
    if not (folder / TUNE_DIR / "tuner.pkl").is_file():
        raise UserError(f"{folder} has no Ray Tune state ({TUNE_DIR}/tuner.pkl): it never started; run it again")
    driver = read_driver(folder)
    alive = driver_alive(driver)
    if alive:
        raise UserError(f"{folder} is being run by process {driver['pid']} on {driver['host']}; wait or stop it first")
    if alive is None:
        raise UserError(f"{folder} was last run by process {driver['pid']} on {driver['host']}, which cannot be checked "
                        f"from here: resume it there, or delete {folder / 'driver.json'} if that driver is gone")
    if stop_left_behind(driver):
        print(f"rcsweep: stopped the Ray processes left by the killed driver (pid {driver['pid']})", file=sys.stderr)
    if num_samples is None and not retry_failed and sweep_status(folder).complete:
        if not quiet:  # nothing for Ray to do: say so without starting it
            print(f"rcsweep: nothing to resume: every planned trial of {folder.name} is done "
                  f"(extend it with --num-samples, or --retry-failed)")
        return _conclude(folder, quiet)
    if num_samples is not None:
        if num_samples < spec.total_trials():
            raise ConfigError("num_samples", f"{num_samples} is fewer than the sweep's {spec.total_trials()} trials "
                                             f"(it can only grow)")
        spec = resolve_spec(spec.to_dict(), num_samples=num_samples)
    with ray_session(address) as (nodes, owned_ray):
        check_resources(spec, nodes)
        check_shared(folder, nodes)
        (folder / SEARCH_FILE).unlink(missing_ok=True)  # the resumed search says again if it ends early
        add_resume(folder, spec, {"time": now(), "command": provenance(argv)["command"],
                                  "num_samples": spec.total_trials(), "retry_failed": retry_failed})
        if retry_failed:  # the user asks again: a collapsed trial, or shared pretraining, runs again too
            for marker in [*(folder / TRIALS_DIR).glob(f"*/{COLLAPSED_FILE}"),
                           *(folder / STORE_DIR).glob(f"*/{STORE_COLLAPSED_FILE}")]:
                marker.unlink()
        tuner = tune.Tuner.restore(str(folder / TUNE_DIR), _trainable(spec), param_space=_param_space(spec, folder),
                                   resume_unfinished=True, resume_errored=retry_failed)
        return _fit(tuner, folder, quiet, owned_ray)


def _fit(tuner, folder: Path, quiet: bool, owned_ray: bool) -> SweepOutcome:
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    write_driver(folder, ray_processes=own_ray_processes() if owned_ray else [])
    try:
        grid = tuner.fit()
    finally:
        clear_driver(folder)
    _reconcile(folder, {Path(r.path).name for r in grid})
    return _conclude(folder, quiet)


def _conclude(folder: Path, quiet: bool) -> SweepOutcome:
    """The sweep's outcome from its folder, printed unless ``quiet``."""
    st = sweep_status(folder)
    front = pareto_front(st.table, st.spec.objectives) if st.table is not None and len(st.table) else None
    finished, failed, stopped = (st.counts.get(k, 0) for k in ("finished", "failed", "early_stopped"))
    exhausted = search_exhausted(folder)
    outcome = SweepOutcome(folder, finished + failed + stopped if exhausted else st.planned, finished, failed,
                           [] if front is None else list(front["trial_id"]), stopped)
    if not quiet:
        print(format_status(st))
        print(f"results: {folder / 'results.csv'}")
        if not exhausted and outcome.finished + outcome.failed + stopped < outcome.planned:  # status says why it ended early
            print(f"unfinished: continue with 'rcsweep resume {folder}'")
    return outcome


def _reconcile(folder: Path, known: set) -> None:
    """Drop the rows and set aside the folders of trials Ray Tune has no record of: started by a
    driver killed before its next state save, they are not part of the sweep (their pretrained
    models stay in the store). Keeps ``results.csv`` and the early-stopping state at exactly the
    Tuner's trials."""
    state_file = folder / ES_STATE_FILE
    if state_file.is_file():  # the scheduler drops them when it first reads the file; a run it never saw too
        state = json.loads(state_file.read_text())
        if drop_unknown(state, known):
            atomic_write_json(state_file, state)
    orphans = [r["trial_id"] for r in read_rows(folder) if r["trial_id"] not in known]
    if not orphans:
        return
    remove_rows(folder, orphans)
    aside = folder / TRIALS_DIR / ".orphans"
    for trial_id in orphans:
        src = folder / TRIALS_DIR / trial_id
        if src.exists():
            aside.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(aside / trial_id))
    print(f"rcsweep: set aside {len(orphans)} trial(s) started after Tune's last state save: {', '.join(orphans)}",
          file=sys.stderr)


def _trainable(spec: SweepSpec):
    return tune.with_resources(sweep_trial, {"cpu": spec.resources["cpu"], "gpu": spec.resources["gpu"]})


def _stops(spec: SweepSpec) -> bool:
    """Whether the sweep stops trials early (a scheduler), not only screens them."""
    return spec.early_stopping is not None and spec.early_stopping.stop


def _param_space(spec: SweepSpec, folder: Path) -> dict:
    return {"_sweep": {"dir": str(folder), "num_samples": spec.total_trials(), "trial_timeout_s": spec.trial_timeout_s,
                       "cpus_per_trial": spec.resources["cpu"], "gpu_fallback": spec.gpu_fallback,
                       "pretrain_cpus": (spec.pretrain_resources or {}).get("cpu"),
                       "constraints": dict(c.to_item() for c in spec.constraints), "energy": spec.energy.to_dict(),
                       "early_stopping": spec.early_stopping.to_dict() if spec.early_stopping else None,
                       "objectives": [list(o) for o in spec.objectives]}}


def _trial_dirname(trial) -> str:
    return trial.trial_id


# -- Ray -------------------------------------------------------------------------------------
@contextmanager
def ray_session(address=None):
    """Connect to ``address`` (or ``RAY_ADDRESS``), else start a local Ray without its dashboard;
    yields ``(alive nodes, whether this process started that Ray)``. Leaves an already connected
    Ray alone. A local Ray is bound to 127.0.0.1 (GCS, raylet, workers): nothing listens on other
    interfaces. Ray itself replaces a loopback node address by the routable one while its
    multi-node support (``ray_constants.ENABLE_RAY_CLUSTER``) is on; it is switched off around
    ``ray.init`` only, so ``--address`` and ``ray start`` clusters are unaffected."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    connected = ray.is_initialized()
    local = not connected and not (address or os.environ.get("RAY_ADDRESS"))
    if not connected:
        try:
            if local:
                _init_loopback_ray()
            else:
                ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"--address: cannot connect to Ray at {address or os.environ.get('RAY_ADDRESS')}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    try:
        yield [n for n in ray.nodes() if n.get("Alive")], local
    finally:
        if not connected:
            ray.shutdown()


def _init_loopback_ray() -> None:
    """``ray.init`` of a new local Ray whose services listen on 127.0.0.1 only, no dashboard.
    ``address="local"``: without it Ray joins a cluster that ``ray start`` left running on this
    machine (it reads ``/tmp/ray/ray_current_cluster``), and a sweep the user meant to keep on its
    own Ray would share, or die with, another job's."""
    from ray._private import ray_constants

    saved, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    try:
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def check_resources(spec: SweepSpec, nodes: list) -> None:
    """Refuse a per-trial request that no node can meet (Tune would wait for it forever)."""
    cpu, gpu = spec.resources["cpu"], spec.resources["gpu"]
    have = [(n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0)) for n in nodes]
    if any(c >= cpu and g >= gpu for c, g in have):
        return
    most_cpu, most_gpu = max(c for c, _ in have), max(g for _, g in have)
    where = f"{len(have)} Ray node(s)"
    if cpu > most_cpu:
        raise ConfigError("resources.cpu", f"each trial asks for {cpu:g} CPUs, but the largest of {where} has {most_cpu:g}")
    if gpu > most_gpu:
        raise ConfigError("resources.gpu", f"each trial asks for {gpu:g} GPUs, but "
                                           + (f"none of {where} has a GPU" if most_gpu == 0 else
                                              f"the largest of {where} has {most_gpu:g}"))
    raise ConfigError("resources", f"no single node of {where} has {cpu:g} CPUs and {gpu:g} GPUs together")


@ray.remote(num_cpus=0)
def _sees(path: str) -> bool:
    return os.path.exists(path)


def check_shared(folder: Path, nodes: list, timeout_s: float = 60.0) -> None:
    """Warn when some node cannot see ``folder`` (node-local storage on a multi-node cluster)."""
    if len(nodes) < 2:
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = folder / f".shared-check-{os.getpid()}"
    marker.write_text("")
    try:
        refs = {n["NodeManagerAddress"] + " " + n["NodeID"][:8]: _sees.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(str(marker))
            for n in nodes}
        seen = dict(zip(refs, ray.get(list(refs.values()), timeout=timeout_s)))
    except ray.exceptions.GetTimeoutError:
        print(f"rcsweep: WARNING: could not check within {timeout_s:g} s that every node sees {folder}",
              file=sys.stderr)
        return
    finally:
        marker.unlink()
    blind = [node for node, ok in seen.items() if not ok]
    if blind:
        print(f"rcsweep: WARNING: storage {folder} is node-local: node(s) {', '.join(blind)} do not see it. "
              f"Multi-node sweeps need shared storage (e.g. NFS mounted at the same path on every node); "
              f"trials there would train and write where this driver never looks.", file=sys.stderr)
