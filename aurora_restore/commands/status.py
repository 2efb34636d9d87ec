"""Show an operation's state item and its execution's status."""

from __future__ import annotations

import argparse
import json

from aurora_restore.commands._stack import EXIT_FAILED, EXIT_OK, add_stack_arguments, connect, guarded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """OP and the stack flags."""
    parser.add_argument("operation_id", metavar="OP", help="the operation id")
    add_stack_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the state item and execution as JSON")


def run(args: argparse.Namespace) -> int:
    """Print the status; exit 1 when the operation FAILED."""
    from aurora_restore import operator

    def action() -> int:
        found = operator.status(connect(args), args.operation_id)
        item, execution = found["operation"], found["execution"]
        if args.json:
            print(json.dumps(found, indent=2, default=str))
        else:
            print(f"Operation {item['operation_id']}: {item.get('status')}")
            target = item.get("target_cluster_id")
            if target:
                print(f"  target:        {target} ({item.get('target_region')})")
            print(f"  current step:  {item.get('current_step', '-')}")
            print(f"  started:       {item.get('started_at', '-')}")
            if item.get("finished_at"):
                print(f"  finished:      {item['finished_at']}")
            error = item.get("error") or item.get("last_error")
            if isinstance(error, dict):
                print(
                    f"  error:         {error.get('type')} in {error.get('step', '?')}: "
                    f"{error.get('message')}"
                )
            durations = item.get("step_durations_ms") or {}
            if durations:
                shown = ", ".join(f"{step} {ms / 1000:.1f} s" for step, ms in durations.items())
                print(f"  step times:    {shown}")
            print(f"  execution:     {execution.get('status')}  {execution.get('arn')}")
        return EXIT_FAILED if item.get("status") == "FAILED" else EXIT_OK

    return guarded(action, "status")
