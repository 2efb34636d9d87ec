"""Poll bookkeeping for the replace steps' loops (restore, delete-first, swap), on the shared policy.

A thin adapter over :func:`steps.lib.polling.poll_fields`: these loops have no progress figure,
take the step context, may ask for an ``urgent`` next poll, and must survive an unreadable
earlier output (a retry after a hand-edited input restarts the clock instead of failing).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from steps.lib import polling

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatcher.context import StepContext


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
    """``polls``, ``started_at``, ``elapsed_seconds``, ``complete`` and ``next_poll_seconds``.

    ``previous`` is the loop's earlier output (None on the step that starts the wait). Raises
    ``PollTimeout`` naming ``waiting_for`` past ``max_wait_seconds``. ``urgent`` waits keep to
    the minimum: while a swap renames, the environment's name is in flux and the next rename
    should follow the moment the first one is done.
    """
    earlier: dict[str, Any] | None = None
    if previous:
        started = parse_time(previous.get("started_at"))
        polls = previous.get("polls")
        if started is not None:
            earlier = {
                "started_at": polling.iso_time(started),
                "polls": polls if isinstance(polls, int) and not isinstance(polls, bool) else 0,
            }
    fields = polling.poll_fields(
        earlier,
        now=ctx.clock(),
        complete=complete,
        percent=None,
        max_wait_seconds=max_wait_seconds,
        settings=ctx.settings,
        what=waiting_for,
    )
    if urgent and not complete:
        fields["next_poll_seconds"] = ctx.settings.poll_min_seconds
    return fields
