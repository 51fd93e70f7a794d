"""``rcsweep trial`` (one pipeline, locally, no Ray) and ``rcsweep eval`` (evaluate a saved model)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("trial", help="run one trial of a sweep file locally, without Ray",
                       description="Run pretrain -> compress -> fine-tune -> evaluate once. Searched parameters "
                                   "not given with --set take their defaults.")
    p.add_argument("sweep", help="sweep file (YAML)")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override any trial parameter (values parsed as YAML; fractions like 8/255 accepted)")
    p.add_argument("--out", help="output folder (must be empty or absent); default rcsweep-results/trials/<name>-<time>")
    p.add_argument("--data-dir", help="dataset root (default $RCSWEEP_DATA_DIR or ~/.cache/rcsweep/data)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.set_defaults(func=cmd_trial)

    e = sub.add_parser("eval", help="evaluate a saved model (clean, robust, robustness curve, masking checks)")
    e.add_argument("model", help="model folder, model.pt or model.json")
    e.add_argument("--dataset", help="dataset name (default: the model's)")
    e.add_argument("--eps", nargs="+", default=None, metavar="E",
                   help="epsilons in pixel units (fractions like 8/255 accepted); the first is eps_eval, "
                        "all form the robustness curve (default: the model's eps_eval)")
    e.add_argument("--norm", choices=("linf", "l2"), help="threat model norm (default: the model's)")
    e.add_argument("--steps", type=int, help="PGD steps (default: the model's eval_steps)")
    e.add_argument("--restarts", type=int, help="PGD restarts (default: the model's eval_restarts)")
    e.add_argument("--targets", type=int, help="APGD-T target classes instead of APGD-DLR, 0 for APGD-DLR "
                                                "(default: the model's eval_targets)")
    e.add_argument("--attack", default="full",
                   help="'full' (APGD-CE with restarts, then APGD-DLR on survivors; the default) or one registered "
                        "attack run alone (pgd, apgd, fgsm, or 'package.module:Class')")
    e.add_argument("--test-size", type=int, help="evaluate on the first N test images (default: the images the "
                                                  "model's trial was evaluated on, on its own dataset)")
    e.add_argument("--seed", type=int, default=None,
                   help="seed of the attacks' random starts (default: the model's trial seed, as its trial's "
                        "evaluation and rcsweep reevaluate use: the same settings give the same numbers)")
    e.add_argument("--data-dir")
    e.add_argument("--device")
    e.add_argument("--out", help="write the result as JSON to this file")
    e.set_defaults(func=cmd_eval)


def parse_sets(items: list[str]) -> dict:
    """``KEY=VALUE`` pairs -> dict, values parsed as YAML."""
    import yaml

    from ..errors import UserError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            raise UserError(f"--set {key}: cannot parse value {value!r}") from None
    return out


def _check_out(out: Path):
    from ..errors import UserError

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} is not empty; choose a new folder")


def cmd_trial(args) -> int:
    from ..errors import TrainingCollapsed
    from ..sweepfile import load_sweep

    spec = load_sweep(args.sweep)
    cfg = spec.trial_config(overrides=parse_sets(args.set))
    out = Path(args.out) if args.out else Path("rcsweep-results") / "trials" / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    _check_out(out)
    from ..data import load_dataset
    from ..pipeline import check_target, resolve_device, run_trial

    device = resolve_device(args.device)  # a device this machine lacks: one line, exit 2
    check_target(cfg)  # an unreachable compression target: one line, before anything is printed or trained
    load_dataset(cfg.dataset, "test", data_dir=args.data_dir, test_size=1)  # missing data: fail before training
    print(f"trial: {json.dumps({k: v for k, v in cfg.to_flat().items() if v is not None})}", flush=True)
    try:
        record = run_trial(cfg, out, data_dir=args.data_dir, device=device, energy=spec.energy)
    except TrainingCollapsed as e:
        sys.stderr.write(f"rcsweep: trial failed: {e}\n")
        return 1
    m = record["metrics"]
    print(f"device {record['runtime']['device']} ({record['runtime']['device_name']}), precision {cfg.precision}")
    print(f"clean_acc {m['clean_acc']:.4f}  robust_acc {m['robust_acc']:.4f} (eps {cfg.eps_eval:.4g}, {cfg.norm})"
          f"  model_bits {m['model_bits']:.3g}" + (f"  SUSPECT: {m['suspect_reason']}" if m["suspect"] else ""))
    stages = [m[k] for k in m if k.startswith("energy_kwh_")]
    print(f"energy {sum(stages):.3g} kWh ({m['energy_source']}), CO2 {m['co2_g']:.3g} g at "
          f"{spec.energy.grid_gco2_per_kwh:g} g/kWh")
    if m.get("degenerate"):
        print(f"DEGENERATE: {m['degenerate_reason']}")
    if record["evaluation"].get("weak_eval"):
        print(f"WEAK EVALUATION: {record['evaluation']['weak_eval']}")
    print(f"wrote {out / 'record.json'}, {out / 'model.pt'}, {out / 'model.json'}")
    return 0


def cmd_eval(args) -> int:
    from ..checkpoint import load_model, read_meta
    from ..config import TrialConfig, parse_number
    from ..data import dataset_info, load_dataset
    from ..errors import ConfigError, UserError
    from ..evaluate import evaluate
    from ..fileio import atomic_write_json
    from ..pipeline import resolve_device, seed_everything

    _, meta = read_meta(args.model)
    cfg = TrialConfig.from_flat(meta["config"])
    dataset = args.dataset or cfg.dataset
    norm = args.norm or cfg.norm
    eps = [parse_number(e, "--eps") for e in args.eps] if args.eps else [cfg.eps_eval]
    for x in eps:  # validate through the config's own epsilon rules, reported under the flag given
        try:
            TrialConfig(dataset=cfg.dataset, norm=norm, eps_eval=x)
        except ConfigError as e:
            raise UserError(f"--eps: {e.message}") from None
    for name in ("steps", "restarts", "test_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.targets is not None and args.targets < 0:
        raise UserError(f"--targets must be >= 0, got {args.targets}")
    attack_cls = None
    if args.attack != "full":
        from ..attacks import ATTACKS

        attack_cls = ATTACKS.get(args.attack)
    info = dataset_info(dataset)
    if info.shape != dataset_info(cfg.dataset).shape:
        raise UserError(f"--dataset {dataset} has images of shape {info.shape}, the model expects "
                        f"{dataset_info(cfg.dataset).shape}")
    device = resolve_device(args.device)
    test_size = args.test_size if args.test_size is not None or dataset != cfg.dataset else cfg.test_size
    x, y = load_dataset(dataset, "test", data_dir=args.data_dir, test_size=test_size)
    model = load_model(args.model, device)
    seed_everything(cfg.seed if args.seed is None else args.seed)  # as the trial's evaluate stage
    res = evaluate(model, x, y, norm=norm, eps_eval=eps[0], eps_curve=eps, steps=args.steps or cfg.eval_steps,
                   restarts=args.restarts or cfg.eval_restarts, device=device, num_classes=info.num_classes,
                   attack=attack_cls, targets=cfg.eval_targets if args.targets is None else args.targets)
    print(f"clean_acc {res.clean_acc:.4f}  robust_acc {res.robust_acc:.4f} (eps {eps[0]:.4g}, {norm}; {res.attack}; "
          f"{res.n_test} test images)")
    for e, a in res.robust_acc_curve.items():
        print(f"  eps {e:.4g}: robust_acc {a:.4f}")
    for name, c in res.checks.items():
        print(f"  check {name}: {'ok' if c['passed'] else 'FAILED'} ({c['detail']})")
    if res.suspect:
        print(f"SUSPECT: {res.suspect_reason}")
    if res.weak_eval:
        print(f"WEAK EVALUATION: {res.weak_eval}")
    if args.out:
        atomic_write_json(args.out, {"model": str(args.model), "dataset": dataset, **res.to_dict()})
        print(f"wrote {args.out}")
    return 0
