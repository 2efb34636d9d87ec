"""Text for the terminal: state lines, progress bars, tables. Shared by simulate and watch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aurora_restore.history import ExecutionHistory, StateRun

#: What a cut cell or line ends with.
ELLIPSIS = "..."


def progress_bar(percent: int, width: int = 20) -> str:
    """``[######--------------]  30%``."""
    percent = max(0, min(100, int(percent)))
    filled = round(width * percent / 100)
    return f"[{'#' * filled}{'-' * (width - filled)}] {percent:3d}%"


def seconds(value: float | None) -> str:
    """A duration the way an operator reads it: 0.42 s, 12 s, 3 min 5 s, 2 h 10 min."""
    if value is None:
        return ""
    if value < 10:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.0f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def state_line(run: StateRun) -> str:
    """One finished state: name, what ran, how long, how it ended."""
    if run.type == "Task":
        what = run.step or "task"
    elif run.type == "Wait":
        what = "wait"
    else:
        what = run.type.lower()
    line = f"  {run.name:<20} {what:<22} {seconds(run.duration):>9}"
    notes: list[str] = []
    output = run.output if isinstance(run.output, dict) else {}
    if run.percent is not None and not output.get("complete", False):
        notes.append(f"{output.get('status', 'copying')} {progress_bar(run.percent)}")
    elif run.percent is not None:
        notes.append(f"{output.get('status', 'available')} {progress_bar(run.percent)}")
    elif isinstance(output.get("instance_statuses"), dict):
        # A restore is its cluster and each instance: "creating" alone hides which one is slow.
        notes.append(restore_text(output))
    elif isinstance(output.get("status"), str) and "complete" in output:
        notes.append(str(output["status"]))
    if run.attempts > 1:
        notes.append(f"{run.attempts} attempts")
    if run.status == "failed" and run.error == "States.Timeout" and (run.step or "").startswith("await_"):
        # A waiting Task that saw no event in time: the loop polls once and waits again.
        notes.append("no event in time: polls")
    elif run.status == "failed" and run.error:
        notes.append(f"FAILED {run.error}")
    if run.type == "Fail":
        notes.append("FAILED")
    return line + ("   " + ", ".join(notes) if notes else "")


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the cut marked."""
    if len(text) <= width:
        return text
    return text[: max(0, width - len(ELLIPSIS))] + ELLIPSIS


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], width: int | None = None) -> str:
    """A plain left-aligned table; with ``width``, the last column is cut so each line fits."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    if width is not None and cells:
        # The last column (free text) gives way; the others are short and hold the facts.
        fixed = sum(widths[:-1]) + 2 * (len(widths) - 1)
        last = max(len(ELLIPSIS) + 1, width - fixed)
        cells = [[*row[:-1], fit(row[-1], last)] for row in cells]
        widths[-1] = min(widths[-1], last)
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    return "\n".join(lines)


def clock(moment: datetime) -> str:
    """``HH:MM:SS`` in UTC."""
    return moment.astimezone(timezone.utc).strftime("%H:%M:%S")


def when(moment: datetime, now: datetime) -> str:
    """A time to come: ``18:10`` today, ``2026-12-02 04:10`` another day (UTC)."""
    moment = moment.astimezone(timezone.utc)
    if moment.date() == now.astimezone(timezone.utc).date():
        return moment.strftime("%H:%M")
    return moment.strftime("%Y-%m-%d %H:%M")


def _until(moment: datetime, now: datetime) -> str:
    left = (moment - now).total_seconds()
    return f"in {seconds(left)}" if left >= 1 else "due now"


def restore_text(poll: dict[str, Any]) -> str:
    """A restore poll: the cluster's status and each instance's."""
    instances = poll.get("instance_statuses") or {}
    shown = ", ".join(f"{name} {state}" for name, state in instances.items()) or "none yet"
    return f"cluster {poll.get('cluster_id', '')} {poll.get('status')}; instances {shown}"


def poll_text(poll: dict[str, Any], now: datetime) -> str:
    """What the last look at the resource found: a copy's progress and estimated finish, a
    restore's cluster and instance statuses, a deletion's phase."""
    from steps.lib.polling import estimated_finish

    status = poll.get("status")
    if "percent_progress" in poll:
        text = f"copy {poll.get('identifier', '')} {status or ''}".rstrip()
        percent = poll.get("percent_progress")
        if isinstance(percent, (int, float)):
            text += " " + progress_bar(int(percent))
        finish = estimated_finish(poll)
        if finish is not None:
            text += f", est. finish {when(finish, now)} UTC ({_until(finish, now)})"
        else:
            text += ", no estimate until it moves"
        return text
    if isinstance(poll.get("instance_statuses"), dict):
        return restore_text(poll)
    if poll.get("phase"):
        return f"{poll.get('cluster_id', '')} {poll['phase']}".strip()
    return str(status or "")


def live_line(history: ExecutionHistory, now: datetime) -> str | None:
    """The line shown while the execution sits in a state: a Wait (what it waits for, the next
    check) or a long task; None between states."""
    current = history.current()
    if current is None or current.type not in ("Wait", "Task"):
        return None
    parts: list[str] = []
    if current.type == "Wait":
        poll = history.last_poll()
        found = poll_text(poll, now) if poll else ""
        parts.append(f"waiting: {found}" if found else "waiting")
        next_poll = poll.get("next_poll_seconds") if poll else None
        if isinstance(next_poll, (int, float)):
            due = current.entered_at + timedelta(seconds=float(next_poll))
            parts.append(f"next check {clock(due)} ({_until(due, now)})")
    elif (current.step or "").startswith("await_"):
        # A poll loop's waiting Task: it ends on an RDS event, or polls after its fallback.
        poll = history.last_poll()
        found = poll_text(poll, now) if poll else ""
        parts.append(f"waiting for RDS: {found}" if found else "waiting for RDS")
        fallback = poll.get("fallback_seconds") if poll else None
        if isinstance(fallback, (int, float)):
            due = current.entered_at + timedelta(seconds=float(fallback))
            parts.append(f"check by {clock(due)} ({_until(due, now)}) unless an event comes first")
    else:
        parts.append(
            f"running {current.step or 'task'} for {seconds((now - current.entered_at).total_seconds())}"
        )
    if history.started_at is not None:
        parts.append(f"elapsed {seconds((now - history.started_at).total_seconds())}")
    return f"{clock(now)}  {current.name:<20} " + "; ".join(parts)
