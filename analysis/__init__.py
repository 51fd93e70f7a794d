"""rcsweep's analysis layer: it reads a sweep's results (``results.csv`` and the saved trials) and
never runs training. Computation and drawing are separate:

- :mod:`analysis.pareto`: fronts over any objectives, group fronts, hypervolume (compute);
- :mod:`analysis.tables`: the study's tables, confidence intervals, robustness curves, compute;
- :mod:`analysis.features`: per-layer feature change under attack, activation maps;
- :mod:`analysis.compare`: several sweeps, hypervolume against finished trials;
- :mod:`analysis.verify`: the front's models attacked again by torchattacks (independent check);
- :mod:`analysis.plots`: every figure (draw);
- :mod:`analysis.report`, :mod:`analysis.export`: files for users;
- :mod:`analysis.commands`: ``rcsweep pareto | report | features | export | compare | verify``.
"""
