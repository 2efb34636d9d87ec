"""check_copy_status under moto, with the copy's in-between states injected."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.errors import PollTimeout, Retryable
from dispatcher.settings import Settings
from refresh.errors import CopyFailed
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
        "next_poll_seconds": 30,
        "progress": {
            "baseline_seconds": 0.0,
            "baseline_percent": 0.0,
            "percent": 0.0,
            "seen_at": 0.0,
            "reached_at": None,
        },
    }


class CopyState:
    """What DescribeDBClusterSnapshots says about the copy (moto's copies are done at once)."""

    def __init__(self, clients: Any) -> None:
        self.status = "copying"
        self.percent: int | None = 0
        inject(clients, "DescribeDBClusterSnapshots", self.answer)

    def answer(self, params: dict[str, Any]) -> Any:
        if params.get("DBClusterSnapshotIdentifier") != COPY or self.status == "moto":
            return None
        if self.status == "gone":
            return fail("DBClusterSnapshotNotFoundFault", f"DBClusterSnapshot {COPY} not found.")
        entry = snapshot_description(COPY, status=self.status, percent=self.percent)
        return respond({"DBClusterSnapshots": [entry]})


def poll(registry: Any, copy: dict[str, Any], clock: Clock, **kw: Any) -> dict[str, Any]:
    ctx = context({"step": "check_copy_status", "copy": copy}, request(), clock=clock, **kw)
    result: dict[str, Any] = registry.get("check_copy_status")().run(ctx)
    return result


def test_a_copy_in_progress_reports_progress_and_when_to_look_again(
    registry: Any, copy_output: Any, settings: Any, clients: Any, store: Any
) -> None:
    state = CopyState(clients)
    clock = Clock()
    kw = {"settings": settings, "clients": clients, "store": store}
    # GIVEN the copy moves 5 % every 10 minutes
    copy = copy_output
    seen = []
    for step in range(1, 4):
        clock.advance(600)
        state.percent = 5 * step
        copy = poll(registry, copy, clock, **kw)
        seen.append((copy["percent_progress"], copy["next_poll_seconds"], copy["polls"]))
    # THEN each look counts, keeps the start, and the wait follows the rate (capped at 15 minutes)
    assert [p for p, _, _ in seen] == [5, 10, 15]
    assert [n for _, _, n in seen] == [2, 3, 4]
    assert all(w == settings.poll_max_seconds for _, w, _ in seen)
    assert copy["started_at"] == copy_output["started_at"]
    assert copy["elapsed_seconds"] == 1800
    assert copy["complete"] is False
    assert copy["status"] == "copying"
    # AND the fields the other steps read are unchanged
    assert copy["identifier"] == COPY
    assert copy["arn"] == copy_output["arn"]


def test_near_the_end_it_looks_at_the_minimum_and_sees_completion(
    registry: Any, copy_output: Any, settings: Any, clients: Any, store: Any
) -> None:
    state = CopyState(clients)
    clock = Clock()
    kw = {"settings": settings, "clients": clients, "store": store}
    clock.advance(3600)
    state.percent = 98
    copy = poll(registry, copy_output, clock, **kw)
    assert copy["next_poll_seconds"] < 120
    clock.advance(copy["next_poll_seconds"])
    state.status = "moto"  # moto's copy is available
    done = poll(registry, copy, clock, **kw)
    assert done["complete"] is True
    assert done["status"] == "available"
    assert done["percent_progress"] == 100
    assert done["next_poll_seconds"] == 0


def test_a_queued_copy_backs_off(
    registry: Any, copy_output: Any, settings: Any, clients: Any, store: Any
) -> None:
    CopyState(clients)
    clock = Clock()
    kw = {"settings": settings, "clients": clients, "store": store}
    copy = copy_output
    waits = []
    for _ in range(6):
        clock.advance(copy["next_poll_seconds"])
        copy = poll(registry, copy, clock, **kw)
        waits.append(copy["next_poll_seconds"])
    assert waits == sorted(waits)
    assert waits[-1] > 3 * waits[0]


def test_a_failed_copy_raises_copy_failed(
    registry: Any, copy_output: Any, settings: Any, clients: Any, store: Any
) -> None:
    state = CopyState(clients)
    state.status, state.percent = "failed", 37
    with pytest.raises(CopyFailed) as caught:
        poll(registry, copy_output, Clock(), settings=settings, clients=clients, store=store)
    assert f"copy {COPY} in {TARGET_REGION} is failed at 37 %" in str(caught.value)


def test_a_vanished_copy_raises_copy_failed_naming_whose_it_was(
    registry: Any, copy_output: Any, settings: Any, clients: Any, store: Any
) -> None:
    state = CopyState(clients)
    state.status = "gone"
    reused = {**copy_output, "reused_from": "op-a"}
    with pytest.raises(CopyFailed) as caught:
        poll(registry, reused, Clock(), settings=settings, clients=clients, store=store)
    assert "has vanished" in str(caught.value)
    assert "operation op-a" in str(caught.value)


def test_a_really_deleted_copy_is_seen_as_vanished(
    registry: Any, copy_output: Any, settings: Any, clients: Any, store: Any
) -> None:
    clients("rds", TARGET_REGION).delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=COPY)
    with pytest.raises(CopyFailed, match="has vanished"):
        poll(registry, copy_output, Clock(), settings=settings, clients=clients, store=store)


def test_waiting_past_the_maximum_raises_poll_timeout(
    registry: Any, copy_output: Any, clients: Any, store: Any
) -> None:
    state = CopyState(clients)
    state.percent = 3
    clock = Clock()
    clock.advance(2 * 3600 + 1)
    with pytest.raises(PollTimeout) as caught:
        poll(
            registry,
            copy_output,
            clock,
            settings=Settings(copy_max_wait_seconds=7200),
            clients=clients,
            store=store,
        )
    assert COPY in str(caught.value)
    assert "3 %" in str(caught.value)


def test_a_snapshot_used_as_it_is_needs_no_look(
    registry: Any, settings: Any, clients: Any, store: Any
) -> None:
    calls = record_calls(clients)
    as_is = {"identifier": "orders-manual", "copied": False, "complete": True, "next_poll_seconds": 0}
    out = poll(registry, as_is, Clock(), settings=settings, clients=clients, store=store)
    assert out["complete"] is True
    assert calls.names("rds") == []


def test_throttling_on_the_look_is_retryable(
    dispatcher: Any, copy_output: Any, clients: Any, store: Any
) -> None:
    request_data = dispatcher.handle({"step": "validate_request", "input": request().to_dict()})
    inject(clients, "DescribeDBClusterSnapshots", lambda _: fail("Throttling", "Rate exceeded"))
    with pytest.raises(Retryable):
        dispatcher.handle({"step": "check_copy_status", "request": request_data, "copy": copy_output})
