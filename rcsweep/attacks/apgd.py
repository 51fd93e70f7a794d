from __future__ import annotations

import torch

from .base import Attack, input_grad, margin_loss
from .threat import ThreatModel


def _checkpoints(steps: int) -> list[int]:
    """APGD's step-size checkpoints: p0 = 0, p1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({int(round(q * steps)) for q in p if 0 < q < 1})


class APGD(Attack):
    """Auto-PGD (Croce & Hein, ICML 2020): PGD with momentum and a step size that halves when
    progress stalls, so no step size needs tuning. Written here (not imported from auto-attack) to
    run on rcsweep's threat-model objects and drop examples as soon as they are misclassified.

    Arguments: ``threat`` (norm and epsilon in pixel units), ``steps=20``, ``restarts=1``,
    ``loss='ce'`` (or ``'dlr'``, ``'cw'``), ``rho=0.75``, ``early_stop=True``, ``targets=0``.
    With ``targets=k`` (k >= 1) it is APGD-T: the targeted DLR loss, run once per target class
    (the 2nd to (k+1)th highest logits of the clean example), each on the examples still standing.
    Example: ``APGD(LinfThreat(8/255), steps=50, loss='dlr')(model, x, y)``.
    """

    name = "apgd"

    def __init__(self, threat: ThreatModel, steps: int = 20, restarts: int = 1, loss: str = "ce",
                 rho: float = 0.75, early_stop: bool = True, targets: int = 0):
        super().__init__(threat)
        if steps < 1 or restarts < 1 or targets < 0:
            raise ValueError("steps and restarts must be >= 1, targets >= 0")
        self.steps, self.restarts, self.rho, self.early_stop = steps, restarts, rho, early_stop
        self.targets, self.loss = targets, "dlr-t" if targets else loss

    def forward(self, model, x, y):
        if self.threat.eps == 0:
            return x.clone()
        best = x.clone()
        active = torch.arange(len(x), device=x.device)
        if not self.targets:
            ranks = [None]
        else:
            with torch.no_grad():
                order = model(x).sort(dim=1, descending=True).indices
            if order.shape[1] < 4:
                raise ValueError(f"APGD-T needs at least 4 classes (its targeted DLR loss), got {order.shape[1]}")
            ranks = range(1, min(self.targets, order.shape[1] - 1) + 1)
        for rank in ranks:
            for _ in range(self.restarts):
                if len(active) == 0:
                    return best
                target = None
                if rank is not None:  # the rank-th most likely class other than the label
                    ranked = order[active]
                    others = ranked[ranked != y[active, None]].view(len(active), -1)
                    target = others[:, rank - 1]
                x_a, fooled = self._run(model, x[active], y[active], target)
                best[active] = x_a
                if self.early_stop:
                    active = active[~fooled]
        return best

    def _run(self, model, x, y, target=None):
        t, n = self.threat, len(x)
        dev = x.device
        shape = (-1,) + (1,) * (x.dim() - 1)
        out = x.clone()  # per example: the first fooling point, else the highest-loss point
        fooled = torch.zeros(n, dtype=torch.bool, device=dev)
        checkpoints = set(_checkpoints(self.steps))
        # state of the examples still attacked (idx into the batch)
        idx = torch.arange(n, device=dev)
        x_k = t.random_init(x)
        logits, grad = input_grad(model, x_k, y, self.loss, target)
        loss = margin_loss(logits, y, self.loss, target).detach()
        eta = torch.full((n,), 2.0 * t.eps, device=dev)
        x_best, loss_best, grad_best = x_k.clone(), loss.clone(), grad.clone()
        x_prev = x_k.clone()
        improved = torch.zeros(n, device=dev)  # steps since the last checkpoint where the loss rose
        loss_best_at_ckpt, eta_at_ckpt = loss_best.clone(), eta.clone()
        last_ckpt = 0
        for k in range(self.steps + 1):
            hit = logits.argmax(1) != y[idx]
            if hit.any():
                out[idx[hit]] = x_k[hit]
                fooled[idx[hit]] = True
            if self.early_stop and hit.any():
                keep = ~hit
                idx = idx[keep]
                x_k, x_prev, grad, loss, eta = x_k[keep], x_prev[keep], grad[keep], loss[keep], eta[keep]
                x_best, loss_best, grad_best = x_best[keep], loss_best[keep], grad_best[keep]
                improved, loss_best_at_ckpt, eta_at_ckpt = improved[keep], loss_best_at_ckpt[keep], eta_at_ckpt[keep]
            if k == self.steps or len(idx) == 0:
                break
            xo = x[idx]
            z = t.project(_step(t, x_k, grad, eta.view(shape)), xo)
            alpha = 0.75 if k > 0 else 1.0
            x_new = t.project(x_k + alpha * (z - x_k) + (1 - alpha) * (x_k - x_prev), xo)
            x_prev = x_k
            x_k = x_new
            tg = None if target is None else target[idx]
            logits, grad = input_grad(model, x_k, y[idx], self.loss, tg)
            loss = margin_loss(logits, y[idx], self.loss, tg).detach()
            rose = loss > loss_best
            improved += rose.float()
            x_best[rose], loss_best[rose], grad_best[rose] = x_k[rose], loss[rose], grad[rose]
            if (k + 1) in checkpoints:
                interval = k + 1 - last_ckpt
                cond1 = improved < self.rho * interval
                cond2 = (eta == eta_at_ckpt) & (loss_best == loss_best_at_ckpt)
                halve = cond1 | cond2
                eta_at_ckpt = eta.clone()
                loss_best_at_ckpt = loss_best.clone()
                eta = torch.where(halve, eta / 2, eta)
                if halve.any():  # restart halving examples from their best point
                    x_k = torch.where(halve.view(shape), x_best, x_k)
                    grad = torch.where(halve.view(shape), grad_best, grad)
                improved.zero_()
                last_ckpt = k + 1
        survivors = ~fooled
        if survivors.any():  # survivors keep their highest-loss point
            still = torch.isin(idx, survivors.nonzero().squeeze(1))
            out[idx[still]] = x_best[still]
        return out, fooled


def _step(threat: ThreatModel, x, grad, eta):
    """A step of per-example length ``eta`` (a broadcastable tensor) in the threat's norm."""
    unit = threat.step(torch.zeros_like(x), grad, 1.0)
    return x + eta * unit
