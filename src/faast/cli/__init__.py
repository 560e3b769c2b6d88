"""The ``faast`` command line: one sub-command module per job."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules that each define ``register(subparsers)``; a sub-command sets ``func`` on its parser.
COMMAND_MODULES = (
    "faast.cli.assets_cmd",
    "faast.cli.demo_cmd",
    "faast.cli.classify_cmd",
    "faast.cli.solve_cmd",
    "faast.cli.lm_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faast",
        description="Forward-only test-time learning with closed-form fast weights.",
    )
    parser.add_argument("--version", action="version", version=f"faast {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        print(f"faast {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _version() -> str:
    from faast import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
