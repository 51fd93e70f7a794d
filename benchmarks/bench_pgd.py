"""PGD speed benchmark (issue 2).

1. Cost of a k-step PGD attack relative to k forward+backward (input-gradient) passes of the same
   model and batch: target <= 1.10.
2. Evaluation throughput: rcsweep's PGD with early stopping (examples leave once misclassified,
   restarts attack only survivors) against torchattacks' PGD called once per restart with the same
   steps and restarts (worst case per example kept), on a standard model whose robust accuracy is
   <= 50%: target >= 1.5x faster per example, with robust accuracy no higher than the loop's.

Usage: python benchmarks/bench_pgd.py [--dataset fashion_mnist] [--smoke-test]
(:func:`pgd_cost` also measures part 1 on a GPU, in benchmarks/gpu_check.py.)
"""
from __future__ import annotations

import argparse
import time

import torch

from rcsweep import TrialConfig
from rcsweep.attacks import PGD, LinfThreat
from rcsweep.attacks.base import input_grad
from rcsweep.pipeline import load_trial_data, pretrain


def best_of(fn, repeats=3, device="cpu"):
    """The least wall time of ``repeats`` calls of ``fn`` (CUDA work waited for)."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return min(times)


def pgd_cost(model, xb, yb, eps: float, steps: int, repeats: int = 3, device="cpu", bf16: bool = False) -> dict:
    """Seconds of a ``steps``-step PGD attack (L-inf, ``eps`` in pixel units) on the batch ``xb``,
    ``yb`` against ``steps`` forward+backward input-gradient passes of the same model and batch,
    both under bf16 autocast when ``bf16``; ``ratio`` is their quotient (target <= 1.10). One
    warm-up call of each first (CUDA kernels, autotuning)."""
    from rcsweep.device import autocast

    pgd = PGD(LinfThreat(eps), steps=steps)

    def passes():
        with autocast(device, bf16):
            for _ in range(steps):
                input_grad(model, xb, yb, "ce")

    def attack():
        with autocast(device, bf16):
            pgd(model, xb, yb)

    passes(), attack()
    t_passes, t_pgd = best_of(passes, repeats, device), best_of(attack, repeats, device)
    return {"steps": steps, "batch": len(xb), "bf16": bf16, "pgd_s": t_pgd, "passes_s": t_passes,
            "ratio": t_pgd / t_passes}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--smoke-test", action="store_true")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--eps", type=float, default=0.1)
    args = ap.parse_args()
    torch.manual_seed(0)
    n_train, n_test = (500, 200) if args.smoke_test else (5000, 1000)
    cfg = TrialConfig(dataset=args.dataset, pretrain_epochs=2, train_size=n_train, test_size=n_test,
                      batch_size=32, lr=0.02)
    data = load_trial_data(cfg)
    model, _ = pretrain(cfg, data, "cpu")
    model.eval()
    x, y = data.test
    k = args.steps

    # 1. k-step PGD vs k forward+backward passes, one batch of 128
    cost = pgd_cost(model, x[:128], y[:128], args.eps, k)
    print(f"[1] PGD-{k} on a batch of 128: {cost['pgd_s'] * 1e3:.1f} ms; {k} forward+backward passes: "
          f"{cost['passes_s'] * 1e3:.1f} ms; ratio {cost['ratio']:.3f} (target <= 1.10)")

    # 2. evaluation: early-stopping PGD vs torchattacks' PGD once per restart
    import torchattacks

    from rcsweep.evaluate import robust_correct

    with torch.no_grad():
        clean = model(x).argmax(1) == y
    ours_attack = PGD(LinfThreat(args.eps), steps=k, restarts=args.restarts, early_stop=True)

    def ours():
        return robust_correct(model, x, y, [ours_attack], "cpu").float().mean().item()

    def theirs():
        alive = clean.clone()
        atk = torchattacks.PGD(model, eps=args.eps, alpha=2.5 * args.eps / k, steps=k, random_start=True)
        for _ in range(args.restarts):
            for i in range(0, len(x), 256):
                xa = atk(x[i:i + 256], y[i:i + 256])
                with torch.no_grad():
                    alive[i:i + 256] &= model(xa).argmax(1) == y[i:i + 256]
        return alive.float().mean().item()

    t0 = time.perf_counter()
    ra_ours = ours()
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ra_theirs = theirs()
    t_theirs = time.perf_counter() - t0
    print(f"[2] {len(x)} {args.dataset} test images, eps {args.eps}, {k} steps x {args.restarts} restarts: "
          f"clean acc {clean.float().mean():.3f}")
    print(f"    rcsweep PGD (early stop): robust acc {ra_ours:.3f}, {t_ours / len(x) * 1e3:.2f} ms/example")
    print(f"    torchattacks PGD x restarts: robust acc {ra_theirs:.3f}, {t_theirs / len(x) * 1e3:.2f} ms/example")
    print(f"    speedup {t_theirs / t_ours:.2f}x (target >= 1.5x); robust acc ours <= theirs: {ra_ours <= ra_theirs}")


if __name__ == "__main__":
    main()
