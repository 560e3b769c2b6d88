"""``python -m faast.cli``: the ``faast`` command."""

import sys

from faast.cli import main

sys.exit(main())
