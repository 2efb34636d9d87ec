"""How long a poll loop waits before it looks again, and the fields every poll loop returns.

Every wait in the pipeline (copy, restore, delete, rename) is a Task -> Choice -> Wait loop in
the state machine. Each round costs about 9 history events, and an execution may hold at most
25,000, so a fixed 30 s poll dies after about 23 hours while a cross-region copy can take days.

The policy (:func:`next_poll_seconds`):

- **With a progress figure** (a snapshot copy's ``PercentProgress``): estimate the finish from
  the rate seen since a baseline observation and aim the next poll just short of it. On steady
  progress the loop sleeps long while far away and polls at the minimum near the end, so the
  completion is seen within about ``min_seconds``.
- **Without one** (restores, deletes, renames) **or with no movement yet** (a queued copy sits
  at 0 % for hours while the region's 5 copy slots are busy): exponential backoff from
  ``min_seconds`` by 1.5 per poll.
- Always within ``[min_seconds, max_seconds]``, and whatever the settings, a **budget guard**:
  once a loop has made more polls than ``FREE_POLLS`` plus one per ``BUDGET_SPACING_SECONDS``
  of elapsed time, it waits at least ``BUDGET_SPACING_SECONDS``. That keeps a 7-day copy under
  a third of the execution's history even with a misconfigured ``poll_max_seconds``.

:func:`poll_fields` counts the polls, keeps the start time, asks the policy for the next wait
and raises ``PollTimeout`` past the maximum wait; the copy calls it with its progress figure.
:func:`step_poll_fields` is the same for the loops without one (restore, delete, swap): it takes
the step context, may ask for an ``urgent`` next poll, and survives an unreadable earlier output.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from dispatcher.errors import PollTimeout

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatcher.context import StepContext
    from dispatcher.settings import Settings

#: Step Functions' hard limit on one execution's history.
HISTORY_EVENT_LIMIT = 25_000
#: Task (about 5) + Choice (2) + Wait (2) per poll round.
EVENTS_PER_POLL_ROUND = 9
#: Growth of the wait per poll when there is no progress figure to go by.
BACKOFF_FACTOR = 1.5
#: Share of the estimated remaining time to sleep: a little early beats late, one extra
#: poll near the end is cheap.
AIM = 0.95
#: Polls a loop may make quickly before the budget guard looks at its pace.
FREE_POLLS = 60
#: While events are trusted, how long a waiting Task waits for one before it polls once. These
#: fallbacks bound how late a lost event is noticed, and the first loss sends the loops back to
#: the poll policy until an event arrives again; the values are the ones in benchmarks/RESULTS.md
#: that keep a lost event's cost between the delivered and all-lost cases without spending more
#: than 3 % of fixed 30/60 s waits' invocations. With nothing to aim by (a restore, a deletion):
EVENT_FALLBACK_SECONDS = 450
#: A copy that reports progress but has not moved yet (queued, or just begun): one look, after
#: which there is a rate to aim by.
EVENT_FALLBACK_UNMOVED_SECONDS = 900
#: Aimed just past a copy's expected finish: this many times the estimated remaining time, plus
#: ``poll_min_seconds``, and at most two hours. Close to 1, because a lost event costs the
#: overshoot; a copy that runs slower than estimated costs one more fallback, aimed anew.
EVENT_FALLBACK_AIM_FACTOR = 1.05
EVENT_FALLBACK_MAX_AIMED_SECONDS = 7200
#: Past its free polls a loop gets one poll per this many seconds of elapsed time. With
#: FREE_POLLS this is 900 polls (8,100 events, a third of the history) over 7 days.
BUDGET_SPACING_SECONDS = 720


def next_poll_seconds(
    elapsed_seconds: float,
    percent: float | None,
    polls: int,
    *,
    min_seconds: int,
    max_seconds: int,
    baseline: tuple[float, float] = (0.0, 0.0),
    reached_at: float | None = None,
) -> int:
    """Seconds to wait before the next poll.

    ``elapsed_seconds``: time since the loop started; ``percent``: the resource's progress
    (0-100) or None when it reports none; ``polls``: status checks made so far, this one
    included. For the progress rate: ``baseline`` is ``(elapsed_seconds, percent)`` of the
    observation the rate is measured from (the last poll that still saw 0 %, or the first one
    when the resource was already moving, e.g. a copy made by another operation), and
    ``reached_at`` the estimated elapsed time at which ``percent`` was reached (None when
    unknown: then the middle of the whole percent is assumed now).
    """
    low = max(1, int(min_seconds))
    high = max(low, int(max_seconds))
    elapsed = max(0.0, float(elapsed_seconds))
    wait: float
    if percent is not None and percent >= 100:
        # Fully transferred but not yet "available": the status flips soon.
        wait = low
    else:
        remaining = _estimate_remaining(elapsed, percent, baseline, reached_at)
        if remaining is None:
            wait = low * BACKOFF_FACTOR ** min(max(polls - 1, 0), 60)
        else:
            wait = remaining * AIM
    seconds = int(min(max(wait, low), high))
    if polls >= FREE_POLLS + elapsed / BUDGET_SPACING_SECONDS:
        seconds = max(seconds, BUDGET_SPACING_SECONDS)
    return seconds


def _estimate_remaining(
    elapsed: float, percent: float | None, baseline: tuple[float, float], reached_at: float | None
) -> float | None:
    """Seconds to 100 % at the rate seen since ``baseline``; None without a usable rate."""
    if percent is None or percent <= 0:
        return None
    base_seconds, base_percent = baseline
    # RDS reports whole percents: at the baseline the true figure lay in [p, p + 1).
    start = float(base_percent) + 0.5 if base_percent > 0 else 0.0
    if reached_at is None:
        at, done = elapsed, min(float(percent) + 0.5, 99.9)
    else:
        # The moment the figure turned to ``percent`` is the one point where it was exact.
        at, done = min(float(reached_at), elapsed), float(percent)
    moved = done - start
    duration = at - float(base_seconds)
    if moved <= 0 or duration <= 0:
        return None
    return (100.0 - done) * duration / moved - (elapsed - at)


def estimated_finish(fields: dict[str, Any]) -> datetime | None:
    """When a loop that reports progress (a copy) should reach 100 %, read from its last poll's output.

    The same rate estimate the next wait is aimed with; None until the figure has moved
    (a queued copy at 0 % has no rate yet) or when the output carries no progress.
    """
    progress = fields.get("progress")
    started = fields.get("started_at")
    elapsed = fields.get("elapsed_seconds")
    if not (isinstance(progress, dict) and isinstance(started, str) and isinstance(elapsed, (int, float))):
        return None
    try:
        remaining = _estimate_remaining(
            float(elapsed),
            float(progress["percent"]),
            (float(progress["baseline_seconds"]), float(progress["baseline_percent"])),
            progress.get("reached_at"),
        )
        start = parse_time(started)
    except (KeyError, TypeError, ValueError):
        return None
    if remaining is None:
        return None
    return start + timedelta(seconds=float(elapsed) + max(0.0, remaining))


def parse_time(value: str) -> datetime:
    """An ISO time written by :func:`iso_time` (``...Z``) back to an aware datetime."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def iso_time(moment: datetime) -> str:
    """UTC ISO time with a ``Z``, to the second."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def poll_fields(
    previous: dict[str, Any] | None,
    *,
    now: datetime,
    complete: bool,
    percent: float | None,
    max_wait_seconds: int,
    settings: Settings,
    what: str,
) -> dict[str, Any]:
    """The poll fields of a poll loop's output, updated for one more status check.

    ``previous`` is the loop's previous output (None for the step that starts the wait);
    ``now`` the step's ``ctx.clock()``; ``complete`` whether the resource is done;
    ``percent`` its progress or None; ``what`` names the resource in the timeout message,
    e.g. ``"copy ar-orders-1a2b in eu-central-1"``.

    Returns ``polls`` (status checks so far), ``started_at`` (ISO time the wait began),
    ``elapsed_seconds``, ``complete``, ``next_poll_seconds`` and ``fallback_seconds`` (how long
    the waiting Task waits for an event before polling; both 0 once complete), plus
    ``progress`` (what the rate estimate carries from poll to poll) when the resource reports
    progress. Merge them into the output:
    ``{**own_fields, **poll_fields(...)}``. Raises ``PollTimeout`` when the resource is not
    complete after ``max_wait_seconds``.
    """
    started_at = str(previous["started_at"]) if previous and previous.get("started_at") else iso_time(now)
    polls = int(previous.get("polls", 0)) + 1 if previous else 1
    elapsed = max(0, int((now - parse_time(started_at)).total_seconds()))
    fields: dict[str, Any] = {
        "polls": polls,
        "started_at": started_at,
        "elapsed_seconds": elapsed,
        "complete": bool(complete),
    }
    progress = _track_progress((previous or {}).get("progress"), elapsed, percent)
    if progress is not None:
        fields["progress"] = progress
    if complete:
        fields["next_poll_seconds"] = 0
        fields["fallback_seconds"] = 0
        return fields
    if elapsed > max_wait_seconds:
        shown = f" at {percent:g} %" if percent is not None else ""
        raise PollTimeout(
            f"{what} is still not complete{shown} after {_duration(elapsed)} ({polls} polls); the "
            f"maximum wait is {_duration(max_wait_seconds)}. Look at it in the console, then start "
            "the refresh again or raise the maximum wait",
            elapsed_seconds=elapsed,
            max_wait_seconds=max_wait_seconds,
            polls=polls,
            percent_progress=percent,
        )
    baseline = (progress["baseline_seconds"], progress["baseline_percent"]) if progress else (0.0, 0.0)
    reached_at = progress["reached_at"] if progress else None
    fields["next_poll_seconds"] = next_poll_seconds(
        elapsed,
        percent,
        polls,
        min_seconds=settings.poll_min_seconds,
        max_seconds=settings.poll_max_seconds,
        baseline=baseline,
        reached_at=reached_at,
    )
    # Fully transferred but not yet available: the finish is now. The fallback's estimate leaves
    # out when the figure turned (``reached_at``): between looks an hour apart, the policy's
    # midpoint guess at that moment can double the rate.
    remaining: float | None = 0.0
    if percent is None or percent < 100:
        remaining = _estimate_remaining(float(elapsed), percent, baseline, None)
    next_poll = fields["next_poll_seconds"]
    fields["fallback_seconds"] = fallback_seconds(
        next_poll, remaining=remaining, percent=percent, settings=settings
    )
    return fields


def fallback_seconds(
    next_poll: int, *, remaining: float | None, percent: float | None, settings: Settings
) -> int:
    """How long a loop's waiting Task waits for an RDS event before it polls once (its timeout).

    Events usually end the wait, so the fallback only bounds how late a lost event is noticed.
    With an estimated finish (a copy's progress rate, ``remaining`` seconds away) it is past that
    finish by 5 % of the estimate and ``poll_min_seconds`` (``EVENT_FALLBACK_AIM_FACTOR``), at
    most two hours away; a copy that has not moved waits ``EVENT_FALLBACK_UNMOVED_SECONDS``; with
    no progress figure at all (restores, deletes, renames) ``EVENT_FALLBACK_SECONDS``. Never
    shorter than the policy's own wait, so the policy's history budget bounds the fallbacks too
    (a copy stuck at 99 % is looked at as rarely as the policy would look).
    """
    if remaining is not None:
        aimed = remaining * EVENT_FALLBACK_AIM_FACTOR + settings.poll_min_seconds
        wait = min(aimed, EVENT_FALLBACK_MAX_AIMED_SECONDS)
    elif percent is not None:
        wait = EVENT_FALLBACK_UNMOVED_SECONDS
    else:
        wait = EVENT_FALLBACK_SECONDS
    # A Task's timeout must be a positive whole number of seconds.
    return int(max(1, next_poll, wait))


def _track_progress(kept: Any, elapsed: int, percent: float | None) -> dict[str, Any] | None:
    """What the rate estimate needs from earlier polls, updated with this one.

    ``baseline_*``: the observation the rate is measured from. While nothing moves (0 %) it
    follows the polls, so time spent queued does not count as slow progress; once the
    figure moves it stays put. ``reached_at``: when the figure turned to its current value,
    taken as the middle between the poll that saw the old value and the one that saw the new.
    """
    if percent is None:
        return None
    value = float(percent)
    fresh = {
        "baseline_seconds": float(elapsed),
        "baseline_percent": max(value, 0.0),
        "percent": value,
        "seen_at": float(elapsed),
        "reached_at": None,
    }
    if not isinstance(kept, dict) or value <= 0 or value < float(kept.get("percent", 0)):
        # First sight, still idle, or gone backwards (a restarted copy): measure afresh.
        return fresh
    tracked = {
        **fresh,
        "baseline_seconds": kept["baseline_seconds"],
        "baseline_percent": kept["baseline_percent"],
    }
    if value == float(kept["percent"]):
        tracked["reached_at"] = kept.get("reached_at")
    else:
        tracked["reached_at"] = (float(kept["seen_at"]) + elapsed) / 2
    return tracked


def _duration(seconds: float) -> str:
    """A human duration: 95 -> '1 min 35 s', 200000 -> '2 d 7 h'."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def history_events(polls: int) -> int:
    """History events a poll loop of ``polls`` rounds costs (for budgets and benchmarks)."""
    return polls * EVENTS_PER_POLL_ROUND


def budget_polls(fraction: float = 1 / 3) -> int:
    """Polls a loop may make within ``fraction`` of the execution's history."""
    return math.floor(HISTORY_EVENT_LIMIT * fraction / EVENTS_PER_POLL_ROUND)


def parse_earlier_time(value: Any) -> datetime | None:
    """An ISO timestamp from an earlier output, or None when absent or unreadable.

    Unlike :func:`parse_time`, never raises: a retry after a hand-edited input restarts the
    clock instead of failing.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def step_poll_fields(
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
        started = parse_earlier_time(previous.get("started_at"))
        polls = previous.get("polls")
        if started is not None:
            earlier = {
                "started_at": iso_time(started),
                "polls": polls if isinstance(polls, int) and not isinstance(polls, bool) else 0,
            }
    fields = poll_fields(
        earlier,
        now=ctx.clock(),
        complete=complete,
        percent=None,
        max_wait_seconds=max_wait_seconds,
        settings=ctx.settings,
        what=waiting_for,
    )
    if urgent and not complete:
        # Renames follow each other at once; their events end the wait sooner still.
        fields["next_poll_seconds"] = ctx.settings.poll_min_seconds
        fields["fallback_seconds"] = max(1, ctx.settings.poll_min_seconds)
    return fields
