"""`python -m chainrule` runs the command-line interface, `chainrule.charlm.cli` (the `chainrule` script is
this `main`)."""
import sys


def main(argv=None) -> int:
    """The command line, with Ctrl-C during its imports (before `cli.main` handles it) ending in one line."""
    import signal

    if getattr(signal.getsignal(signal.SIGINT), "__name__", "") == "_interrupted_while_starting":
        signal.signal(signal.SIGINT, signal.default_int_handler)   # set by the package while it imported
    try:
        from .charlm.cli import main as cli_main
        from .charlm.distributed import run_on_every_rank

        return run_on_every_rank(lambda: cli_main(argv))   # under MPI: a failing rank ends the whole job
    except KeyboardInterrupt:
        if "--debug" in (sys.argv[1:] if argv is None else argv):
            raise
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
