"""``python -m faast``: the command line (also what ``torchrun -m faast`` launches)."""

import sys

from faast.cli import main

if __name__ == "__main__":
    sys.exit(main())
