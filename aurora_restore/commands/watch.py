"""Follow an operation's execution live (a progress bar for copies) until it ends."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from aurora_restore import render
from aurora_restore.commands._stack import EXIT_FAILED, EXIT_OK, add_stack_arguments, connect, guarded

if TYPE_CHECKING:
    from aurora_restore.history import StateRun


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """OP, the stack flags and the poll interval."""
    parser.add_argument("operation_id", metavar="OP", help="the operation id")
    add_stack_arguments(parser)
    parser.add_argument(
        "--interval",
        metavar="SECONDS",
        type=float,
        default=5.0,
        help="how often to read the history (default 5)",
    )


def _print_change(change: str, run: StateRun) -> None:
    if change == "entered" and run.type == "Task":
        print(f"  {run.name:<20} ...", flush=True)
    elif change == "exited" or run.type == "Fail":
        print(render.state_line(run), flush=True)


def watch_execution(stack: Any, execution_arn: str, interval: float = 5.0) -> int:
    """Print the execution's progress until it ends; 0 when it SUCCEEDED, 1 otherwise."""
    from aurora_restore import operator

    print(f"Watching {execution_arn}", flush=True)
    history = operator.follow(stack.client("stepfunctions"), execution_arn, _print_change, interval=interval)
    print(f"\n{history.status}")
    failure = history.failure() if history.status != "SUCCEEDED" else None
    if failure:
        where = f" in {failure['state']} ({failure['step']})" if failure.get("state") else ""
        print(f"  error: {failure['type']}{where}: {failure['message']}")
    return EXIT_OK if history.status == "SUCCEEDED" else EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    """Watch the operation's latest execution."""
    from aurora_restore import operator

    def action() -> int:
        stack = connect(args)
        arn = operator.latest_execution_arn(stack, args.operation_id)
        return watch_execution(stack, arn, args.interval)

    return guarded(action, "watch")
