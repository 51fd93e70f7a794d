"""The ``rcsweep`` command line: argument parsing only, the top of the layer stack (.importlinter).
Each group of subcommands lives in its own module exposing ``register(subparsers)``: the command
layer's (:mod:`rcsweep.commands`) and the analysis layer's (:mod:`analysis.commands`). Handlers
import torch/Ray lazily so ``rcsweep --help`` is instant.

Exit codes: 0 success, 1 some trials failed or a run error, 2 bad input (one line, no traceback).
"""
from __future__ import annotations

import argparse
import os
import sys

from analysis import commands as analysis_commands

from . import __version__
from .commands import sweep, trial, verbs
from .errors import UserError

COMMAND_MODULES = (trial, sweep, analysis_commands, verbs)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2
        sys.stderr.write(f"rcsweep: error: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rcsweep", description="Sweeps that make neural networks small and robust.")
    parser.add_argument("--version", action="version", version=f"rcsweep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except UserError as e:
        sys.stderr.write(f"rcsweep: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("rcsweep: interrupted\n")
        return 130
    except BrokenPipeError:  # `rcsweep validate ... | head`: the reader left; no traceback (Python docs, signal)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        return 141
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
