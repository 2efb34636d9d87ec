"""Flags and error handling shared by the commands that operate a deployed stack."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_MISUSE = 0, 1, 2


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


def connect(args: argparse.Namespace, region: str | None = None) -> Any:
    """The deployed stack named by --stack."""
    from aurora_restore.operator import DeployedStack, OperatorError

    if not args.stack:
        raise OperatorError("--stack NAME is required (or set AURORA_RESTORE_STACK)", exit_code=EXIT_MISUSE)
    return DeployedStack.connect(args.stack, region=region or args.region, profile=args.profile)


def guarded(action: Callable[[], int], command: str) -> int:
    """Run ``action``; print OperatorError / ValidationError the operator's way and exit accordingly."""
    from aurora_restore.operator import OperatorError
    from dispatcher.errors import ValidationError

    try:
        return action()
    except OperatorError as exc:
        print(f"aurora-restore {command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValidationError as exc:
        print(
            f"aurora-restore {command}: the request is not valid, nothing was started: {exc}", file=sys.stderr
        )
        return EXIT_MISUSE
