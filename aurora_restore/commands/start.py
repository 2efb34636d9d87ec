"""Start a refresh on the deployed stack (validated locally first; a repeated start is idempotent)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aurora_restore.commands._stack import EXIT_MISUSE, EXIT_OK, add_stack_arguments, connect, guarded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--input FILE and the stack flags."""
    parser.add_argument(
        "--input", metavar="FILE", required=True, help='the request (the seed\'s {"body": ...})'
    )
    add_stack_arguments(parser)
    parser.add_argument("--watch", action="store_true", help="follow the execution until it ends")


def run(args: argparse.Namespace) -> int:
    """Validate, start, print how to follow it."""
    from aurora_restore import operator
    from aurora_restore.operator import OperatorError

    def action() -> int:
        try:
            raw = json.loads(Path(args.input).read_text())
        except (OSError, ValueError) as exc:
            raise OperatorError(f"--input {args.input}: {exc}", exit_code=EXIT_MISUSE) from None
        if not isinstance(raw, dict):
            raise OperatorError(f"--input {args.input}: must be a JSON object", exit_code=EXIT_MISUSE)
        # Before any AWS call: an input over the size the state machine can carry is refused here.
        from dispatcher.request import check_input_size

        check_input_size(raw)
        stack = connect(args)
        started = operator.start(stack, raw)
        request = started.request
        verb = "already running" if started.already_running else "started"
        print(f"Operation {started.operation_id} {verb}: {started.execution_arn}")
        if request is not None:
            print(
                f"  {request.snapshot_id} ({request.source_region}) -> {request.target_cluster_id} "
                f"({request.target_region}), strategy {request.strategy}"
            )
        if args.watch:
            from aurora_restore.commands.watch import watch_execution

            return watch_execution(stack, started.execution_arn)
        print(f"  follow it:  aurora-restore watch {started.operation_id} --stack {stack.name}")
        return EXIT_OK

    return guarded(action, "start")
