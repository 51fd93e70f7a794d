"""The command layer: CLI verbs that do work, above the sweep layer, the analysis layer and the
pipeline (they may use all three; nothing below imports them).

- :mod:`.trial`: ``rcsweep trial`` (one pipeline, no Ray) and ``rcsweep eval`` (a saved model);
- :mod:`.sweep`: ``rcsweep run | resume | status | validate`` (the sweep layer, :mod:`rcsweep.sweep`);
- :mod:`.verbs`: registration and handlers of the verbs on a sweep's saved trials, whose work is in
  :mod:`.verify` (independent re-attack), :mod:`.reevaluate` (evaluation again with the installed
  code), :mod:`.features` (feature-map change under attack; drawn by :mod:`analysis.plots`),
  :mod:`.export` (the chosen models as checked ONNX / torch.export files) and :mod:`.flags` (the flag rules applied again),
  and ``rcsweep report``, which runs :mod:`analysis.report` (with ``--features``, after the
  feature-map analysis).

Each registration module imports nothing heavy, so ``rcsweep --help`` stays instant.
"""
