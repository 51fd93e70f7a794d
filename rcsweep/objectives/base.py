"""The training-objective contract: what one training step optimises, and what it costs.

An objective is one module holding an :class:`Objective` subclass and its own frozen parameter
dataclass (an :class:`ObjectiveParams`), registered by one line in ``__init__``. The trial
configuration reads the registry: the names ``pretrain`` and ``finetune`` accept, the parameters
``<objective>_<field>`` (``trades_beta``) with their defaults and ranges, and when those apply.

Objective modules import torch and the attacks inside their methods, not at the top: the trial
configuration (and so ``rcsweep validate``) reads their parameter classes and must stay free of
torch at import time.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from ..method_params import MethodParams, param  # noqa: F401 - objective modules import param from here


@dataclass(frozen=True)
class ObjectiveParams(MethodParams):
    """Base of an objective's parameters: numbers made with :func:`param` (default, range, unit),
    checked on construction. ``ConfigError.field`` is the field's name (the trial configuration
    prefixes the objective's)."""


@dataclass(frozen=True)
class NoParams(ObjectiveParams):
    """For objectives without parameters of their own."""


class Objective:
    """A training objective. Subclasses set ``name``, ``Params``, ``adversarial`` and implement
    :meth:`loss` and :meth:`forward_backward_passes`.

    ``adversarial``: whether it trains on perturbed inputs (then the stage's epsilon applies:
    ``eps_pretrain``/``eps_ramp_epochs`` or ``eps_finetune``). One instance serves one ``fit``, so
    it may keep state across epochs (:meth:`epoch_checks`).
    """

    name: ClassVar[str] = "objective"
    Params: ClassVar[type] = NoParams
    adversarial: ClassVar[bool] = True

    def __init__(self, params: ObjectiveParams | None = None):
        self.params = params if params is not None else self.Params()

    def forward_backward_passes(self, attack_steps: int) -> int:
        """Forward-backward passes per training example and epoch (for the FLOPs estimate), given
        the configuration's ``attack_steps``."""
        raise NotImplementedError

    def loss(self, model, x, y, threat, attack_steps: int):
        """``(loss, logits)`` of one batch in train mode: the scalar to minimise (with gradients
        to the weights) and the logits whose argmax counts as the training accuracy.

        Shape: ``x`` (N, C, H, W) in [0, 1]; ``y`` (N,); ``threat`` a
        :class:`rcsweep.attacks.ThreatModel` (norm, epsilon in pixel units) with ``eps > 0``."""
        raise NotImplementedError

    def epoch_checks(self, model, x, y, threat, device) -> dict:
        """Checks after each epoch on validation images (``threat`` at the stage's full epsilon);
        their keys join the epoch's stats and history. Default: none."""
        return {}

    def __repr__(self):
        return f"{type(self).__name__}({self.params})"


def param_fields(objective: type[Objective]) -> list[dataclasses.Field]:
    return list(dataclasses.fields(objective.Params))
