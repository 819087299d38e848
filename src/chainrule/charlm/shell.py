"""What the shell sees of the `chainrule` command: its version (`chainrule --version`) and its completion
scripts for bash and zsh (`chainrule completion bash|zsh`), generated from the argument parser by shtab, so
they follow every option as it is added."""
from __future__ import annotations

import argparse
from importlib import metadata

SHELLS = ("bash", "zsh")
# arguments that name a file or a folder: the shell completes paths for them
_PATH_ARGUMENTS = {"checkpoint", "text", "out", "text_file", "prime_file", "resume", "tensorboard", "corpus"}


def installed_version() -> str:
    """The version of the installed `chainrule` distribution (its package metadata); "unknown (not
    installed)" when it runs from a source tree that pip never installed.

    >>> installed_version().count(".") >= 1
    True
    """
    try:
        return metadata.version("chainrule")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell` ("bash" or "zsh") of the command `parser` describes.

    Raises ValueError for another shell.

    >>> parser = argparse.ArgumentParser(prog="tool")
    >>> parser.add_argument("--size") and None
    >>> "--size" in completion_script(parser, "bash")
    True
    """
    if shell not in SHELLS:
        raise ValueError(f"completion is generated for {' or '.join(SHELLS)}, got {shell!r}")
    import shtab

    for action in _all_actions(parser):
        if action.dest in _PATH_ARGUMENTS and action.nargs != 0:
            action.complete = shtab.FILE  # type: ignore[attr-defined]  # shtab reads this attribute it documents
    return shtab.complete(parser, shell=shell)


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every argument of the parser and of its subcommands, walked without recursion."""
    found: list[argparse.Action] = []
    pending = [parser]
    while pending:
        current = pending.pop()
        for action in current._actions:
            found.append(action)
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    return found
