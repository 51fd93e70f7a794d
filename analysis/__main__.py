"""``python -m analysis COMMAND ...`` is ``rcsweep COMMAND ...`` (``python -m analysis pareto DIR``).

An entry point, not part of the analysis layer: it runs the CLI, which sits above every layer, so
it is the layer contract's one ignored import (``.importlinter``). The analysis modules themselves
no longer run as scripts (``python -m analysis.pareto DIR`` is now ``python -m analysis pareto DIR``):
a ``__main__`` block in them would import the CLI from below it.
"""
import sys

from rcsweep.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
