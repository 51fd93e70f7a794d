"""TPE proposals ranked by optimistic hypervolume improvement, using the objectives a configuration
fixes before it trains (``tpe_front``).

In rcsweep's studies some objectives are known before a trial runs: a model's size
(``model_bits``) follows from its compression alone, a route's training FLOPs from its pretraining,
compression and fine-tuning epochs. Plain multi-objective TPE (Optuna's ``TPESampler``; Ozaki et
al., "Multiobjective Tree-Structured Parzen Estimator", JAIR 2022) learns them like any other
objective, so it has to *discover* the efficiency axis: on the digits benchmark it would return to
a compression level only after a lucky draw. This sampler keeps TPE's model and adds that knowledge:

1. TPE proposes ``n_candidates`` configurations (each its own best of ``n_ei_candidates`` draws,
   as TPE suggests one; the first is exactly what TPE alone would suggest).
2. Each candidate's *known* objectives are taken from the completed trials that share the
   parameters they depend on (exact: they are deterministic); where none does, measured without
   training where the sweep can (``SamplerContext.measure``: a size from an untrained compressed
   copy, :class:`rcsweep.sweep.study.SizeProbe`); else from a least-squares line over the numeric
   parameters of the completed trials with its method choices (sparsity -> log10 size); with fewer
   than two such trials, optimistically the best value seen. (Before sizes were measured, that
   guess let a running trial believed at the smallest size cover every unmeasured proposal: one of
   three trained digits sweeps then fell back to TPE's own proposals 4 times in its first 15 trials.)
3. Its *unknown* objectives (robust accuracy) get an optimistic bound: each of its choices
   (pretraining, fine-tuning, ...) bounds it by the best value shown with that choice in a trial at
   least as costly in the known objectives the choice does not set (a dense reference bounds every
   compression of its pretraining), the lowest of these; else the best any trial at least as costly
   in every known objective has shown, else the best seen. A smaller model is assumed no better than
   what its choices reached larger; it may be worse, which the next trials find out.
   That bound is then lowered to an additive model's upper confidence bound (``kappa`` posterior
   standard deviations above its mean; :class:`_AdditiveModel`: Bayesian linear regression on the
   choices, the numeric parameters and the known objectives), so that a choice that did worse than
   another across the compressions tried is expected to do worse at one not tried: the per-choice
   bound alone kept every fine-tuning method as promising as its best result at a larger size (the
   dense reference, which is not fine-tuned, made ``finetune: none`` look as good as adversarial
   fine-tuning at every size). Replayed on the digits grid, 60 seeds: 52 of 60 searches at
   99% of the grid's hypervolume within 19 trials, against 43 of 60 without it.
4. The candidate chosen is the one whose optimistic point adds the most hypervolume to the front of
   the completed trials (expected hypervolume improvement with an optimistic, noise-free surrogate:
   Emmerich et al., "Single- and multiobjective evolutionary optimization assisted by Gaussian
   random field metamodels", IEEE TEC 2006; optimism in the face of uncertainty as in UCB, Auer et
   al. 2002). Running trials enter the front at their own optimistic points (the "kriging believer"
   of Ginsbourger et al., 2010), so two trials in flight spread out. Configurations that already
   ran, failed or run are never preferred. Where no candidate improves the front (or every
   candidate has run), the unseen configuration of a finite space (every distinct one, enumerated:
   at most 10,000) with the largest improvement is taken; where none improves either, TPE's own
   proposal. (Taking TPE's proposal whenever its candidates added nothing spent trials on
   standard-pretrained routes; ranking every configuration of a finite space at every suggestion,
   TPE's proposals aside, was worse: 5 of 10 replays at 99% by 19 trials against 7 of 10.)
   Hypervolume: moocore's (``moocore.hypervolume``), on the scale the study is told (sizes as
   log10), reference point the worst value of each objective seen. Only feasible trials count (Optuna constraint values all
   <= 0: a sweep's ``constraints``, and ``trusted``, which suspect and degenerate trials fail), as
   only they count on the analysis's front.
5. A candidate's improvement is weighted by the chance that its training does *not* collapse
   (expected improvement times the probability of feasibility, as in constrained Bayesian
   optimisation: Gardner et al., ICML 2014; Gelbart et al., UAI 2014). The chance of a collapse is
   a kernel estimate over the trials of the same method (pretraining, compression, fine-tuning):
   collapsed trials against trained ones near it in the numeric parameters, shrunk toward the
   method's rate (:meth:`_StudyView.collapse_probability`). TPE itself leaves failed trials out of
   its model, so without this a sampler whose bounds favour cheap, aggressive configurations
   proposes one collapse after another (8 to 13 of 40 trials on the continuous digits space).

During TPE's startup trials (random: by default only one after the references) nothing changes.
The sweep layer tells the sampler which objectives are known and on which parameters
(``SamplerContext.known``) and which parameters of a suggestion apply
(``SamplerContext.applicable``: the conditional space); without them this is TPE. Measured on the
digits benchmark (replay and trained sweeps): docs/results/search/README.md.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Optional

from .base import Sampler, SamplerContext, option
from .tpe import TPE, TPEOptions


@dataclass(frozen=True)
class TPEFrontOptions(TPEOptions):
    """TPE's options, except that ``n_startup_trials`` defaults to the references plus one: the
    ranking needs the references and one searched trial (the references carry no compression
    parameter to learn a size from), not a random tenth of the budget; and ``n_candidates``
    (default 16): TPE proposals ranked per suggestion by optimistic hypervolume improvement (1:
    TPE alone); ``kappa`` (default 1): how optimistic the additive model's bound on an unknown
    objective is (step 3 of the module; null: that bound is not used)."""
    n_startup_trials: Optional[int] = option(None, 0, 10_000, "random trials first, references counted")
    n_candidates: int = option(16, 1, 1000, "TPE proposals ranked per suggestion")
    kappa: Optional[float] = option(1.0, 0, 100, "posterior standard deviations in the additive model's "
                                    "upper confidence bound on each unknown objective (null: no such bound)")


class TPEFront(Sampler):
    name = "tpe_front"
    Params = TPEFrontOptions
    summary = "TPE's proposals ranked by optimistic hypervolume improvement, sizes and costs known before training"

    def startup(self, ctx: SamplerContext) -> int:
        n = self.options.n_startup_trials
        return n if n is not None else ctx.n_references + 1

    def build(self, ctx: SamplerContext):
        o = self.options
        tpe = {k: getattr(o, k) for k in TPEOptions.__dataclass_fields__}
        tpe["n_startup_trials"] = self.startup(ctx)
        base = TPE(TPEOptions(**tpe)).build(ctx)
        return _front_sampler_class()(base, ctx, o.n_candidates, o.kappa)


_CLASS = None


def _front_sampler_class():
    """The Optuna sampler class (made on first use: this module must not import Optuna at the top)."""
    global _CLASS
    if _CLASS is None:
        from optuna.samplers import BaseSampler

        class FrontTPESampler(_FrontTPE, BaseSampler):
            pass

        _CLASS = FrontTPESampler
    return _CLASS


class _FrontTPE:
    """``optuna.samplers.BaseSampler`` wrapping a ``TPESampler`` (``base``): see the module."""

    def __init__(self, base, ctx: SamplerContext, n_candidates: int, kappa: Optional[float] = None):
        self._base = base
        self._known = {int(k): tuple(v) for k, v in dict(ctx.known or {}).items()}
        self._applicable = ctx.applicable
        self._measure = ctx.measure
        self._n = n_candidates
        self._kappa = kappa

    # -- delegated ---------------------------------------------------------------------------------
    def infer_relative_search_space(self, study, trial):
        return self._base.infer_relative_search_space(study, trial)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self._base.before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        self._base.after_trial(study, trial, state, values)

    def reseed_rng(self):
        self._base.reseed_rng()

    # -- the choice --------------------------------------------------------------------------------
    def sample_relative(self, study, trial, search_space):
        first = self._base.sample_relative(study, trial, search_space)
        if not first or self._n <= 1 or not self._known or len(study.directions) < 2:
            return first  # TPE's startup (it returns nothing then), or nothing known to use
        candidates = [first] + [self._base.sample_relative(study, trial, search_space) for _ in range(self._n - 1)]
        view = _StudyView(study, self._known, self._applicable, self._measure, self._kappa)
        if not view.complete:
            return first
        # TPE leaves one-valued parameters (``compression: {choice: [prune_structured]}``) out of its
        # relative space: a candidate is scored as the whole configuration it will be
        fixed = _single_valued(study, search_space)
        scores = [view.score({**fixed, **c}) for c in candidates]
        if max(scores) <= 0:  # no proposal adds to the front: rank the unseen configurations of a finite space
            whole = {**{n: _one(v) for n, v in fixed.items()}, **search_space}
            unseen = [(c, view.score(c)) for c in _enumerate(whole, self._applicable)]
            unseen = [({k: v for k, v in c.items() if k in search_space}, x) for c, x in unseen if x >= 0]
            if unseen and (max(x for _, x in unseen) > 0 or max(scores) < 0):
                candidates, scores = [c for c, _ in unseen], [x for _, x in unseen]
        best = max(range(len(candidates)), key=lambda i: (scores[i], -i))
        return candidates[best]


class _StudyView:
    """What the study's trials say, on a minimisation scale (maximised objectives negated)."""

    def __init__(self, study, known: dict, applicable, measure=None, kappa: Optional[float] = None):
        from optuna.trial import TrialState

        self.measure = measure
        self.sign = [1.0 if d.name == "MINIMIZE" else -1.0 for d in study.directions]
        self.known = {j: deps for j, deps in known.items() if j < len(self.sign)}
        self.unknown = [j for j in range(len(self.sign)) if j not in self.known]
        self.deps = set().union(*self.known.values()) if self.known else set()
        self.applicable = applicable or (lambda p: dict(p))
        self.seen: set = set()  # configurations that ran, failed or run
        self.complete, running = [], []
        self.trained, self.collapsed = [], []  # configurations that trained / whose training collapsed
        self.ranges: dict = {}  # numeric parameter -> (low, high) of its distribution
        for t in study.get_trials(deepcopy=False):
            if t.user_attrs.get("repeat_of") is not None:
                continue
            cfg = self.applicable(t.params)
            feasible = all(v is None or v <= 0 for v in (t.constraints or {}).values())
            if t.state == TrialState.COMPLETE and t.values is not None:
                self.trained.append(cfg)
                if feasible:
                    self.complete.append((cfg, [s * v for s, v in zip(self.sign, t.values)]))
            elif t.state == TrialState.FAIL and t.user_attrs.get("deterministic_failure"):
                self.collapsed.append(cfg)
            elif t.state == TrialState.RUNNING:
                running.append(cfg)
            self.seen.add(_key(cfg))
            for name, d in t.distributions.items():
                span = _span(d)
                if span is not None and name not in self.ranges:
                    self.ranges[name] = span
        self.model = _AdditiveModel.fit(self, kappa) if kappa is not None else None
        # running trials enter the front at their optimistic points (kriging believer)
        self.front = [v for _, v in self.complete] + [p for p in map(self.optimistic, running) if p is not None]
        # no feasible trial yet (every one flagged, or outside the constraints): no front, no reference
        # point; the sampler then takes TPE's own proposal (:meth:`_FrontTPE.sample_relative`)
        self.ref = [max(v[j] for v in self.front) for j in range(len(self.sign))] if self.front else None
        self.base_hv = _hv(self.front, self.ref) if self.front else 0.0

    def score(self, params: dict) -> float:
        """The optimistic hypervolume improvement of ``params`` (-1 for a configuration seen)."""
        cfg = self.applicable(params)
        if _key(cfg) in self.seen:
            return -1.0
        point = self.optimistic(cfg)
        if point is None or self.ref is None:
            return 0.0
        return (_hv(self.front + [point], self.ref) - self.base_hv) * (1.0 - self.collapse_probability(cfg))

    def collapse_probability(self, cfg: dict) -> float:
        """The chance that ``cfg``'s training collapses, from the trials with its categorical choices
        (a configuration's method: pretraining, compression, fine-tuning): a Gaussian kernel over
        their numeric parameters, each scaled to its range (bandwidth ``BANDWIDTH``), shrunk toward
        the rate of its method as a whole,
        ``p = (C + p_method) / (C + S + 1)`` with ``C``, ``S`` the kernel-weighted collapsed and
        trained neighbours and ``p_method = c / (c + s + 1)`` over all of them (0 where none
        collapsed: an untried region is not penalised). 0 without any collapse."""
        if not self.collapsed:
            return 0.0
        method = _method(cfg)
        near = {True: 0.0, False: 0.0}
        count = {True: 0, False: 0}
        for other, failed in [(c, True) for c in self.collapsed] + [(c, False) for c in self.trained]:
            if _method(other) != method:
                continue
            count[failed] += 1
            near[failed] += self._kernel(cfg, other)
        if not count[True]:
            return 0.0
        rate = count[True] / (count[True] + count[False] + 1.0)
        return (near[True] + rate) / (near[True] + near[False] + 1.0)

    def _kernel(self, a: dict, b: dict) -> float:
        d2 = 0.0
        for k, x in a.items():
            if _number(x) and _number(b.get(k)):
                lo, hi = self.ranges.get(k, (x, x))
                d2 += ((float(x) - float(b[k])) / (hi - lo)) ** 2 if hi > lo else 0.0
        return math.exp(-0.5 * d2 / BANDWIDTH ** 2)

    def optimistic(self, cfg: dict):
        """The optimistic objective vector of configuration ``cfg`` (minimisation scale): each unknown
        objective at the lower of its choices' bound (:meth:`_bound`) and the additive model's."""
        point = self._bound(cfg)
        if point is not None and self.model is not None:
            point = self.model.tighten(cfg, point)
        return point

    def _bound(self, cfg: dict):
        """The objective vector of ``cfg`` with its known objectives and each unknown one bounded by
        what its choices have shown (step 3 of the module); None before any trial completes."""
        if not self.complete:
            return None
        point = [0.0] * len(self.sign)
        for j, deps in self.known.items():
            point[j] = self._known_value(j, deps, cfg)
        costlier = [(c, v) for c, v in self.complete if all(v[j] >= point[j] - 1e-12 for j in self.known)]
        pool = [v for _, v in costlier] or [v for _, v in self.complete]
        # each choice bounds it by the best shown with that choice in a trial at least as costly in
        # the known objectives the choice does not set (a route choice: all of them; pretraining in
        # a sweep whose route FLOPs are an objective: the size); a choice that sets them all, none
        choices = []
        for k, x in cfg.items():
            free = [j for j, deps in self.known.items() if k not in deps]
            if not _number(x) and free:
                choices.append((k, x, [v for c, v in self.complete
                                       if c.get(k) == x and all(v[j] >= point[j] - 1e-12 for j in free)]))
        for j in self.unknown:
            bound = min(v[j] for v in pool)  # the best any route has shown at this cost or more
            for k, x, shown in choices:
                if shown:
                    bound = max(bound, min(v[j] for v in shown))
            point[j] = bound
        return point

    def _known_value(self, j: int, deps, cfg: dict) -> float:
        want = {k: cfg[k] for k in deps if k in cfg}
        same = [v[j] for c, v in self.complete if {k: c[k] for k in deps if k in c} == want]
        if same:
            return sum(same) / len(same)
        measured = self.measure(cfg).get(j) if self.measure is not None else None
        if measured is not None and math.isfinite(measured):
            return self.sign[j] * measured
        fitted = self._fit(j, deps, want)
        return fitted if fitted is not None else min(v[j] for _, v in self.complete)

    def _fit(self, j: int, deps, want: dict):
        """Least squares of objective ``j`` on the numeric parameters in ``want`` over the completed
        trials with its other (categorical) values and the same parameters; None with too few."""
        import numpy as np

        numeric = sorted(k for k, x in want.items() if _number(x))
        if not numeric:
            return None
        rows, ys = [], []
        for c, v in self.complete:
            got = {k: c[k] for k in deps if k in c}
            if got.keys() != want.keys() or any(got[k] != want[k] for k in want if k not in numeric):
                continue
            rows.append([float(got[k]) for k in numeric] + [1.0])
            ys.append(v[j])
        if len({tuple(r) for r in rows}) <= len(numeric):
            return None
        coef, *_ = np.linalg.lstsq(np.array(rows), np.array(ys), rcond=None)
        value = float(np.dot([float(want[k]) for k in numeric] + [1.0], coef))
        return value if math.isfinite(value) else None


class _AdditiveModel:
    """Bayesian linear regression of each unknown objective on a configuration's choices (one
    indicator per categorical value), its numeric parameters (each scaled to its range) and its known
    objectives (scaled to the range the completed trials span), with an intercept: the conjugate
    Gaussian posterior (Bishop, "Pattern Recognition and Machine Learning", 2006, section 3.3) with
    prior standard deviation ``PRIOR_SD`` per coefficient and the noise variance estimated from the
    residuals, at least ``NOISE_SD`` squared. Its upper confidence bound, mean plus ``kappa``
    posterior standard deviations of the mean (as in GP-UCB: Srinivas et al., ICML 2010), caps the
    optimistic point: a choice that did worse than another across the compressions tried is
    predicted to do worse at one not tried, which the per-choice bound cannot say. Closed form in
    numpy (a few small matrices per suggestion); scikit-learn's ``BayesianRidge`` would add a
    dependency for the same ten lines."""

    def __init__(self, view: "_StudyView", names: list, scale: dict, coef, cov, kappa: float):
        self.view, self.names, self.scale, self.coef, self.cov, self.kappa = view, names, scale, coef, cov, kappa

    @classmethod
    def fit(cls, view: "_StudyView", kappa: float):
        """The model of ``view``'s completed trials; None with fewer than ``MIN_TRIALS`` of them."""
        import numpy as np

        if len(view.complete) < MIN_TRIALS or not view.unknown:
            return None
        scale = {j: (min(v[j] for _, v in view.complete), max(v[j] for _, v in view.complete)) for j in view.known}
        model = cls(view, [], scale, None, None, kappa)
        names = {}
        for c, v in view.complete:
            for n in model._features(c, v):
                names.setdefault(n, None)
        model.names = list(names)
        X = np.array([model._row(c, v) for c, v in view.complete])
        Y = np.array([[v[j] for j in view.unknown] for _, v in view.complete])
        noise = NOISE_SD ** 2
        for _ in range(2):  # the posterior at the floor, then at the noise its residuals show
            precision = X.T @ X + noise / PRIOR_SD ** 2 * np.eye(len(model.names))
            model.coef = np.linalg.solve(precision, X.T @ Y)
            noise = max(float(((Y - X @ model.coef) ** 2).mean()), NOISE_SD ** 2)
        model.cov = noise * np.linalg.inv(precision)
        return model

    def _features(self, cfg: dict, point) -> dict:
        out = {"1": 1.0}
        for k, x in cfg.items():
            if _number(x):
                lo, hi = self.view.ranges.get(k, (x, x))
                out[k] = (float(x) - lo) / (hi - lo) if hi > lo else 0.0
            else:
                out[f"{k}={x}"] = 1.0
        for j, (lo, hi) in self.scale.items():
            out[f"objective {j}"] = (point[j] - lo) / (hi - lo) if hi > lo else 0.0
        return out

    def _row(self, cfg: dict, point) -> list:
        f = self._features(cfg, point)
        return [f.get(n, 0.0) for n in self.names]

    def tighten(self, cfg: dict, point: list) -> list:
        """``point`` (minimisation scale, known objectives set) with each unknown objective no
        better than the model's upper confidence bound for ``cfg``."""
        import numpy as np

        x = np.array(self._row(cfg, point))
        sd = math.sqrt(max(float(x @ self.cov @ x), 0.0))
        out = list(point)
        for i, j in enumerate(self.view.unknown):
            out[j] = max(out[j], float(x @ self.coef[:, i]) - self.kappa * sd)
        return out


MIN_TRIALS = 3  # completed trials before the additive model bounds anything
PRIOR_SD = 0.5  # of each coefficient, in the objective's units (robust accuracy: a fraction)
NOISE_SD = 0.03  # the least residual noise assumed (a few test images' worth of accuracy)


def _single_valued(study, search_space: dict) -> dict:
    """``{name: value}`` of the parameters outside ``search_space`` that the study's trials drew from
    a one-valued distribution (Optuna's relative search space leaves them out; a reference's
    widened distribution of the same name is not one-valued and is skipped)."""
    out = {}
    for t in study.get_trials(deepcopy=False):
        for name, d in t.distributions.items():
            if name not in search_space and name in t.params and d.single():
                out[name] = t.params[name]
    return out


def _one(value):
    from optuna.distributions import CategoricalDistribution

    return CategoricalDistribution([value])


def _enumerate(search_space: dict, applicable, limit: int = 10_000) -> list:
    """Every distinct configuration of a finite ``search_space`` (categorical and integer
    distributions, at most ``limit`` combinations; else none), parameters that do not apply dropped."""
    import itertools

    from optuna.distributions import CategoricalDistribution, IntDistribution

    axes = []
    for name, d in sorted(search_space.items()):
        if isinstance(d, CategoricalDistribution):
            axes.append([(name, c) for c in d.choices])
        elif isinstance(d, IntDistribution) and not d.log:
            axes.append([(name, v) for v in range(d.low, d.high + 1, d.step)])
        else:
            return []
    if math.prod(len(a) for a in axes) > limit:
        return []
    out, seen = [], set()
    for combo in itertools.product(*axes):
        params = dict(combo)
        cfg = applicable(params) if applicable else params
        if _key(cfg) not in seen:
            seen.add(_key(cfg))
            out.append(params)
    return out


BANDWIDTH = 0.2  # of the collapse kernel, in units of each numeric parameter's range


def _method(cfg: dict) -> tuple:
    """A configuration's categorical choices (its method), which a collapse estimate must share."""
    return tuple(sorted((k, str(x)) for k, x in cfg.items() if not _number(x)))


def _span(d):
    """(low, high) of a numeric Optuna distribution (a categorical one of numbers included), or None."""
    choices = getattr(d, "choices", None)
    if choices is not None:
        nums = [c for c in choices if _number(c)]
        return (min(nums), max(nums)) if nums and len(nums) == len(choices) else None
    low, high = getattr(d, "low", None), getattr(d, "high", None)
    return (low, high) if _number(low) and _number(high) else None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _key(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True, default=str)


def _hv(points, ref) -> float:
    """Hypervolume (minimisation) of ``points`` up to ``ref`` (moocore); points beyond ``ref`` in
    any objective add nothing."""
    import numpy as np
    import moocore

    inside = [p for p in points if all(a < b for a, b in zip(p, ref))]
    if not inside:
        return 0.0
    return float(moocore.hypervolume(np.array(inside, dtype=float), ref=np.array(ref, dtype=float)))
