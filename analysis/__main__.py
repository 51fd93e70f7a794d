"""``python -m analysis COMMAND ...`` is ``rcsweep COMMAND ...`` (pareto, report, features, export,
compare); each analysis module also runs alone, e.g. ``python -m analysis.pareto DIR``."""
import sys

from rcsweep.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
