"""Running rcsweep's command line inside a test."""
from rcsweep.cli import main


def run_cli(argv, capsys):
    """``(exit code, captured output)`` of ``rcsweep ARGV``; argparse's SystemExit counts as its exit code."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr()
