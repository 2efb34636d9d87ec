"""Show an operation's status (from its execution), its state item, its target's lock and what to do next."""

from __future__ import annotations

import argparse
import json
from typing import Any

from aurora_restore.commands._stack import (
    EXIT_FAILED,
    EXIT_OK,
    add_operation_argument,
    add_stack_arguments,
    connect,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """OP and the stack flags."""
    add_operation_argument(parser)
    add_stack_arguments(parser)
    parser.add_argument(
        "--json", action="store_true", help="print the status, state item, execution and lock as JSON"
    )


def lock_line(found: Any) -> str | None:
    """The target's lock in words."""
    lock = found.lock
    if lock is None:
        return None
    if lock.holder is None:
        return f"free ({lock.target_cluster_id} in {lock.target_region})"
    since = f" since {lock.since}" if lock.since else ""
    if lock.holder != found.operation_id:
        return f"held by operation {lock.holder}{since}"
    if found.stopped:
        return f"still held by this operation{since}: no other operation can refresh {lock.target_cluster_id}"
    return f"held by this operation{since} (released when it ends)"


def check_lines(item: dict[str, Any], execution: dict[str, Any]) -> list[str]:
    """The validation gate's results of the operation's latest execution, one line each."""
    from dispatcher.store import execution_record
    from refresh.checks import check_line

    records = item.get("executions") if isinstance(item.get("executions"), dict) else {}
    record = execution_record(item, execution.get("arn")) if execution.get("arn") else {}
    if not record and records:
        # No execution known (gone after 90 days): the most recently updated record that ran checks.
        record = next(
            (r for r in reversed(list(records.values())) if isinstance(r, dict) and r.get("checks")), {}
        )
    return [check_line(result) for result in record.get("checks") or [] if isinstance(result, dict)]


def run(args: argparse.Namespace) -> int:
    """Print the status; exit 1 when the operation failed, timed out or was stopped."""
    from aurora_restore import operator

    stack = connect(args)
    found = operator.status(stack, args.operation_id)
    if args.json:
        print(json.dumps(found.to_dict(), indent=2, default=str))
        return EXIT_FAILED if found.stopped else EXIT_OK
    item = found.item or {}
    execution = found.execution or {}
    print(f"Operation {found.operation_id}: {found.status}")
    target = item.get("target_cluster_id")
    if target:
        print(f"  target:        {target} ({item.get('target_region')})")
    print(f"  current step:  {item.get('current_step', '-')}")
    print(f"  started:       {item.get('started_at') or execution.get('started') or '-'}")
    finished = item.get("finished_at") or execution.get("stopped")
    if finished:
        print(f"  finished:      {finished}")
    error = found.error
    if error:
        where = f" in {error['step']}" if error.get("step") else ""
        print(f"  error:         {error.get('type')}{where}: {error.get('message')}")
    durations = item.get("step_durations_ms") or {}
    if durations:
        shown = ", ".join(f"{step} {ms / 1000:.1f} s" for step, ms in durations.items())
        print(f"  step times:    {shown}")
    for index, line in enumerate(check_lines(item, execution)):
        print(f"  {'checks:' if index == 0 else '':<14} {line}")
    if execution:
        print(f"  execution:     {execution.get('status')}  {execution.get('arn')}")
    else:
        print("  execution:     not found (Step Functions keeps closed executions for 90 days)")
    if found.item is None:
        print("  state item:    none yet (the first step has not run)")
    elif item.get("status") != found.status and found.stopped:
        print(
            f"  state item:    says {item.get('status')}: the execution ended {found.status} before a step "
            "could record it"
        )
    elif item.get("status") != found.status:
        print(f"  state item:    says {item.get('status')} (the steps update it as they run)")
    shown_lock = lock_line(found)
    if shown_lock:
        print(f"  lock:          {shown_lock}")
    for index, step in enumerate(operator.next_steps(stack, found)):
        print(f"  {'next:' if index == 0 else '':<14} {step}")
    return EXIT_FAILED if found.stopped else EXIT_OK
