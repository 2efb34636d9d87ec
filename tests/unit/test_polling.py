"""The poll policy: bounds, the 7-day history budget, prompt completion, and the poll fields."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.errors import PollTimeout
from dispatcher.settings import Settings
from steps.lib.polling import (
    BUDGET_SPACING_SECONDS,
    EVENTS_PER_POLL_ROUND,
    FREE_POLLS,
    HISTORY_EVENT_LIMIT,
    next_poll_seconds,
    poll_fields,
)

DAY = 86_400
START = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
DEFAULTS = Settings()

# A progress curve: seconds since the copy started -> (reported percent or None, complete).
Curve = Callable[[float], "tuple[int | None, bool]"]


@dataclass
class Run:
    polls: int
    finished_at: float
    detected_at: float

    @property
    def lateness(self) -> float:
        return self.detected_at - self.finished_at

    @property
    def events(self) -> int:
        return self.polls * EVENTS_PER_POLL_ROUND


def linear(duration: float, queued: float = 0.0) -> Curve:
    """A copy that waits ``queued`` seconds at 0 %, then moves steadily for ``duration``."""

    def curve(t: float) -> tuple[int | None, bool]:
        if t >= queued + duration:
            return 100, True
        return max(0, math.floor(100 * (t - queued) / duration)), False

    return curve


def silent(duration: float) -> Curve:
    """A resource that reports no progress figure (restores, deletes, renames)."""
    return lambda t: (None, t >= duration)


def simulate(curve: Curve, finished_at: float, settings: Settings = DEFAULTS) -> Run:
    """Run the loop as the state machine does: poll, wait next_poll_seconds, poll again."""
    now = START
    percent, complete = curve(0)
    fields = poll_fields(
        None,
        now=now,
        complete=complete,
        percent=percent,
        max_wait_seconds=30 * DAY,
        settings=settings,
        what="x",
    )
    while not fields["complete"]:
        assert fields["next_poll_seconds"] >= settings.poll_min_seconds
        now += timedelta(seconds=fields["next_poll_seconds"])
        percent, complete = curve((now - START).total_seconds())
        fields = poll_fields(
            fields,
            now=now,
            complete=complete,
            percent=percent,
            max_wait_seconds=30 * DAY,
            settings=settings,
            what="x",
        )
    return Run(fields["polls"], finished_at, (now - START).total_seconds())


# -- bounds ------------------------------------------------------------------------------------


@given(
    elapsed=st.floats(min_value=0, max_value=30 * DAY, allow_nan=False),
    percent=st.one_of(st.none(), st.integers(min_value=0, max_value=100)),
    polls=st.integers(min_value=1, max_value=FREE_POLLS - 1),
    low=st.integers(min_value=1, max_value=600),
    extra=st.integers(min_value=0, max_value=3600),
    base_seconds=st.floats(min_value=0, max_value=30 * DAY, allow_nan=False),
    base_percent=st.integers(min_value=0, max_value=100),
    reached_at=st.one_of(st.none(), st.floats(min_value=0, max_value=30 * DAY, allow_nan=False)),
)
def test_waits_stay_within_the_configured_bounds(
    elapsed: float,
    percent: int | None,
    polls: int,
    low: int,
    extra: int,
    base_seconds: float,
    base_percent: int,
    reached_at: float | None,
) -> None:
    # Within its free polls (no budget guard), a wait never leaves [min, max], whatever the input.
    wait = next_poll_seconds(
        elapsed,
        percent,
        polls,
        min_seconds=low,
        max_seconds=low + extra,
        baseline=(base_seconds, base_percent),
        reached_at=reached_at,
    )
    assert isinstance(wait, int)
    assert low <= wait <= low + extra


def test_without_a_progress_figure_the_wait_backs_off_exponentially_to_the_maximum() -> None:
    waits = [next_poll_seconds(0, None, polls, min_seconds=30, max_seconds=900) for polls in range(1, 12)]
    assert waits[:5] == [30, 45, 67, 101, 151]
    assert waits[-1] == 900
    assert waits == sorted(waits)


def test_a_queued_copy_at_zero_percent_backs_off_like_one_without_progress() -> None:
    for polls in range(1, 12):
        assert next_poll_seconds(3600, 0, polls, min_seconds=30, max_seconds=900) == next_poll_seconds(
            3600, None, polls, min_seconds=30, max_seconds=900
        )


def test_progress_rate_aims_at_the_expected_finish() -> None:
    # 20 % after 10 minutes: about 40 minutes to go, capped at the maximum of 15 minutes...
    assert next_poll_seconds(600, 20, 3, min_seconds=30, max_seconds=900) == 900
    # ...and with a higher maximum the wait lands just short of the estimated finish.
    wait = next_poll_seconds(600, 20, 3, min_seconds=30, max_seconds=6 * 3600)
    assert 0.85 * 2400 <= wait <= 2400
    # Near the end it polls at the minimum.
    assert next_poll_seconds(6000, 99, 30, min_seconds=30, max_seconds=900) == 30


def test_the_rate_is_measured_from_when_the_copy_started_moving() -> None:
    # Queued for 5 hours, then 10 % in 6 minutes: an hour to go, not two days.
    from_start = next_poll_seconds(5 * 3600 + 360, 10, 40, min_seconds=30, max_seconds=10 * 3600)
    from_baseline = next_poll_seconds(
        5 * 3600 + 360, 10, 40, min_seconds=30, max_seconds=10 * 3600, baseline=(5 * 3600, 0)
    )
    assert from_start == 10 * 3600
    assert 2700 <= from_baseline <= 3600


def test_budget_guard_slows_a_loop_that_polls_too_fast_whatever_the_settings() -> None:
    # A loop that has spent its free polls and is ahead of one poll per BUDGET_SPACING_SECONDS
    # waits at least that long even when the maximum says otherwise.
    assert next_poll_seconds(3600, None, 200, min_seconds=5, max_seconds=10) == BUDGET_SPACING_SECONDS
    # A loop within its allowance keeps the configured maximum.
    assert next_poll_seconds(200 * BUDGET_SPACING_SECONDS, None, 200, min_seconds=5, max_seconds=10) == 10


# -- the 7-day budget --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "curve", "settings"),
    [
        ("linear progress", linear(7 * DAY), DEFAULTS),
        ("no progress figure", silent(7 * DAY), DEFAULTS),
        ("queued 3 days, then 4 days of progress", linear(4 * DAY, queued=3 * DAY), DEFAULTS),
        ("misconfigured: max 10 s", linear(7 * DAY), Settings(poll_min_seconds=5, poll_max_seconds=10)),
        (
            "misconfigured, no progress figure",
            silent(7 * DAY),
            Settings(poll_min_seconds=5, poll_max_seconds=10),
        ),
    ],
)
def test_a_seven_day_copy_stays_well_inside_the_execution_history(
    name: str, curve: Curve, settings: Settings
) -> None:
    run = simulate(curve, 7 * DAY, settings)
    # A third of the history at most: the restore, the swap and the other steps need the rest.
    assert run.events < HISTORY_EVENT_LIMIT / 3, (name, run.polls)
    # The seed's fixed 30 s poll would have needed 20,160 rounds (181,440 events).
    assert run.polls < 7 * DAY / 30 / 20


# -- prompt completion -------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [600, 2 * 3600, 9 * 3600, DAY, 7 * DAY])
def test_completion_on_linear_progress_is_seen_within_about_a_minimum_wait(duration: int) -> None:
    run = simulate(linear(duration), duration)
    assert 0 <= run.lateness <= 2 * DEFAULTS.poll_min_seconds, run
    # And it does not get there by polling all the time.
    assert run.polls <= duration / 900 + 25, run


def test_completion_after_a_long_queue_is_still_seen_promptly() -> None:
    # The copy starts moving somewhere inside a long backoff wait, which blurs the rate a little.
    run = simulate(linear(6 * 3600, queued=5 * 3600), 11 * 3600)
    assert run.lateness <= 3 * DEFAULTS.poll_min_seconds, run


def test_without_progress_lateness_is_bounded_by_the_maximum_wait() -> None:
    # Backing off by 1.5 means never sleeping past half the time already waited.
    run = simulate(silent(20 * 60), 20 * 60)
    assert run.lateness <= 0.5 * 20 * 60, run
    run = simulate(silent(7 * DAY), 7 * DAY)
    assert run.lateness <= DEFAULTS.poll_max_seconds, run


# -- poll_fields -------------------------------------------------------------------------------


def test_poll_fields_counts_polls_keeps_the_start_and_finishes_with_zero_wait() -> None:
    first = poll_fields(
        None, now=START, complete=False, percent=0, max_wait_seconds=DAY, settings=DEFAULTS, what="x"
    )
    assert first["polls"] == 1
    assert first["started_at"] == "2026-03-01T02:00:00Z"
    assert first["elapsed_seconds"] == 0
    assert first["complete"] is False
    assert first["next_poll_seconds"] == DEFAULTS.poll_min_seconds
    later = START + timedelta(minutes=10)
    second = poll_fields(
        first, now=later, complete=True, percent=100, max_wait_seconds=DAY, settings=DEFAULTS, what="x"
    )
    assert second["polls"] == 2
    assert second["started_at"] == first["started_at"]
    assert second["elapsed_seconds"] == 600
    assert second["complete"] is True
    assert second["next_poll_seconds"] == 0


def test_poll_fields_without_progress_has_no_baseline() -> None:
    fields = poll_fields(
        None, now=START, complete=False, percent=None, max_wait_seconds=DAY, settings=DEFAULTS, what="x"
    )
    assert "progress" not in fields


def test_poll_fields_raises_poll_timeout_past_the_maximum_wait_naming_the_resource() -> None:
    first = poll_fields(
        None,
        now=START,
        complete=False,
        percent=3,
        max_wait_seconds=3600,
        settings=DEFAULTS,
        what="copy c1 in us-west-2",
    )
    with pytest.raises(PollTimeout) as caught:
        poll_fields(
            first,
            now=START + timedelta(hours=2),
            complete=False,
            percent=7,
            max_wait_seconds=3600,
            settings=DEFAULTS,
            what="copy c1 in us-west-2",
        )
    assert "copy c1 in us-west-2" in str(caught.value)
    assert "7 %" in str(caught.value)
    assert "1 h 0 min" in str(caught.value)
    assert caught.value.details["polls"] == 2


def test_a_resource_completing_after_the_maximum_wait_is_still_complete() -> None:
    first = poll_fields(
        None, now=START, complete=False, percent=3, max_wait_seconds=60, settings=DEFAULTS, what="x"
    )
    done = poll_fields(
        first,
        now=START + timedelta(hours=2),
        complete=True,
        percent=100,
        max_wait_seconds=60,
        settings=DEFAULTS,
        what="x",
    )
    assert done["complete"] is True


def test_the_fallback_of_a_waiting_task_follows_what_the_policy_can_aim_at() -> None:
    """Aimed just past an expected finish (5 % of the estimate and poll_min_seconds; at most two
    hours); a copy that has not moved waits a quarter of an hour, work with no progress figure
    7.5 minutes; never shorter than the policy's own wait; at 100 % (not yet available) just past
    now."""
    from steps.lib.polling import (
        EVENT_FALLBACK_MAX_AIMED_SECONDS,
        EVENT_FALLBACK_SECONDS,
        EVENT_FALLBACK_UNMOVED_SECONDS,
        fallback_seconds,
    )

    settings = Settings(poll_min_seconds=30, poll_max_seconds=900)
    assert (
        fallback_seconds(30, remaining=None, percent=None, settings=settings) == EVENT_FALLBACK_SECONDS == 450
    )
    assert (
        fallback_seconds(30, remaining=None, percent=0, settings=settings) == EVENT_FALLBACK_UNMOVED_SECONDS
    )
    assert fallback_seconds(300, remaining=1000.0, percent=40, settings=settings) == 1080
    assert fallback_seconds(30, remaining=0.0, percent=100, settings=settings) == 30
    assert (
        fallback_seconds(900, remaining=86_400.0, percent=1, settings=settings)
        == EVENT_FALLBACK_MAX_AIMED_SECONDS
    )
    assert fallback_seconds(3000, remaining=10.0, percent=99, settings=settings) == 3000
    # The rehearsal's tiny bounds: never below 1 s (a Task's timeout must be positive)
    tiny = Settings(poll_min_seconds=0, poll_max_seconds=0)
    assert fallback_seconds(0, remaining=0.0, percent=100, settings=tiny) == 1
