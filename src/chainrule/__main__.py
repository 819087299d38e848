"""`python -m chainrule` runs the command-line interface (`chainrule.charlm.cli`)."""
from .charlm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
