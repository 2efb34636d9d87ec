"""The polling benchmark counts what the two designs really do (so RESULTS.md can be trusted)."""

from __future__ import annotations

from benchmarks.polling import (
    HOUR,
    MINUTE,
    linear_copy,
    replay_fixed_waits,
    replay_policy,
    silent_restore,
)
from dispatcher.settings import Settings
from steps.lib.polling import EVENTS_PER_POLL_ROUND


def test_fixed_wait_replay_counts_every_state_of_its_loop() -> None:
    # GIVEN a copy done 10 s after a 30 s grid point (30 min + 10 s)
    timeline = linear_copy("copy", 30 * MINUTE)(10)
    # WHEN the fixed-wait loop replays it
    replay = replay_fixed_waits(timeline)
    # THEN checks at 0, 30, ... 1830 (62) plus the start step; seen 20 s late
    assert replay.polls == 63
    assert replay.noticed_at == 1830
    assert replay.latency == 20
    # start Task + 62 x (Task + Choice) + 61 Waits
    assert replay.transitions == 1 + 124 + 61
    assert replay.history_events == 63 * EVENTS_PER_POLL_ROUND


def test_policy_replay_sees_the_end_and_never_before_it() -> None:
    for make in (linear_copy("copy", 2 * HOUR), silent_restore("restore", 25 * MINUTE)):
        timeline = make(7)
        replay = replay_policy(timeline, Settings())
        assert replay.noticed_at >= timeline.done_at
        # No wait is longer than the policy's maximum, so the end is seen within one.
        assert replay.latency <= Settings().poll_max_seconds
        assert replay.transitions == 3 * replay.polls - 1


def test_copy_reports_whole_percents_and_flips_to_done_only_at_the_end() -> None:
    timeline = linear_copy("copy", HOUR, queued=HOUR)(0)
    assert timeline.observe(HOUR - 1) == (0, False)
    assert timeline.observe(HOUR + 36) == (1, False)
    assert timeline.observe(2 * HOUR - 1) == (99, False)
    assert timeline.observe(2 * HOUR) == (100, True)
    assert silent_restore("restore", 600)(0).observe(599) == (None, False)
