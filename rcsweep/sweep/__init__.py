"""The sweep layer: the only package that imports Ray.

- :mod:`.space`: the sweep's conditional search space as an Optuna define-by-run function.
- :mod:`.search`: the Ray Tune searcher (references first, then the Optuna study's suggestions),
  with :mod:`.suggestions` (what it issues next: no repeats, lookahead), :mod:`.study` (the study's
  journal, what a trial tells it, resume) and :mod:`.identity` (configuration keys and distance).
- :mod:`.store`: shared pretraining, one model per distinct pretraining configuration.
- :mod:`.checkpoints`: a trial's stage checkpoints, verified and with fallback.
- :mod:`.trainable`: the Ray Tune function trainable that runs one trial's stages.
- :mod:`.progress`: the live progress table (a Tune callback).
- :mod:`.runner`: ``run_sweep``, ``resume_sweep`` (the CLI verbs are :mod:`rcsweep.commands.sweep`).
- :mod:`.folder` (the sweep folder's own files) and :mod:`.summary` (``sweep_status``, what a
  sweep would run, its Pareto set) need no Ray, so ``rcsweep status`` and ``validate`` start none.

Importing this package imports nothing heavy; Ray is imported by the modules that need it.
"""
