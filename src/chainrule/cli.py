"""The `chainrule` command line: a thin layer over the library."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chainrule", description="Automatic differentiation and "
                                     "recurrent networks on NumPy.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("demo", help="a short tour of the autograd engine on the source texts' examples")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code.

    >>> main(["demo"]) == 0   # doctest: +ELLIPSIS
    1. The book's example ...
    True
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo
        run_demo()
        return 0
    parser.print_help(sys.stderr)
    return 2
