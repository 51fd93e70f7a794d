"""CLI verbs of the command layer that load saved models or rewrite a sweep's results (registered
by :mod:`rcsweep.cli`; the work is in the sibling modules):

- ``rcsweep report DIR [--out FOLDER] [--by COLUMN] [--features [ID ...]]``: the report is written
  by :mod:`analysis.report`; with ``--features`` this layer hands it the feature-map analysis
  (:func:`.features.run_features`), run into the report's folder before report.md is written
- ``rcsweep features DIR [--trials ID ...] [--examples N] [--eps EPS] [--steps N] [--out STEM]``
- ``rcsweep export DIR (--pareto | --trials ID ...) --out FOLDER [--format onnx|pt2|state_dict ...] [--force]
  [--examples N]``
- ``rcsweep verify DIR [--pareto | --all | --trials ID ...] [--attack apgd|autoattack] [--steps N]
  [--examples N] [--out FILE]``
- ``rcsweep flags DIR``
- ``rcsweep reevaluate DIR (--outdated | --all | --trials ID ...) [--device D]``

Handlers import pandas, matplotlib and torch lazily so that ``rcsweep --help`` stays instant.
"""
from __future__ import annotations

from pathlib import Path

from analysis.commands import chosen_rows, objectives_arg, sweep_objectives


def register(sub) -> None:
    p = sub.add_parser("report", help="write report.md with the study's tables and figures",
                       description="Writes FOLDER/report.md with figures and CSV tables beside it.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--out", metavar="FOLDER", help="default DIR/report")
    objectives_arg(p)
    p.add_argument("--by", metavar="COLUMN", default="finetune", help="group fronts by COLUMN (default finetune)")
    p.add_argument("--features", nargs="*", metavar="ID", default=None,
                   help="add the feature-map analysis for these trials (no IDs: one per route and compression)")
    p.add_argument("--data-dir", help="dataset folder for --features")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("features", help="feature-map change under attack, per layer, for saved trials",
                       description="Writes STEM.csv, STEM.png/.svg (relative change per layer) and "
                                   "STEM_maps.png/.svg (activation maps of the first trial).")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--trials", nargs="+", metavar="ID", help="trial ids (default: one per route and compression)")
    p.add_argument("--examples", type=int, default=128, help="test images to average over (default 128)")
    p.add_argument("--eps", help="attack epsilon in pixel units, e.g. 8/255 (default: each trial's eps_eval)")
    p.add_argument("--steps", type=int, help="PGD steps (default: each trial's eval_steps)")
    p.add_argument("--layer", type=int, help="layer index for the activation maps (default: the first spatial one)")
    p.add_argument("--channels", type=int, default=4, help="channels in the activation-map grid (default 4)")
    p.add_argument("--out", metavar="STEM", help="default DIR/features")
    p.add_argument("--data-dir", help="dataset folder")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("export", help="write the front's (or named) models as ONNX / torch.export files, checked",
                       description="Writes FOLDER/<trial_id>/ with the model in each FORMAT (onnx: model.onnx, and "
                                   "model.qdq.onnx with integer weights for quantized models where it agrees; pt2: "
                                   "model.pt2; state_dict: model.pt + model.json for rcsweep.load_model) and "
                                   "model_card.json. Each file must agree with rcsweep's model on >= 99.5%% of "
                                   "the trial's test images, and PGD examples crafted on rcsweep's model must "
                                   "transfer (robust accuracy at most 1 point higher); else exit 1 and nothing is "
                                   "written. Suspect or degenerate trials need --force.")
    p.add_argument("dir", metavar="DIR")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--pareto", action="store_true", help="export the front's models")
    what.add_argument("--trials", nargs="+", metavar="ID", help="export these trials' models")
    objectives_arg(p)
    p.add_argument("--format", nargs="+", dest="formats", metavar="FORMAT", default=["onnx"],
                   choices=("onnx", "pt2", "state_dict"), help="onnx (default), pt2, state_dict; one or more")
    p.add_argument("--out", metavar="FOLDER", required=True,
                   help="new or empty folder, or an earlier export (replaced as a whole)")
    p.add_argument("--force", action="store_true", help="export suspect or degenerate trials too")
    p.add_argument("--examples", type=int, help="check agreement on the first N test images only (default: all "
                                                "the trial evaluated on)")
    p.add_argument("--device", default="cpu", help="torch device for rcsweep's model and the attack (default cpu)")
    p.add_argument("--data-dir", help="dataset folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="re-attack the front's models with torchattacks and compare robust accuracies",
                       description="Writes FILE (default DIR/verify.csv): per model rcsweep's robust accuracy and "
                                   "an independent one (torchattacks), side by side; a model whose rcsweep number "
                                   "is more than 1 point above the independent one is flagged suspect. Exit code "
                                   "0 even when some are (their count is printed). Needs torchattacks "
                                   "(pip install 'rcsweep[verify]').")
    p.add_argument("dir", metavar="DIR")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--pareto", action="store_true", help="verify the front's models (the default)")
    what.add_argument("--all", action="store_true", help="verify every finished trial whose model is at hand")
    what.add_argument("--trials", nargs="+", metavar="ID", help="verify these trials' models")
    objectives_arg(p)
    p.add_argument("--attack", choices=("apgd", "autoattack"), default="apgd",
                   help="apgd: APGD-CE then APGD-T on the survivors (default); autoattack: AutoAttack standard")
    p.add_argument("--steps", type=int, help="APGD steps (default: torchattacks' default, 10; apgd only)")
    p.add_argument("--examples", type=int, help="verify on the first N test images only (default: all the "
                                                "trial evaluated on)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", metavar="FILE", help="CSV to write (default DIR/verify.csv)")
    p.add_argument("--data-dir", help="dataset folder")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("flags", help="apply the installed flag rules (degenerate, suspect, collapsed) to a sweep again",
                       description="Derives every trial's flags again from its record.json (or, where the trial's "
                                   "folder is gone, from results.csv and verify.csv) and rewrites its results.csv "
                                   "row. Evaluates nothing.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--data-dir", help="dataset folder (for the majority-class rate of results without records)")
    p.set_defaults(func=cmd_flags)

    p = sub.add_parser("reevaluate", help="evaluate saved trials again with the installed evaluation code",
                       description="Runs each chosen trial's evaluation again on its saved model (no training): "
                                   "its record.json and results.csv row get the new clean and robust accuracies "
                                   "(the old ones are kept in the record's 'reevaluations'), and DIR/reevaluate.csv "
                                   "lists before and after.")
    p.add_argument("dir", metavar="DIR")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--outdated", action="store_true",
                      help="the finished trials evaluated with another attack than the installed code uses")
    what.add_argument("--all", action="store_true", help="every finished trial")
    what.add_argument("--trials", nargs="+", metavar="ID", help="these trials")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--data-dir", help="dataset folder")
    p.set_defaults(func=cmd_reevaluate)


def cmd_report(args) -> int:
    from analysis.common import load_sweep
    from analysis.report import representative_trials, write_report

    trials = args.features
    if trials is not None and not trials:
        trials = representative_trials(load_sweep(args.dir))

    def features(stem):  # called by write_report once its own tables and figures are written
        from .features import run_features

        run_features(args.dir, list(trials), stem, data_dir=args.data_dir)

    path = write_report(args.dir, args.out, args.objectives or sweep_objectives(args.dir), by=args.by,
                        features=features if trials else None)
    print(f"wrote {path} (figures and CSV tables beside it)")
    return 0


def cmd_features(args) -> int:
    from analysis.common import load_sweep
    from analysis.report import representative_trials

    from ..config import parse_number
    from ..errors import UserError
    from .features import run_features

    df = load_sweep(args.dir)
    trials = args.trials or representative_trials(df)
    if not trials:
        raise UserError(f"no usable finished trials in {args.dir} to analyse; name them with --trials")
    if args.examples < 1 or args.channels < 1:
        raise UserError("--examples and --channels must be >= 1")
    eps = parse_number(args.eps, "--eps") if args.eps is not None else None
    out = Path(args.out) if args.out else Path(args.dir) / "features"
    paths = run_features(args.dir, trials, out.with_suffix("") if out.suffix in (".png", ".svg", ".csv") else out,
                         n_examples=args.examples, eps=eps, steps=args.steps, layer_index=args.layer,
                         n_channels=args.channels, data_dir=args.data_dir)
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def cmd_flags(args) -> int:
    from .flags import refresh_flags

    out = refresh_flags(args.dir, args.data_dir)
    changed = out["changed"]
    print(f"{args.dir}/results.csv: {out['from_records']} trials judged from their record.json, "
          f"{out['from_results']} from results.csv alone; flags changed on {len(changed)} trials"
          + (f" ({', '.join(changed[:10])}{' ...' if len(changed) > 10 else ''})" if changed else "") + "; now: "
          + (", ".join(f"{n} {k}" for k, n in out["flags"].items()) or "no flags"))
    return 0


def cmd_reevaluate(args) -> int:
    from analysis.common import load_sweep

    from ..device import parse_device
    from ..errors import UserError
    from .reevaluate import outdated, run_reevaluate

    args.device = parse_device(args.device)  # a device this machine lacks: one line, before any work

    if args.trials:
        rows = chosen_rows(args)
    else:
        df = load_sweep(args.dir)
        rows = df[df["status"] == "finished"]
        if args.outdated:
            rows = outdated(args.dir, rows)
    if not len(rows):
        if args.outdated:
            print("no finished trial was evaluated with another attack than the installed code uses; nothing to do")
            return 0
        raise UserError(f"{args.dir} has no finished trials")
    print(f"re-evaluating {len(rows)} trial{'' if len(rows) == 1 else 's'}")

    def done(r, seconds):
        print(f"[{seconds:6.0f}s] {r['trial_id']}  robust_acc {r['robust_acc_before']:.3f} -> {r['robust_acc']:.3f}"
              f"  clean_acc {r['clean_acc_before']:.3f} -> {r['clean_acc']:.3f}", flush=True)

    _, path = run_reevaluate(args.dir, rows, args.device, args.data_dir, on_done=done)
    print(f"updated {len(rows)} records and their results.csv rows; wrote {path}")
    return 0


def cmd_export(args) -> int:
    import sys

    from ..errors import UserError
    from .export import ExportMismatch, export_trials

    if args.examples is not None and args.examples < 1:
        raise UserError("--examples must be >= 1")
    rows = chosen_rows(args)

    def done(card):
        checks = ", ".join(f"{name} {f['agreement']['agreement']:.1%} agree" for name, f in card["files"].items())
        print(f"{card['trial_id']}: {checks}" + "".join(f"; {n} {why}" for n, why in card["files_not_written"].items()),
              flush=True)

    try:
        out = export_trials(args.dir, rows, args.out, args.formats, args.force, args.examples, args.device,
                            args.data_dir, on_done=done)
    except ExportMismatch as e:
        sys.stderr.write(f"rcsweep: error: {e}\n")
        return 1
    print(f"exported {len(rows)} models to {out} (model_card.json beside each; index {out}/export.json)")
    return 0


def cmd_verify(args) -> int:
    from ..device import parse_device
    from ..errors import UserError
    from .verify import import_torchattacks, models_at_hand, run_verify

    import_torchattacks()
    args.device = parse_device(args.device)
    for name in ("examples", "steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1")
    if args.steps is not None and args.attack != "apgd":
        raise UserError("--steps applies to --attack apgd only (AutoAttack's steps are fixed)")
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() != ".csv":
        raise UserError(f"--out {out} must be a .csv file")
    if args.all:
        rows, missing = models_at_hand(args.dir)
        if missing:
            print(f"{len(missing)} finished trials have no saved model and are not verified: {', '.join(missing[:10])}"
                  + (" ..." if len(missing) > 10 else ""))
        if not len(rows):
            raise UserError(f"{args.dir}: no finished trial has a saved model to verify")
    else:
        rows = chosen_rows(args)
    table, path = run_verify(args.dir, rows, out, args.attack, args.steps, args.examples, args.device, args.data_dir)
    cols = ["trial_id", "n_examples", "clean_acc", "robust_acc_sweep", "robust_acc_rcsweep",
            "robust_acc_white_box", "robust_acc_independent", "gap", "suspect"]
    print("attacks: " + "; ".join(table["attack"].unique()))
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    sus = table[table["suspect"]]
    print(f"{len(sus)} of {len(table)} suspect" + (": " + ", ".join(sus["trial_id"]) if len(sus) else ""))
    print(f"wrote {path}; verdicts carried into {args.dir}/results.csv (verified_robust_acc, suspect)")
    return 0
