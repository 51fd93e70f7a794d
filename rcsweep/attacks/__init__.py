"""Attacks and threat models. ``ATTACKS`` maps names to attack classes taking ``(threat, **kwargs)``.

``Square`` (the black-box Square Attack, run by torchattacks) is not in ``ATTACKS``: it returns the
examples it could not fool unchanged, while the registry's contract (``tests/test_attacks.py``) asks
every attack to perturb its inputs; the evaluation runs it on models that quantize their activations
(:mod:`rcsweep.evaluate`)."""
from ..registry import Registry
from .apgd import APGD
from .base import Attack, margin_loss
from .fgsm import FGSM
from .pgd import PGD
from .square import Square
from .threat import THREATS, L2Threat, LinfThreat, ThreatModel, threat_model

ATTACKS: Registry = Registry("attack")
ATTACKS.register("fgsm")(FGSM)
ATTACKS.register("pgd")(PGD)
ATTACKS.register("apgd")(APGD)


def make_attack(name: str, norm: str, eps: float, **kwargs) -> Attack:
    """An attack by registry name (or 'pkg.mod:Class') for the given norm and epsilon."""
    return ATTACKS.get(name)(threat_model(norm, eps), **kwargs)


__all__ = ["APGD", "ATTACKS", "Attack", "FGSM", "PGD", "Square", "THREATS", "L2Threat", "LinfThreat", "ThreatModel",
           "make_attack", "margin_loss", "threat_model"]
