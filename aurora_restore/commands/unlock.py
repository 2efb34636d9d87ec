"""Release a target's lock left by a dead operation (shows the holder first; audited)."""

from __future__ import annotations

import argparse
import sys

from aurora_restore.commands._stack import EXIT_FAILED, EXIT_MISUSE, EXIT_OK, add_stack_arguments, connect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """TARGET, --region (the target's), the stack flags, --yes, --force, --reason."""
    parser.add_argument("target_cluster_id", metavar="TARGET", help="the target cluster id")
    add_stack_arguments(
        parser, region_help="the target cluster's region (also the stack's unless --stack-region)"
    )
    parser.add_argument(
        "--stack-region", metavar="REGION", help="the stack's region when it differs from --region"
    )
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--force", action="store_true", help="release even though the holder's execution is still running"
    )
    parser.add_argument(
        "--reason", default="released by an operator with aurora-restore unlock", help="for the audit trail"
    )


def run(args: argparse.Namespace) -> int:
    """Show the holder, confirm, release."""
    from aurora_restore import operator
    from aurora_restore.boundary import OperatorError

    if not args.region:
        raise OperatorError("--region REGION (the target's region) is required", exit_code=EXIT_MISUSE)
    stack = connect(args, region=args.stack_region or args.region)
    info = operator.lock_info(stack, args.target_cluster_id, args.region)
    if info.holder is None:
        print(f"No lock on {args.target_cluster_id} in {args.region}: nothing to release.")
        return EXIT_OK
    owner = info.holder.get("lock_owner")
    print(f"Lock on {args.target_cluster_id} in {args.region}")
    print(f"  held by operation  {owner}")
    print(f"  since              {info.holder.get('acquired_at', '?')}")
    if info.operation is not None:
        print(
            f"  operation status   {info.operation.get('status')} "
            f"(step {info.operation.get('current_step', '-')})"
        )
    print(f"  execution status   {info.execution_status or 'unknown'}")
    if info.execution_status in operator.GOING_STATUSES and not args.force:
        raise OperatorError(
            f"operation {owner} is still running and may be working on the target; stop its execution "
            "first, or pass --force if you are sure it is dead"
        )
    if not args.yes:
        if not sys.stdin.isatty():
            raise OperatorError("refusing to release without confirmation; pass --yes", exit_code=EXIT_MISUSE)
        answer = input(f"Release the lock held by {owner}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("Not released.")
            return EXIT_FAILED
    released = operator.unlock(stack, args.target_cluster_id, args.region, reason=args.reason)
    if released is None:
        print("The lock was released or taken over meanwhile; nothing released.")
        return EXIT_FAILED
    print(
        f"Released. Recorded in the audit trail of {released}: "
        f"aurora-restore history {released} {stack.flags()}"
    )
    return EXIT_OK
