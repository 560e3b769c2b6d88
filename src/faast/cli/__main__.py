"""``python -m faast.cli``: the ``faast`` command."""

from faast.cli import run

run()
