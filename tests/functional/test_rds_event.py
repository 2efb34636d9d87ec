"""Event-driven waits under moto: the waiting half records its token, RDS events are only hints.

The waiting half (``await_copy``) records the execution's token against the copy and checks
once; the event step (``rds_event``) runs the same check for whoever waits on the event's
resource and answers Step Functions only with what that check saw. (moto's own Step Functions
API accepts SendTaskSuccess/SendTaskFailure and does nothing with them; the calls are recorded.)
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from tests.functional.snapshot_world import (
    TARGET_REGION,
    Clock,
    context,
    fail,
    inject,
    managed_copy,
    manual_snapshot,
    record_calls,
    request,
    respond,
    snapshot_description,
    source_cluster,
)

COPY = "ar-orders-manual-0f3c2a1b"
TOKEN = "token-of-the-waiting-task"


@pytest.fixture
def copy_output(clients: Any) -> dict[str, Any]:
    """What copy_snapshot returned when it started a copy now at 0 %."""
    source_cluster(clients)
    source = manual_snapshot(clients)
    made = managed_copy(clients, COPY, operation_id="op-copy-1", source_arn=source["DBClusterSnapshotArn"])
    return {
        "identifier": COPY,
        "arn": made["DBClusterSnapshotArn"],
        "region": TARGET_REGION,
        "copied": True,
        "reason": "cross-region",
        "reused_from": None,
        "source_arn": source["DBClusterSnapshotArn"],
        "kms_key_id": None,
        "status": "copying",
        "percent_progress": 0,
        "polls": 1,
        "started_at": "2026-03-01T02:00:00Z",
        "elapsed_seconds": 0,
        "complete": False,
        "next_poll_seconds": 600,
        "fallback_seconds": 1800,
    }


class CopyState:
    """What DescribeDBClusterSnapshots says about the copy (moto's copies are done at once)."""

    def __init__(self, clients: Any) -> None:
        self.status = "copying"
        self.describes = 0
        inject(clients, "DescribeDBClusterSnapshots", self.answer)

    def answer(self, params: dict[str, Any]) -> Any:
        if params.get("DBClusterSnapshotIdentifier") != COPY:
            return None
        self.describes += 1
        if self.status == "gone":
            return fail("DBClusterSnapshotNotFoundFault", f"DBClusterSnapshot {COPY} not found.")
        percent = 100 if self.status == "available" else 40
        return respond(
            {"DBClusterSnapshots": [snapshot_description(COPY, status=self.status, percent=percent)]}
        )


def rds_event(
    source_identifier: str, *, region: str = TARGET_REGION, event_id: str = "RDS-EVENT-0060"
) -> dict[str, Any]:
    """An EventBridge ``RDS DB Cluster Snapshot Event`` as the rule's input transformer passes it."""
    return {
        "step": "rds_event",
        "event": {
            "version": "0",
            "id": "c9598bd3-36eb-1289-6d01-768bdaacf8a0",
            "detail-type": "RDS DB Cluster Snapshot Event",
            "source": "aws.rds",
            "account": "123456789012",
            "time": "2026-03-01T03:00:00Z",
            "region": region,
            "resources": [f"arn:aws:rds:{region}:123456789012:cluster-snapshot:{source_identifier}"],
            "detail": {
                "EventCategories": ["notification"],
                "SourceType": "CLUSTER_SNAPSHOT",
                "SourceArn": f"arn:aws:rds:{region}:123456789012:cluster-snapshot:{source_identifier}",
                "Date": "2026-03-01T03:00:00.000Z",
                "Message": "Finished DB cluster snapshot copy",
                "SourceIdentifier": source_identifier,
                "EventID": event_id,
            },
        },
    }


def run(registry: Any, name: str, event: dict[str, Any], clock: Clock, **kw: Any) -> dict[str, Any]:
    ctx = context(event, request(), clock=clock, **kw)
    result: dict[str, Any] = registry.get(name)().run(ctx)
    return result


def answers(calls: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        (op, params) for op, params in ((op, p) for _, _, op, p in calls.made) if op.startswith("SendTask")
    ]


@pytest.fixture
def kw(settings: Any, clients: Any, store: Any) -> dict[str, Any]:
    """A stack that has seen RDS events in the target region an hour ago (it trusts them)."""
    from dispatcher import waits

    waits.record_arrival(store, TARGET_REGION, Clock().now - timedelta(hours=1))
    return {"settings": settings, "clients": clients, "store": store}


def start_waiting(registry: Any, copy: dict[str, Any], clock: Clock, kw: dict[str, Any]) -> None:
    run(registry, "await_copy", {"step": "await_copy", "copy": copy, "task_token": TOKEN}, clock, **kw)


def test_an_event_for_the_awaited_copy_completes_the_wait_with_the_checks_output(
    registry: Any, copy_output: Any, clients: Any, kw: dict[str, Any]
) -> None:
    state = CopyState(clients)
    calls = record_calls(clients)
    clock = Clock()
    # GIVEN the waiting half found the copy still copying (one Describe, no answer yet)
    start_waiting(registry, copy_output, clock, kw)
    assert state.describes == 1 and answers(calls) == []
    # WHEN the copy finishes and RDS says so
    clock.advance(300)
    state.status = "available"
    result = run(registry, "rds_event", rds_event(COPY), clock, **kw)
    # THEN one check ran and the wait ends with the output a poll would have produced
    assert state.describes == 2
    [(operation, params)] = answers(calls)
    assert operation == "SendTaskSuccess" and params["taskToken"] == TOKEN
    output = json.loads(params["output"])
    assert output["complete"] is True and output["identifier"] == COPY and output["status"] == "available"
    assert output["polls"] == copy_output["polls"] + 1
    assert result["completed"] == ["exec-test"]
    # AND a duplicate of the event finds nobody waiting: no Describe, no second answer
    again = run(registry, "rds_event", rds_event(COPY), clock, **kw)
    assert again["waiters"] == 0 and state.describes == 2 and len(answers(calls)) == 1


def test_a_stray_event_for_another_resource_costs_no_aws_call(
    registry: Any, copy_output: Any, clients: Any, kw: dict[str, Any]
) -> None:
    state = CopyState(clients)
    calls = record_calls(clients)
    clock = Clock()
    start_waiting(registry, copy_output, clock, kw)
    rds_before = len(calls.names("rds"))
    # WHEN events arrive for a snapshot nobody waits on, and for the copy's name in another region
    run(registry, "rds_event", rds_event("someone-elses-snapshot"), clock, **kw)
    run(registry, "rds_event", rds_event(COPY, region="eu-west-3"), clock, **kw)
    # THEN nothing was described and no wait was answered
    assert len(calls.names("rds")) == rds_before and state.describes == 1
    assert answers(calls) == []


def test_a_forged_event_whose_describe_disagrees_leaves_the_wait_alone(
    registry: Any, copy_output: Any, clients: Any, kw: dict[str, Any]
) -> None:
    state = CopyState(clients)
    calls = record_calls(clients)
    clock = Clock()
    start_waiting(registry, copy_output, clock, kw)
    # WHEN an event claims the copy finished while RDS still reports it copying
    run(registry, "rds_event", rds_event(COPY, event_id="RDS-EVENT-0060"), clock, **kw)
    # THEN one Describe, no answer: the execution keeps waiting
    assert state.describes == 2 and answers(calls) == []
    # AND the real end, later, is still answered
    state.status = "available"
    run(registry, "rds_event", rds_event(COPY), clock, **kw)
    assert [op for op, _ in answers(calls)] == ["SendTaskSuccess"]


def test_a_failed_copy_fails_the_wait_with_the_checks_error(
    registry: Any, copy_output: Any, clients: Any, kw: dict[str, Any]
) -> None:
    state = CopyState(clients)
    calls = record_calls(clients)
    clock = Clock()
    start_waiting(registry, copy_output, clock, kw)
    state.status = "failed"
    run(registry, "rds_event", rds_event(COPY), clock, **kw)
    [(operation, params)] = answers(calls)
    assert operation == "SendTaskFailure" and params["error"] == "CopyFailed"
    assert json.loads(params["cause"])["errorType"] == "CopyFailed"


def test_an_event_before_the_token_is_stored_is_caught_by_the_waiting_halfs_own_check(
    registry: Any, copy_output: Any, clients: Any, kw: dict[str, Any]
) -> None:
    state = CopyState(clients)
    calls = record_calls(clients)
    clock = Clock()
    # GIVEN the copy finished and its event arrived before any execution waited on it
    state.status = "available"
    early = run(registry, "rds_event", rds_event(COPY), clock, **kw)
    assert early["waiters"] == 0 and answers(calls) == []
    # WHEN the waiting half starts: it records its token, then checks once
    start_waiting(registry, copy_output, clock, kw)
    # THEN it completes its own wait with the check's output
    [(operation, params)] = answers(calls)
    assert operation == "SendTaskSuccess" and params["taskToken"] == TOKEN
    assert json.loads(params["output"])["complete"] is True
    # AND leaves no token behind for a later event to answer
    late = run(registry, "rds_event", rds_event(COPY), clock, **kw)
    assert late["waiters"] == 0 and len(answers(calls)) == 1


def test_an_expired_wait_is_not_answered(
    registry: Any, copy_output: Any, clients: Any, kw: dict[str, Any]
) -> None:
    state = CopyState(clients)
    calls = record_calls(clients)
    clock = Clock()
    start_waiting(registry, copy_output, clock, kw)
    # WHEN the event comes long after the Task's timeout (the fallback poll has taken over)
    clock.advance(copy_output["fallback_seconds"] + 3600)
    state.status = "available"
    result = run(registry, "rds_event", rds_event(COPY), clock, **kw)
    assert result["waiters"] == 0 and answers(calls) == [] and state.describes == 1


def fallback_poll(
    registry: Any, copy: dict[str, Any], clock: Clock, kw: dict[str, Any], *, token: str = TOKEN
) -> None:
    """The waiting half run again by the Task's Catch after its timeout (``$.copy.fallback`` set)."""
    timed_out = {**copy, "fallback": {"Error": "States.Timeout", "Cause": ""}}
    run(registry, "await_copy", {"step": "await_copy", "copy": timed_out, "task_token": token}, clock, **kw)


def test_a_fallback_poll_that_finds_the_copy_done_stops_trusting_events_until_one_arrives(
    registry: Any, copy_output: Any, clients: Any, kw: dict[str, Any]
) -> None:
    from dispatcher import waits

    state = CopyState(clients)
    calls = record_calls(clients)
    clock = Clock()
    start_waiting(registry, copy_output, clock, kw)
    # GIVEN the copy's event is lost: the Task times out after its fallback and the waiting half
    # runs again, and finds the copy done
    clock.advance(copy_output["fallback_seconds"])
    state.status = "available"
    fallback_poll(registry, copy_output, clock, kw, token="token-after-the-timeout")
    # THEN it ends its wait with the finished copy, and events are no longer trusted in the region
    [(_, params)] = answers(calls)
    assert json.loads(params["output"])["complete"] is True
    assert not waits.events_trusted(kw["store"], TARGET_REGION)
    missed = kw["store"].get_item(waits.events_key(TARGET_REGION))
    assert missed["missed_resources"] == [COPY]
    # AND the next loop's look says to poll instead of waiting, and ends its own wait at once
    state.status = "copying"
    start_waiting(registry, copy_output, clock, kw)
    [_, (_, polling)] = answers(calls)
    assert json.loads(polling["output"])["wait_for_events"] is False
    # WHEN any RDS event arrives in the region (the rule works again)
    clock.advance(60)
    run(registry, "rds_event", rds_event("someone-elses-snapshot"), clock, **kw)
    # THEN events are trusted again: the next look waits for one, with nothing answered
    assert waits.events_trusted(kw["store"], TARGET_REGION)
    start_waiting(registry, copy_output, clock, kw)
    assert len(answers(calls)) == 2


def test_a_short_wait_that_ends_in_a_fallback_poll_is_not_a_missed_event(
    registry: Any, copy_output: Any, clients: Any, kw: dict[str, Any]
) -> None:
    from dispatcher import waits

    state = CopyState(clients)
    clock = Clock()
    # GIVEN a wait of a minute (a swap's renames wait poll_min_seconds): an event may come later
    short = {**copy_output, "fallback_seconds": 60}
    clock.advance(60)
    state.status = "available"
    fallback_poll(registry, short, clock, kw)
    # THEN the work is done but events keep their trust
    assert waits.events_trusted(kw["store"], TARGET_REGION)
    assert "last_missed_at" not in kw["store"].get_item(waits.events_key(TARGET_REGION))


def test_a_new_stack_polls_until_its_first_rds_event_arrives(
    registry: Any, copy_output: Any, clients: Any, settings: Any, store: Any
) -> None:
    from dispatcher import waits

    CopyState(clients)
    calls = record_calls(clients)
    clock = Clock()
    kw = {"settings": settings, "clients": clients, "store": store}
    # GIVEN a stack no RDS event has reached yet (the rule might be missing or failing)
    assert not waits.events_trusted(store, TARGET_REGION)
    # WHEN the copy loop looks: it ends its own wait at once and the loop polls through its Wait state
    start_waiting(registry, copy_output, clock, kw)
    [(_, polling)] = answers(calls)
    assert json.loads(polling["output"])["wait_for_events"] is False
    # AND once any RDS event of the region arrives, the next look waits for events
    run(registry, "rds_event", rds_event("someone-elses-snapshot"), clock, **kw)
    start_waiting(registry, copy_output, clock, kw)
    assert len(answers(calls)) == 1 and waits.events_trusted(store, TARGET_REGION)


def test_arrivals_are_written_at_most_every_few_minutes_but_always_after_a_miss(
    clients: Any, kw: dict[str, Any]
) -> None:
    from dispatcher import waits

    store, clock = kw["store"], Clock()
    writes = record_calls(clients)

    def arrival_writes() -> int:
        return sum(1 for _, _, op, p in writes.made if op == "UpdateItem" and "last_event_at" in str(p))

    # WHEN RDS events arrive every few seconds (the rule sends every RDS event in the region)
    for _ in range(10):
        waits.record_arrival(store, TARGET_REGION, clock())
        clock.advance(5)
    # THEN one write records them
    assert arrival_writes() == 1
    # AND after a miss the next arrival is written at once, and trust comes back
    waits.record_miss(store, TARGET_REGION, [COPY], clock())
    assert not waits.events_trusted(store, TARGET_REGION)
    clock.advance(1)
    waits.record_arrival(store, TARGET_REGION, clock())
    assert arrival_writes() == 2 and waits.events_trusted(store, TARGET_REGION)


def test_one_check_of_a_loop_at_a_time(kw: dict[str, Any]) -> None:
    from dispatcher import waits

    store, clock = kw["store"], Clock()
    slept: list[float] = []
    for operation in ("op-1", "op-2"):
        store.step_started(operation, "swap_clusters", f"exec-{operation}")

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    with waits.one_check_at_a_time(store, "op-1", "swap", "event-step", clock) as first:
        assert first
        # WHILE the event step's check runs, the waiting half's check of the same loop waits its
        # turn, and gives up after CHECK_WAIT_SECONDS
        with waits.one_check_at_a_time(store, "op-1", "swap", "waiting-half", clock, sleep) as second:
            assert second is False
        assert sum(slept) == waits.CHECK_WAIT_SECONDS
        # AND another operation's check, or another loop's, is not held up
        with waits.one_check_at_a_time(store, "op-2", "swap", "other", clock, sleep) as other:
            assert other
        with waits.one_check_at_a_time(store, "op-1", "restore", "other-loop", clock, sleep) as loop:
            assert loop
    # WHEN the first check ends, the next one runs
    with waits.one_check_at_a_time(store, "op-1", "swap", "waiting-half", clock, sleep) as third:
        assert third
        # AND a holder that died (a Lambda timeout) holds it only CHECK_HOLD_SECONDS
        clock.advance(waits.CHECK_HOLD_SECONDS + 1)
        with waits.one_check_at_a_time(store, "op-1", "swap", "after-a-crash", clock, sleep) as taken:
            assert taken
    # AND a hold leaves nothing behind on the operation's item once released
    assert not [name for name in store.get_item("op-1") if name.startswith(waits.CHECK_ATTRIBUTE_PREFIX)]
    # AND an operation with no state item is never created by a check's hold
    with waits.one_check_at_a_time(store, "op-unknown", "swap", "stray", clock, sleep) as stray:
        assert stray is False
    assert store.get_item("op-unknown") is None


def test_the_event_step_runs_the_check_of_the_dispatchers_own_registry(
    registry: Any, copy_output: Any, clients: Any, kw: dict[str, Any]
) -> None:
    # GIVEN a deployment whose copy loop is its own (a subclass with its own check), registered in
    # the dispatcher's registry in place of the built-in one
    from steps.copy_snapshot import CopySnapshot

    def check(self: Any, ctx: Any) -> dict[str, Any]:
        return {**CopySnapshot.check(self, ctx), "checked_by": "the deployment's own loop"}

    registry.unregister("copy_snapshot")
    own = type("OwnCopySnapshot", (CopySnapshot,), {"__doc__": CopySnapshot.__doc__, "check": check})
    registry.register("copy_snapshot")(own)
    state = CopyState(clients)
    calls = record_calls(clients)
    clock = Clock()
    start_waiting(registry, copy_output, clock, kw)
    # WHEN the copy's event arrives at the dispatcher holding that registry
    state.status = "available"
    ctx = context(rds_event(COPY), request(), clock=clock, **kw)
    ctx.registry = registry
    registry.get("rds_event")().run(ctx)
    # THEN the wait is answered with that loop's check, not the built-in one
    [(_, params)] = answers(calls)
    assert json.loads(params["output"])["checked_by"] == "the deployment's own loop"
