"""The ``petite`` command line: one sub-command module per concern under ``commands/``.

Every :class:`PetiteError` (and argparse usage error) ends the program with a one-line
message on stderr and exit code 2; no traceback reaches the user.

Every sub-command takes ``--progress-json``: instead of a progress bar, each progress event
is written to standard error as one JSON object per line (see
:class:`PETITELib.progress.JsonLinesProgress`); standard output keeps the command's own
output. Commands without long work report no events. The Slicer module runs ``petite`` this
way in a separate process.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from . import __version__
from .errors import Cancelled, PetiteError

# Each module defines ``register(subparsers)``; the parser it adds sets ``func(args) -> int``.
COMMAND_MODULES = (
    "PETITELib.commands.methods",
    "PETITELib.commands.cohort",
    "PETITELib.commands.simulate",
    "PETITELib.commands.train",
    "PETITELib.commands.reconstruct",
    "PETITELib.commands.evaluate",
    "PETITELib.commands.bench",
    "PETITELib.commands.cost",
    "PETITELib.commands.demo",
    "PETITELib.commands.zoo",
    "PETITELib.commands.federated",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default prints usage too)
        sys.stderr.write(f"petite: error: {message}\n")
        sys.exit(2)


def _command_parsers(parser: argparse.ArgumentParser):
    """The parsers of the runnable sub-commands below ``parser`` (nested ones too, e.g. ``zoo rebuild``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                children = list(_command_parsers(sub))
                yield from children or [sub]


def build_parser() -> argparse.ArgumentParser:
    """The full ``petite`` argument parser with every registered sub-command."""
    parser = _Parser(prog="petite", description="PETITE: PEFT for multi-scanner PET scan-time reduction")
    parser.add_argument("--version", action="version", version=f"petite {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for command in _command_parsers(parser):
        command.add_argument("--progress-json", action="store_true",
                             help="report progress as one JSON object per line on stderr instead of a "
                                  "progress bar (for programs that run petite)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``petite`` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Cancelled as exc:
        sys.stderr.write(f"petite: {exc}\n")
        return 130
    except PetiteError as exc:
        sys.stderr.write(f"petite: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("petite: interrupted\n")
        return 130
    except BrokenPipeError:  # e.g. `petite methods | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
