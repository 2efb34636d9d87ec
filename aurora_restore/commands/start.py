"""Start a refresh on the deployed stack (validated locally first; see the runbook on repeated starts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aurora_restore.commands._stack import EXIT_MISUSE, EXIT_OK, add_stack_arguments, connect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--input FILE and the stack flags."""
    parser.add_argument(
        "--input",
        metavar="FILE",
        required=True,
        help='the request ({"body": {...}} or the fields themselves); without operation_id every '
        "start is a new operation, with one a repeated start finds the running execution",
    )
    add_stack_arguments(parser)
    parser.add_argument("--watch", action="store_true", help="follow the execution until it ends")


def read_request(path: str) -> dict[str, Any]:
    """The request file as a JSON object; OperatorError (misuse) saying what is wrong with it."""
    from aurora_restore.boundary import OperatorError

    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise OperatorError(
            f"--input {path}: cannot read it ({exc.strerror or exc})", exit_code=EXIT_MISUSE
        ) from None
    except ValueError as exc:
        raise OperatorError(f"--input {path}: not valid JSON ({exc})", exit_code=EXIT_MISUSE) from None
    except RecursionError:
        raise OperatorError(
            f"--input {path}: nested too deeply to read; a request is a JSON object a few levels deep",
            exit_code=EXIT_MISUSE,
        ) from None
    if not isinstance(raw, dict):
        raise OperatorError(
            f"--input {path}: must be a JSON object (the request), got {type(raw).__name__}",
            exit_code=EXIT_MISUSE,
        )
    return raw


def run(args: argparse.Namespace) -> int:
    """Validate, start, print how to follow it."""
    from aurora_restore import operator

    raw = read_request(args.input)
    # Before any AWS call: an input over the size the state machine can carry is refused here.
    from dispatcher.request import check_input_size

    check_input_size(raw)
    stack = connect(args)
    started = operator.start(stack, raw)
    request = started.request
    verb = "is already running" if started.already_running else "started"
    print(f"Operation {started.operation_id} {verb}: {started.execution_arn}")
    if request is not None:
        print(
            f"  {request.snapshot_id} ({request.source_region}) -> {request.target_cluster_id} "
            f"({request.target_region}), strategy {request.strategy}"
        )
    if args.watch:
        from aurora_restore.commands.watch import watch_execution

        return watch_execution(stack, started.operation_id, started.execution_arn)
    print(f"  follow it:  aurora-restore watch {started.operation_id} {stack.flags()}")
    return EXIT_OK
