"""Poll bookkeeping for the replace steps' loops: restore, delete-first and swap.

Every poll output carries ``polls``, ``started_at``, ``complete`` and ``next_poll_seconds``, so the
Choice and Wait states read fields the steps really return. The shared poll policy
(``steps/lib/polling.py``, on its way from the copy branch) will decide ``next_poll_seconds`` for
everyone; until it lands, :func:`next_poll_seconds` here backs off exponentially between the
stack's bounds, and :func:`poll_fields` is the one place that would delegate to it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dispatcher.errors import PollTimeout

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatcher.context import StepContext
    from dispatcher.settings import Settings


def next_poll_seconds(settings: Settings, polls: int, *, urgent: bool = False) -> int:
    """Seconds to wait before poll number ``polls + 1``.

    Doubles from ``poll_min_seconds`` with every poll, up to ``poll_max_seconds``. ``urgent``
    waits keep to the minimum: while a swap renames, the environment's name is in flux and the
    next rename should follow the moment the first one is done.
    """
    low = max(1, settings.poll_min_seconds)
    high = max(low, settings.poll_max_seconds)
    if urgent:
        return low
    return int(min(high, low * 2 ** min(max(polls, 0), 30)))


def parse_time(value: Any) -> datetime | None:
    """An ISO timestamp from an earlier output, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def poll_fields(
    ctx: StepContext,
    previous: Mapping[str, Any] | None,
    *,
    complete: bool,
    max_wait_seconds: int,
    waiting_for: str,
    urgent: bool = False,
) -> dict[str, Any]:
    """``polls``, ``started_at``, ``complete`` and ``next_poll_seconds`` for one poll.

    ``previous`` is the loop's earlier output (None on the step that starts the wait). Raises
    ``PollTimeout`` naming ``waiting_for`` once the wait has lasted longer than
    ``max_wait_seconds`` without completing.
    """
    now = ctx.clock()
    started = parse_time(previous.get("started_at")) if previous else None
    started = started or now
    earlier_polls = previous.get("polls") if previous else None
    polls = earlier_polls + 1 if isinstance(earlier_polls, int) and not isinstance(earlier_polls, bool) else 0
    elapsed = max(0, int((now - started).total_seconds()))
    if not complete and elapsed > max_wait_seconds:
        raise PollTimeout(
            f"gave up waiting for {waiting_for} after {elapsed} s and {polls} polls; the limit is "
            f"{max_wait_seconds} s (AURORA_RESTORE_RESTORE_MAX_WAIT_SECONDS)",
            waiting_for=waiting_for,
            elapsed_seconds=elapsed,
            polls=polls,
        )
    wait = 0 if complete else next_poll_seconds(ctx.settings, polls, urgent=urgent)
    return {
        "polls": polls,
        "started_at": started.isoformat(),
        "elapsed_seconds": elapsed,
        "complete": complete,
        "next_poll_seconds": wait,
    }
