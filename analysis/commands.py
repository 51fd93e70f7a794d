"""CLI commands of the analysis layer (registered by :mod:`rcsweep.cli`); they read results only:

- ``rcsweep pareto DIR [--objectives robust_acc:max,model_bits:min] [--by COLUMN] [--out FILE]``
- ``rcsweep compare DIR DIR ... --out FILE``

Also what the command layer's verbs (:mod:`rcsweep.commands.verbs`) share with them: the
``--objectives`` option, a sweep's objectives and the rows chosen by ``--trials`` or the front.
Handlers import pandas and matplotlib lazily so that ``rcsweep --help`` stays instant.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from rcsweep import metrics_table

DEFAULT_OBJECTIVES = ",".join(f"{m}:{d}" for m, d in metrics_table.DEFAULT_OBJECTIVES)


def objectives_arg(p):
    """Add ``--objectives`` to the parser ``p``."""
    p.add_argument("--objectives", default=None, metavar="COL:DIR,...",
                   help="two or more numeric columns with max|min (default: the sweep's objectives from "
                        f"sweep.yaml when it has two or more, else {DEFAULT_OBJECTIVES})")


def register(sub) -> None:
    p = sub.add_parser("pareto", help="Pareto front, hypervolume and figure of a sweep's finished trials",
                       description="Writes FILE (the front as CSV), <stem>_excluded.csv (failed, running and "
                                   "suspect trials with the reason), <stem>.json (hypervolume) and <stem>.png/.svg.")
    p.add_argument("dir", metavar="DIR", help="sweep folder (holds results.csv)")
    objectives_arg(p)
    p.add_argument("--by", metavar="COLUMN", help="also draw one front per value of COLUMN (pretrain, compression, "
                                                  "finetune, ...)")
    p.add_argument("--out", metavar="FILE", help="CSV of the front (default DIR/pareto.csv)")
    p.set_defaults(func=cmd_pareto)

    p = sub.add_parser("compare", help="several sweeps on one figure: fronts and hypervolume over trials",
                       description="Writes FILE's stem .png/.svg, .csv (hypervolume curves) and .json.")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    objectives_arg(p)
    p.add_argument("--out", metavar="FILE", required=True, help="figure path, e.g. compare.png")
    p.set_defaults(func=cmd_compare)


def sweep_objectives(folder) -> str:
    """The objectives of ``folder/sweep.yaml`` (the sweep as run, with its provenance) when it names
    two or more, else the default. A sweep.yaml that cannot be read says so on stderr and the
    default applies: the analysis of results.csv does not need it."""
    from rcsweep.errors import UserError
    from rcsweep.sweepfile import SWEEP_FILE, read_sweep_folder

    if (Path(folder) / SWEEP_FILE).is_file():
        try:
            objs = read_sweep_folder(folder)[0].objectives
        except (UserError, ValueError, yaml.YAMLError) as e:
            print(f"rcsweep: warning: {Path(folder) / SWEEP_FILE} unreadable ({e}); objectives {DEFAULT_OBJECTIVES}",
                  file=sys.stderr)
            return DEFAULT_OBJECTIVES
        if len(objs) >= 2:
            return ",".join(f"{m}:{d}" for m, d in objs)
    return DEFAULT_OBJECTIVES


def cmd_pareto(args) -> int:
    from rcsweep.errors import UserError

    from .common import load_sweep
    from .pareto import pareto_analysis, write_pareto

    df = load_sweep(args.dir)
    out = Path(args.out) if args.out else Path(args.dir) / "pareto.csv"
    if out.suffix.lower() != ".csv":
        raise UserError(f"--out {out} must be a .csv file (the figures take its stem)")
    res = pareto_analysis(df, args.objectives or sweep_objectives(args.dir), by=args.by)
    paths = write_pareto(res, out)
    print(f"front: {len(res.front)} of {len(res.usable)} usable finished trials "
          f"({len(res.excluded)} excluded -> {paths[1]})")
    cols = ["trial_id"] + [o.column for o in res.objectives]
    print(res.front[cols].to_string(index=False))
    print(f"hypervolume: {res.hypervolume:.6g}  ({'; '.join(f'{k}: {v}' for k, v in res.normalisation.items())})")
    for k, v in res.group_hypervolume.items():
        print(f"  {args.by}={k}: hypervolume {v:.6g}, front of {len(res.group_fronts[_key(res, k)])}")
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def _key(res, k: str):
    return next(g for g in res.group_fronts if str(g) == k)


def chosen_rows(args):
    """The results.csv rows of ``--trials`` (a UserError for an unknown id), else of the front."""
    from rcsweep.errors import UserError

    from .common import load_sweep
    from .pareto import pareto_analysis

    df = load_sweep(args.dir)
    if not args.trials:
        return pareto_analysis(df, args.objectives or sweep_objectives(args.dir)).front
    unknown = [t for t in args.trials if t not in set(df["trial_id"])]
    if unknown:
        raise UserError(f"trial {unknown[0]!r} is not in {args.dir}/results.csv")
    return df.set_index("trial_id", drop=False).loc[args.trials]


def cmd_compare(args) -> int:
    from .compare import run_compare

    paths = run_compare(args.dirs, args.out, args.objectives or sweep_objectives(args.dirs[0]))
    print("wrote " + ", ".join(map(str, paths)))
    return 0
