"""Text for the terminal: state lines, progress bars, tables. Shared by simulate and watch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aurora_restore.history import StateRun


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
    elif isinstance(output.get("status"), str) and "complete" in output:
        notes.append(str(output["status"]))
    if run.attempts > 1:
        notes.append(f"{run.attempts} attempts")
    if run.status == "failed" and run.error:
        notes.append(f"FAILED {run.error}")
    if run.type == "Fail":
        notes.append("FAILED")
    return line + ("   " + ", ".join(notes) if notes else "")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain left-aligned table."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    return "\n".join(lines)
