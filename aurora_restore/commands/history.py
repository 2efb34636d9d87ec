"""Show an operation's audit trail as a table."""

from __future__ import annotations

import argparse
import json

from aurora_restore import render
from aurora_restore.commands._stack import EXIT_OK, add_stack_arguments, connect, guarded

#: Audit fields shown in the table's first columns; the rest go into DETAIL.
_SHOWN = {
    "operation_id",
    "event_id",
    "at",
    "event",
    "step",
    "expires_at",
    "duration_ms",
    "summary",
    "execution_id",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """OP and the stack flags."""
    parser.add_argument("operation_id", metavar="OP", help="the operation id")
    add_stack_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the audit items as JSON")


def rows(trail: list[dict]) -> list[list[str]]:
    """One table row per audit event: time, step, event, duration, summary and other details."""
    result = []
    for event in trail:
        duration = event.get("duration_ms")
        extra = {k: v for k, v in event.items() if k not in _SHOWN}
        detail = str(event.get("summary") or "")
        if extra:
            detail = (detail + " " if detail else "") + " ".join(f"{k}={v}" for k, v in sorted(extra.items()))
        result.append(
            [
                str(event.get("at", ""))[:23].replace("T", " "),
                str(event.get("step", "")),
                str(event.get("event", "")),
                "" if duration is None else f"{int(duration)} ms",
                detail[:160],
            ]
        )
    return result


def run(args: argparse.Namespace) -> int:
    """Print the trail."""
    from aurora_restore import operator

    def action() -> int:
        trail = operator.history(connect(args), args.operation_id)
        if args.json:
            print(json.dumps(trail, indent=2, default=str))
        else:
            print(render.table(rows(trail), ["TIME (UTC)", "STEP", "EVENT", "DURATION", "DETAIL"]))
        return EXIT_OK

    return guarded(action, "history")
