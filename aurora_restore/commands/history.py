"""Show an operation's audit trail as a table."""

from __future__ import annotations

import argparse
import json
import shutil

from aurora_restore import render
from aurora_restore.commands._stack import EXIT_OK, add_operation_argument, add_stack_arguments, connect

#: Width when stdout is not a terminal and COLUMNS is unset (a pipe, a file): wide enough that
#: ``grep`` sees whole details, narrow enough for a log viewer.
PIPE_WIDTH = 200

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
    add_operation_argument(parser)
    add_stack_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the audit items as JSON (nothing cut)")
    parser.add_argument(
        "--width",
        metavar="COLUMNS",
        type=_columns,
        help=f"cut lines to this width (default: the terminal's; {PIPE_WIDTH} when not a terminal)",
    )


def _columns(text: str) -> int:
    if not text.isdigit() or int(text) < 20:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of columns, at least 20")
    return int(text)


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
                detail,
            ]
        )
    return result


def run(args: argparse.Namespace) -> int:
    """Print the trail, each line cut to the terminal's width (``--json`` for everything)."""
    from aurora_restore import operator

    trail = operator.history(connect(args), args.operation_id)
    if args.json:
        print(json.dumps(trail, indent=2, default=str))
        return EXIT_OK
    width = args.width or shutil.get_terminal_size(fallback=(PIPE_WIDTH, 24)).columns
    print(render.table(rows(trail), ["TIME (UTC)", "STEP", "EVENT", "DURATION", "DETAIL"], width=width))
    return EXIT_OK
