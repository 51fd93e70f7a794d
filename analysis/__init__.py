"""rcsweep's analysis layer: it reads a sweep's results (``results.csv``, ``verify.csv``,
``reevaluate.csv`` and the saved trials' records) and draws; it never loads a model, runs an attack,
trains or rewrites results (that is :mod:`rcsweep.commands`). Computation and drawing are separate:

- :mod:`analysis.common`: usable and excluded rows, labels, trial folders, test-set sizes, CSV;
- :mod:`analysis.pareto`: fronts over any objectives, group fronts, hypervolume (compute; the pure
  functions underneath are :mod:`rcsweep.pareto`) and the front's files;
- :mod:`analysis.tables`: the study's tables, confidence intervals, robustness curves, compute;
- :mod:`analysis.compare`: several sweeps, hypervolume against finished trials;
- :mod:`analysis.plots` (fronts, comparisons; every figure importable from it),
  :mod:`analysis.curve_plots`, :mod:`analysis.feature_plots`, :mod:`analysis.style`: the figures (draw);
- :mod:`analysis.report`: ``report.md`` with its tables and figures;
- :mod:`analysis.commands`: ``rcsweep pareto | compare``.
"""
