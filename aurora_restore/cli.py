"""The ``aurora-restore`` command. Each subcommand lives in its own module, imported when used."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand -> module under aurora_restore.commands with ``add_arguments(parser)`` and ``run(args)``.
COMMANDS: dict[str, str] = {
    "steps": "steps",
    "simulate": "simulate",
    "start": "start",
    "status": "status",
    "history": "history",
    "watch": "watch",
    "retry": "retry",
    "unlock": "unlock",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="aurora-restore",
        description="Refresh an Aurora PostgreSQL cluster from a snapshot, safely; rehearse it locally.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"aurora_restore.commands.{module_name}")
        command = sub.add_parser(
            name, help=module.__doc__.strip().splitlines()[0] if module.__doc__ else None
        )
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 success, 1 failure, 2 misuse)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
