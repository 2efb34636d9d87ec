"""Run an operation's request again: same operation id, new execution; steps adopt what exists."""

from __future__ import annotations

import argparse

from aurora_restore.commands._stack import EXIT_OK, add_operation_argument, add_stack_arguments, connect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """OP and the stack flags."""
    add_operation_argument(parser, "the operation id to run again")
    add_stack_arguments(parser)
    parser.add_argument("--watch", action="store_true", help="follow the new execution until it ends")


def run(args: argparse.Namespace) -> int:
    """Start the retry and say how to follow it."""
    from aurora_restore import operator

    stack = connect(args)
    started = operator.retry(stack, args.operation_id)
    print(f"Operation {started.operation_id} restarted: {started.execution_arn}")
    print("  the copy and clusters this operation already made are adopted, not made again")
    if args.watch:
        from aurora_restore.commands.watch import watch_execution

        return watch_execution(stack, started.operation_id, started.execution_arn)
    print(f"  follow it:  aurora-restore watch {started.operation_id} {stack.flags()}")
    return EXIT_OK
