"""The ``aurora-restore`` command. Each subcommand lives in its own module, imported when used."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from aurora_restore import boundary

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
#: What a shell reports for a program a closed pipe stopped (128 + SIGPIPE), as ``yes | head``
#: does; 1 would read as "the operation failed".
EXIT_BROKEN_PIPE = 141

EPILOG = """exit codes: 0 done (the operation succeeded or is running), 1 the operation failed,
timed out or was stopped, 2 the command could not do its job (bad argument, unknown stack or
operation, AWS refused or unreachable), 130 interrupted."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a misuse reported on one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(boundary.EXIT_MISUSE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(
        prog="aurora-restore",
        description="Refresh an Aurora PostgreSQL cluster from a snapshot, safely; rehearse it locally.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"aurora_restore.commands.{module_name}")
        command = sub.add_parser(
            name,
            help=module.__doc__.strip().splitlines()[0] if module.__doc__ else None,
            epilog=EPILOG,
        )
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 success, 1 failed operation, 2 misuse; see EPILOG)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = boundary.run(args.command, lambda: int(args._module.run(args) or 0))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``history | head``). Python's documented recipe: point stdout at
        # devnull so the interpreter's own flush at exit does not fail a second time.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    return code


def _silence_stdout() -> None:
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return  # not a real file (a test's buffer): nothing left to flush at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)


if __name__ == "__main__":
    sys.exit(main())
