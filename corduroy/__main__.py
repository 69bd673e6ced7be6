"""``python -m corduroy`` and the ``corduroy`` console script: the command line (see :mod:`corduroy.cli`)."""
import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
