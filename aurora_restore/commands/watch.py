"""Follow an operation's execution live until it ends: timestamped states, a live line while it
waits, and on failure what to run next."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import IO, TYPE_CHECKING, Any

from aurora_restore import render
from aurora_restore.boundary import EXIT_INTERRUPTED
from aurora_restore.commands._stack import (
    EXIT_FAILED,
    EXIT_OK,
    add_operation_argument,
    add_stack_arguments,
    connect,
)

if TYPE_CHECKING:
    from aurora_restore.history import ExecutionHistory, StateRun

#: On a pipe or in a log the live line cannot be redrawn: repeat it this often instead.
HEARTBEAT_SECONDS = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """OP, the stack flags and the poll interval."""
    add_operation_argument(parser)
    add_stack_arguments(parser)
    parser.add_argument(
        "--interval",
        metavar="SECONDS",
        type=float,
        default=5.0,
        help="how often to read the execution (default 5)",
    )


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Watcher:
    """Prints an execution's progress: one timestamped line per state, a live line while in one.

    On a terminal the live line is redrawn in place; elsewhere (a pipe, a log) it is printed when
    a wait begins and then every ``heartbeat`` seconds, and for a task once it has run that long.
    ``clock`` gives the time (UTC).
    """

    def __init__(
        self,
        out: IO[str] | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
        live: bool | None = None,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.clock = clock
        self.live = self.out.isatty() if live is None else live
        self.heartbeat = heartbeat
        self._day: date | None = None
        self._drawn = False
        self._last_state: tuple[str, datetime] | None = None
        self._last_printed: datetime | None = None

    def print(self, text: str, moment: datetime | None = None) -> None:
        """A line stamped with ``moment`` (default now); a date line first when the day changed."""
        moment = (moment or self.clock()).astimezone(timezone.utc)
        self.clear_live()
        self._new_day(moment)
        self.out.write(f"{render.clock(moment)}  {text}\n")
        self.out.flush()

    def _new_day(self, moment: datetime) -> None:
        # Lines carry the time only: a date line whenever the day changes keeps a long copy readable.
        if moment.astimezone(timezone.utc).date() != self._day:
            self._day = moment.astimezone(timezone.utc).date()
            self.out.write(f"-- {self._day.isoformat()} (UTC) --\n")

    def plain(self, text: str) -> None:
        """A line without a time (details under a stamped line)."""
        self.clear_live()
        self.out.write(text + "\n")
        self.out.flush()

    def change(self, change: str, run: StateRun) -> None:
        """A state was entered or left."""
        if change == "entered" and run.type == "Task":
            self.print(f"{run.name:<20} {run.step or 'task'} ...", run.entered_at)
        elif change == "exited" or run.type == "Fail":
            self.print(render.state_line(run).lstrip(), run.exited_at or run.entered_at)

    def tick(self, history: ExecutionHistory) -> None:
        """The execution goes on: show where it is."""
        now = self.clock()
        line = render.live_line(history, now)
        current = history.current()
        if line is None or current is None:
            return
        if self.live:
            width = shutil.get_terminal_size().columns - 1
            self.out.write("\r\033[K" + render.fit(line, width))
            self.out.flush()
            self._drawn = True
            return
        if current.type == "Task" and (now - current.entered_at).total_seconds() < self.heartbeat:
            return  # a log needs no line for every quick step: its own lines follow at once
        state = (current.name, current.entered_at)
        due = self._last_printed is None or (now - self._last_printed).total_seconds() >= self.heartbeat
        if state != self._last_state or due:
            self._new_day(now)
            self.out.write(line + "\n")
            self.out.flush()
            self._last_state, self._last_printed = state, now

    def clear_live(self) -> None:
        """Wipe the live line before a permanent one is printed."""
        if self._drawn:
            self.out.write("\r\033[K")
            self._drawn = False


def watch_execution(
    stack: Any,
    operation_id: str,
    execution_arn: str,
    interval: float = 5.0,
    *,
    watcher: Watcher | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_rounds: int | None = None,
) -> int:
    """Print the execution's progress until it ends; 0 when it SUCCEEDED (or still runs after
    ``max_rounds`` reads), 1 when it failed, timed out or was stopped."""
    from aurora_restore import operator

    watcher = watcher or Watcher()
    watcher.print(f"Watching {execution_arn} (times UTC)")
    try:
        history = operator.follow(
            stack.client("stepfunctions"),
            execution_arn,
            watcher.change,
            interval=interval,
            sleep=sleep,
            on_tick=watcher.tick,
            max_rounds=max_rounds,
        )
    except KeyboardInterrupt:
        watcher.clear_live()
        print(
            f"aurora-restore watch: stopped watching; the operation goes on "
            f"(aurora-restore watch {operation_id} {stack.flags()})",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    watcher.clear_live()
    if not history.finished:
        return EXIT_OK
    took = ""
    if history.started_at is not None and history.stopped_at is not None:
        took = f" after {render.seconds((history.stopped_at - history.started_at).total_seconds())}"
    watcher.print(f"{history.status}{took}", history.stopped_at)
    if history.status == "SUCCEEDED":
        return EXIT_OK
    failure = history.failure()
    if failure:
        where = f" in {failure['state']} ({failure['step']})" if failure.get("state") else ""
        watcher.plain(f"  error: {failure['type']}{where}: {failure['message']}")
    for line in _after_failure(stack, operation_id, history):
        watcher.plain(line)
    return EXIT_FAILED


def _after_failure(stack: Any, operation_id: str, history: ExecutionHistory) -> list[str]:
    """The lock and the next commands, read from the stack; what is known when that fails."""
    from botocore.exceptions import BotoCoreError, ClientError

    from aurora_restore import boundary, operator
    from aurora_restore.commands.status import lock_line

    lines: list[str] = []
    try:
        found = operator.status(stack, operation_id)
    except (ClientError, BotoCoreError, operator.OperatorError) as exc:
        # The execution's end is known and shown; only the lock could not be read.
        explained = boundary.explain(exc)
        lines.append(f"  lock:  unknown ({explained[0] if explained else exc})")
        error = history.failure() or {}
        found = operator.OperationStatus(
            operation_id,
            history.status,
            None,
            {"status": history.status, "error": error.get("type"), "cause": error.get("message")},
        )
    else:
        shown = lock_line(found)
        if shown:
            lines.append(f"  lock:  {shown}")
    for index, step in enumerate(operator.next_steps(stack, found)):
        lines.append(f"  {'next:' if index == 0 else '':<6} {step}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Watch the operation's latest execution."""
    from aurora_restore import operator

    stack = connect(args)
    arn = operator.execution_of(stack, args.operation_id)
    return watch_execution(stack, args.operation_id, arn, args.interval)
