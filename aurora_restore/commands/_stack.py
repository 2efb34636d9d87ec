"""Flags shared by the commands that operate a deployed stack.

Errors are not handled here: every command runs inside ``aurora_restore.boundary.run``, which
turns whatever goes wrong into one line and an exit code.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from aurora_restore.boundary import EXIT_FAILED, EXIT_MISUSE, EXIT_OK

__all__ = [
    "EXIT_FAILED",
    "EXIT_MISUSE",
    "EXIT_OK",
    "add_operation_argument",
    "add_stack_arguments",
    "connect",
]


def add_stack_arguments(parser: argparse.ArgumentParser, *, region_help: str | None = None) -> None:
    """--stack, --region, --profile, as the AWS CLI takes them."""
    parser.add_argument(
        "--stack",
        metavar="NAME",
        default=os.environ.get("AURORA_RESTORE_STACK"),
        help="the deployed CloudFormation stack (default: $AURORA_RESTORE_STACK)",
    )
    parser.add_argument(
        "--region", metavar="REGION", help=region_help or "the stack's region (default: the AWS CLI's)"
    )
    parser.add_argument("--profile", metavar="PROFILE", help="AWS CLI profile to use")


def operation_id(text: str) -> str:
    """An operation id as typed on the command line; refused at once when it cannot be one."""
    from dispatcher.request import OPERATION_ID_PATTERN

    if not OPERATION_ID_PATTERN.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an operation id: 1-64 letters, digits, '-' or '_' "
            "(aurora-restore start prints it; notifications carry it as operation_id)"
        )
    return text


def add_operation_argument(parser: argparse.ArgumentParser, help_text: str = "the operation id") -> None:
    """The OP positional argument, checked as an operation id."""
    parser.add_argument("operation_id", metavar="OP", type=operation_id, help=help_text)


def connect(args: argparse.Namespace, region: str | None = None) -> Any:
    """The deployed stack named by --stack."""
    from aurora_restore.boundary import OperatorError
    from aurora_restore.operator import DeployedStack

    if not args.stack:
        raise OperatorError("--stack NAME is required (or set AURORA_RESTORE_STACK)", exit_code=EXIT_MISUSE)
    return DeployedStack.connect(args.stack, region=region or args.region, profile=args.profile)
