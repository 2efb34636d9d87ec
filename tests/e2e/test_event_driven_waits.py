"""Waits ended by RDS events, end to end: the rehearsal delivers the events the stack's rule would.

With events delivered, a copy and a restore held in progress are noticed through the event step
(one Describe per event) rather than by polling; with every event lost the stack never trusts
events and its loops poll as the poll policy does; one lost event costs one fallback, after which
the loops poll until an event arrives. What is asserted is what an operator would see in the
report: the outcome, the dispatcher invocations per loop and how late each wait noticed the end.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import seed_request

#: Production poll bounds, so the waiting Tasks' fallbacks are as long as in AWS (7.5 minutes for
#: a restore), on the rehearsal's clock (0.01: ten minutes last six seconds).
PRODUCTION_POLLS = {"poll_min_seconds": 30, "poll_max_seconds": 900}


def test_events_end_the_copy_and_restore_waits_without_polling(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN a copy and a restore that each take four poll intervals, and events delivered after 5 s
    report = rehearse(
        seed_request(seed_input),
        copy_polls=3,
        restore_polls=3,
        event_delay_seconds=5.0,
        **PRODUCTION_POLLS,
    )
    # THEN the refresh succeeds, each wait ended by an event: at most one check per loop
    assert report.status == "SUCCEEDED", report.error
    loops = report.loop_invocations
    assert loops["copy"]["checks"] <= 1 and loops["restore"]["checks"] <= 1
    assert loops["copy"]["waiting"] == 1 and loops["restore"]["waiting"] == 1
    assert loops["events"]["total"] >= 2
    # AND the ends were noticed within seconds of the events' delay, not a fallback's ten minutes
    assert set(report.detection_latency) == {"copy", "restore"}
    assert all(5.0 <= latency < 60 for latency in report.detection_latency.values())
    assert report.events["lost"] == 0 and report.events["delivered"] == report.events["sent"]
    sent_by = {call["step"] for call in report.aws_calls if call["operation"] == "SendTaskSuccess"}
    assert "rds_event" in sent_by


def test_with_every_event_lost_the_loops_poll_and_the_refresh_succeeds(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN the same refresh with every RDS event lost
    report = rehearse(
        seed_request(seed_input),
        copy_polls=3,
        restore_polls=3,
        event_delay_seconds=5.0,
        event_loss=1.0,
        # (production's poll waits, up to 15 minutes, on a faster clock: 4.5 seconds at most)
        time_scale=0.005,
        **PRODUCTION_POLLS,
    )
    # THEN it still succeeds: no event ever reached the stack, so its loops never waited for one
    # and polled through their Wait states, exactly as the poll policy does
    assert report.status == "SUCCEEDED", report.error
    assert report.events["sent"] > 0 and report.events["delivered"] == 0
    assert "events" not in report.loop_invocations
    entered = [run.name for run in report.states]
    assert not [name for name in entered if name.startswith("WaitFor")]
    assert "WaitToCheckCopy" in entered and "WaitToCheckRestore" in entered
    assert report.loop_invocations["copy"]["checks"] >= 1
    assert report.loop_invocations["restore"]["checks"] >= 1
    # AND each end was noticed within one poll (poll_max_seconds), later than with events
    assert all(0 < latency <= 900 for latency in report.detection_latency.values())


def test_with_every_event_lost_a_delete_first_refresh_polls_the_deletion(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN a delete-first refresh whose deletion takes a poll, and no event ever delivered
    report = rehearse(
        seed_request(seed_input, strategy="delete-first", operation_id="op-delete-polled"),
        delete_polls=1,
        event_delay_seconds=5.0,
        event_loss=1.0,
    )
    # THEN the deletion is polled through its Wait state, as the poll policy does, and the
    # refresh succeeds
    assert report.status == "SUCCEEDED", report.error
    entered = [run.name for run in report.states]
    assert "WaitToCheckDelete" in entered and "CheckDeleteStatus" in entered
    assert "WaitForDelete" not in entered
    assert entered.index("CheckDeleteStatus") < entered.index("RestoreSnapshot")


def test_a_lost_event_costs_one_fallback_then_the_loops_poll_until_events_arrive(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN a stack that has seen RDS events (it trusts them), and the copy's event lost
    report = rehearse(
        seed_request(seed_input),
        copy_polls=5,
        restore_polls=3,
        event_delay_seconds=5.0,
        lost_events=("ar-my-source-snapshot",),
        # (a fifteen-minute fallback on a faster clock: 4.5 seconds)
        time_scale=0.005,
        **PRODUCTION_POLLS,
    )
    # THEN the copy's waiting Task timed out and ran again (its fallback poll), which found the
    # copy done and said so in the logs
    assert report.status == "SUCCEEDED", report.error
    # (a swap's renames wait poll_min_seconds at a time, and may time out too: no miss)
    timeouts = [run.name for run in report.states if run.error == "States.Timeout"]
    assert [name for name in timeouts if name != "WaitForSwap"] == ["WaitForCopy"]
    assert any("polling until events arrive" in line for line in report.lambda_logs)
    # AND the restore after it polled through its Wait state; its own event restored trust
    entered = [run.name for run in report.states]
    assert "WaitToCheckRestore" in entered and "WaitForRestore" not in entered
    assert report.events["lost"] == 1 and report.detection_latency["copy"] <= 900


@pytest.mark.parametrize("loss", [-0.1, 1.5])
def test_a_loss_outside_zero_to_one_is_refused(loss: float) -> None:
    from aurora_restore.simulate.events import EventDelivery

    with pytest.raises(ValueError, match="--event-loss"):
        EventDelivery(delay_seconds=1, loss=loss, scale=0.01, invoke=lambda e: None, account="1")
