"""Which trial configurations are the same, how far apart two are, and the nearest one not run yet:
what the searcher (:mod:`.search`) needs to run no configuration twice (issue 15). Pure functions,
no study and no Ray.

- **Identity**: a configuration is keyed by its trial configuration
  (``SweepSpec.trial_config(point).to_flat()``: parameters that do not apply dropped, floats as
  drawn, on the space's ``step`` grid where it declares one; the seed is part of it), as sorted
  JSON (:func:`config_key`).
- **Distance** (:func:`config_distance`): how many parameters differ, then how far the numeric ones
  moved on their range in the space.
- **The nearest unseen** (:func:`nearest_unseen`): after ``SweepSearcher.MAX_REPEATS`` repeated
  suggestions the sampler keeps asking for a region it has run; the searcher issues that region's
  closest configuration not run instead (among a finite space's points, else among random draws).
"""
from __future__ import annotations

import json
import random


def config_key(cfg) -> str:
    """The identity of a trial configuration: its flat parameters as sorted JSON."""
    return json.dumps(cfg.to_flat(), sort_keys=True, default=str)


def finite_config_keys(spec) -> set | None:
    """The configuration keys (:func:`config_key`) of every point of ``spec``'s space (a
    ``SweepSpec``), or None where the space is not finite: its distinct configurations."""
    points = spec.finite_points()
    return None if points is None else {config_key(spec.trial_config(p)) for p in points}


def config_distance(a: dict, b: dict, space: dict) -> tuple:
    """(parameters that differ, the size of the move) between flat configurations ``a`` and ``b``:
    a numeric parameter of ``space`` (name -> ``Dist``) moves by |difference| / its range in the
    space, any other change counts 1 (a whole range), so that a neighbour one step along a numeric
    axis comes before one with another method."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    differ = [k for k in a.keys() | b.keys() if a.get(k) != b.get(k)]
    move = 0.0
    for k in differ:
        dist = space.get(k)
        if dist is not None and number(a.get(k)) and number(b.get(k)) and all(map(number, dist.values)):
            lo, hi = min(dist.values), max(dist.values)
            move += abs(a[k] - b[k]) / ((hi - lo) or 1)
        else:
            move += 1.0
    return len(differ), round(move, 12)


def nearest_unseen(spec, known, near: dict | None, rng: random.Random, draws, random_point):
    """``(point, cfg)``: the configuration of ``spec`` whose key is not in ``known`` that is nearest
    to the point ``near`` (:func:`config_distance` of their trial configurations), ties drawn with
    ``rng``; among all of a finite space's points, else among ``draws`` points of
    ``random_point(rng)``. None when every candidate is known. ``near`` None: any unseen candidate,
    drawn with ``rng``."""
    points = spec.finite_points()
    if points is None:
        points = [random_point(rng) for _ in range(draws)]
    fresh = [(p, cfg) for p, cfg in ((p, spec.trial_config(p)) for p in points)
             if config_key(cfg) not in known]
    if not fresh:
        return None
    if near is not None:
        target = spec.trial_config(near).to_flat()
        dist = [config_distance(cfg.to_flat(), target, spec.space) for _, cfg in fresh]
        best = min(dist)
        fresh = [pc for pc, d in zip(fresh, dist) if d == best]
    return rng.choice(fresh)
