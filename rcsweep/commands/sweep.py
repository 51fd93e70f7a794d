"""``rcsweep run | resume | status | validate``. Handlers import Ray (through the runner) only when
they need it: ``status`` and ``validate`` never do. The sweep layer itself is :mod:`rcsweep.sweep`."""
from __future__ import annotations

from .trial import parse_sets


def register(sub) -> None:
    r = sub.add_parser("run", help="run a sweep (Ray Tune + Optuna) into STORAGE/NAME",
                       description="Run a sweep file's trials. Exit code 0 when every trial finished, "
                                   "1 when some failed or did not finish, 2 for bad input.")
    r.add_argument("sweep", help="sweep file (YAML)")
    r.add_argument("--name", help="sweep folder name (default: the file's 'name' or stem)")
    r.add_argument("--storage", help="parent folder or file:// URI (default ./rcsweep-results)")
    r.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a new local Ray)")
    r.add_argument("--num-samples", type=int, help="number of trials (overrides the file)")
    r.add_argument("--max-concurrent", type=int, help="trials at once (overrides the file)")
    r.add_argument("--search-seed", type=int, help="seed of the search (overrides the file)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a trial parameter for the whole sweep (YAML value; repeatable), e.g. --set seed=1")
    r.add_argument("--pretrained-from", metavar="DIR",
                   help="reuse the pretrained models of another sweep folder (copied into the new one; "
                        "a trial whose pretraining configuration matches one loads it instead of training)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("resume", help="continue a stopped sweep, or extend a finished one",
                       description="Continue the sweep in DIR as DIR/sweep.yaml describes it: finished trials "
                                   "are kept, unfinished ones continue from their last checkpoint.")
    s.add_argument("dir", help="sweep folder")
    s.add_argument("--num-samples", type=int, help="extend the sweep to this many trials")
    s.add_argument("--retry-failed", action="store_true", help="also run the failed trials again")
    s.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a new local Ray)")
    s.set_defaults(func=cmd_resume)

    t = sub.add_parser("status", help="trials, their states and the Pareto front so far with its hypervolume "
                                      "(also while running)")
    t.add_argument("dir", help="sweep folder")
    t.set_defaults(func=cmd_status)

    v = sub.add_parser("validate", help="check a sweep file and show the trials it would run")
    v.add_argument("sweep", help="sweep file (YAML)")
    v.add_argument("--num-samples", type=int, help="number of trials (as for run)")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for run")
    v.set_defaults(func=cmd_validate)

    rp = sub.add_parser("replay", help="what early stopping would have done to a sweep that recorded its screening",
                        description="Simulates early stopping on the sweep in DIR from its recorded screening: the "
                                    "trials it would stop, the front's trials among them, the compute saved and the "
                                    "hypervolume kept. Runs nothing.")
    rp.add_argument("dir", help="sweep folder")
    rp.add_argument("--early-stopping", metavar="YAML", help="an early_stopping mapping, e.g. '{rungs: [0, 1], eta: 3}' "
                                                             "(default: the sweep's own)")
    rp.set_defaults(func=cmd_replay)


def _checked(source, name=None, sets=None, **flags):
    """The resolved sweep; a bad override is reported under its flag (``--num-samples: ...``)."""
    from ..errors import ConfigError
    from ..sweep.folder import resolve_spec

    try:
        return resolve_spec(source, name, sets, **flags)
    except ConfigError as e:
        flagged = _under_flag(e, flags, sets)
        if flagged is not None:
            raise flagged from None
        raise


def _under_flag(e, flags: dict, sets=None):
    """The UserError naming the command-line flag (``--num-samples``, ``--set KEY``) that gave the
    value ConfigError ``e`` refuses, or None when no flag did."""
    from ..errors import UserError

    if flags.get(e.field) is not None:
        return UserError(f"--{e.field.replace('_', '-')}: {e.message}")
    key = e.field[len("fixed."):] if e.field.startswith("fixed.") else None
    if sets and key in sets:  # the user wrote --set KEY=..., not fixed.KEY
        return UserError(f"--set {key}: {e.message}")
    return None


def cmd_run(args) -> int:
    from ..sweep.folder import new_folder

    # bad input fails here, before Ray is imported or started
    sets = parse_sets(args.set)
    new_folder(args.storage, _checked(args.sweep, args.name, sets, num_samples=args.num_samples,
                                      max_concurrent=args.max_concurrent, search_seed=args.search_seed))
    if args.pretrained_from is not None:
        from ..sweep.store import pretrained_models

        pretrained_models(args.pretrained_from)
    from ..sweep.runner import run_sweep

    return run_sweep(args.sweep, name=args.name, storage=args.storage, address=args.address,
                     num_samples=args.num_samples, max_concurrent=args.max_concurrent,
                     search_seed=args.search_seed, sets=sets, pretrained_from=args.pretrained_from).exit_code


def cmd_resume(args) -> int:
    from ..errors import ConfigError
    from ..sweep.folder import read_spec

    if args.num_samples is not None:
        _checked(read_spec(args.dir).to_dict(), num_samples=args.num_samples)
    from ..sweep.runner import resume_sweep

    try:
        return resume_sweep(args.dir, num_samples=args.num_samples, retry_failed=args.retry_failed,
                            address=args.address).exit_code
    except ConfigError as e:  # refused before Ray starts (a num_samples that would shrink the sweep)
        flagged = _under_flag(e, {"num_samples": args.num_samples})
        if flagged is not None:
            raise flagged from None
        raise


def cmd_status(args) -> int:
    from ..sweep.summary import format_status, sweep_status

    print(format_status(sweep_status(args.dir)))
    return 0


def cmd_replay(args) -> int:
    import yaml

    from ..errors import UserError
    from .replay import replay

    try:
        es = yaml.safe_load(args.early_stopping) if args.early_stopping is not None else None
    except yaml.YAMLError:
        raise UserError(f"--early-stopping: not valid YAML: {args.early_stopping!r}") from None
    print(replay(args.dir, es))
    return 0


def cmd_validate(args) -> int:
    from ..sweep.summary import describe_spec

    print(describe_spec(_checked(args.sweep, None, parse_sets(args.set), num_samples=args.num_samples)))
    return 0
