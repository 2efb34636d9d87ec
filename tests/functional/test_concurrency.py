"""Two operations on one target: one proceeds, the other is refused before it touches RDS.

Both run the real ``snapshot_check`` through the dispatcher and the real store, on two threads
released together, in one moto world. Every AWS call is recorded with the thread that made it.
A lock left by a crashed operation stays until an operator releases it, audited.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from dispatcher.store import STATUS_FAILED, STATUS_RUNNING
from refresh.errors import TargetLocked
from refresh.target_lock import force_release_lock, lock_holder
from tests.functional.replace_world import make_cluster
from tests.functional.snapshot_world import (
    TARGET_REGION,
    manual_snapshot,
    request,
    source_cluster,
)

TARGET = "orders-dev"
EXECUTION = "arn:aws:states:us-west-2:123456789012:execution:aurora-restore:"


@dataclass
class CallLog:
    """Every AWS call made, as (thread name, service, operation)."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls.append((threading.current_thread().name, model.service_model.service_name, model.name))

    def of(self, thread: str, service: str | None = None) -> list[str]:
        return [op for who, svc, op in self.calls if who == thread and (service is None or svc == service)]


pytestmark = pytest.mark.usefixtures("atomic_dynamodb_writes")


@pytest.fixture
def call_log(clients: Any) -> CallLog:
    log = CallLog()
    clients.add_hook("before-call", log)
    return log


def validated(dispatcher: Any, operation_id: str) -> dict[str, Any]:
    """The execution data after ValidateRequest for a refresh of TARGET by ``operation_id``."""
    data: dict[str, Any] = {"body": request(operation_id=operation_id, target_cluster_id=TARGET).to_dict()}
    data["request"] = dispatcher.handle(
        {"step": "validate_request", "execution_id": EXECUTION + operation_id, "input": data}
    )
    return data


def task(dispatcher: Any, data: dict[str, Any], step: str) -> dict[str, Any]:
    """One Task state: the step's ``reads`` as Parameters, its output under ``result_key``."""
    cls = dispatcher.registry.get(step)
    event: dict[str, Any] = {"step": step, "execution_id": EXECUTION + data["request"]["operation_id"]}
    for key in cls.reads:
        if key == "$":
            event["input"] = data
        else:
            event[key] = data[key]
    data[cls.result_key] = dispatcher.handle(event)
    return data[cls.result_key]


def caught(data: dict[str, Any], error: BaseException) -> dict[str, Any]:
    """The data HandleFailure gets after a Catch (``ResultPath: $.error``) of a Lambda error."""
    cause = {"errorMessage": str(error), "errorType": type(error).__name__}
    return {**data, "error": {"Error": type(error).__name__, "Cause": json.dumps(cause)}}


def race(*jobs: Callable[[], Any]) -> list[tuple[str, Any]]:
    """Run the jobs on their own threads, released together; returns (thread name, result or error)."""
    start = threading.Barrier(len(jobs))
    results: list[tuple[str, Any]] = [("", None)] * len(jobs)

    def run(index: int, job: Callable[[], Any]) -> None:
        start.wait()
        try:
            results[index] = (threading.current_thread().name, job())
        except Exception as exc:
            results[index] = (threading.current_thread().name, exc)

    threads = [
        threading.Thread(target=run, args=(i, job), name=f"operation-{i}") for i, job in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("target_exists", [False, True], ids=["new-target", "existing-target"])
def test_two_operations_started_together_only_one_proceeds(
    dispatcher: Any, clients: Any, store: Any, call_log: CallLog, target_exists: bool
) -> None:
    # GIVEN a source snapshot, maybe a managed target already there, and two validated operations
    source_cluster(clients)
    manual_snapshot(clients)
    if target_exists:
        make_cluster(clients, TARGET)
    first, second = validated(dispatcher, "op-race-a"), validated(dispatcher, "op-race-b")
    clients("rds", "us-east-1"), clients("rds", TARGET_REGION)  # clients made before the race
    # WHEN both take the SnapshotCheck state at the same moment
    outcomes = race(
        lambda: task(dispatcher, first, "snapshot_check"), lambda: task(dispatcher, second, "snapshot_check")
    )
    # THEN exactly one got the snapshot facts and the other TargetLocked naming the holder
    winners = [
        (name, data)
        for (name, result), data in zip(outcomes, (first, second), strict=True)
        if not isinstance(result, BaseException)
    ]
    losers = [
        (name, result, data)
        for (name, result), data in zip(outcomes, (first, second), strict=True)
        if isinstance(result, BaseException)
    ]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    (winner_thread, holder), (loser_thread, error, loser) = winners[0], losers[0]
    assert isinstance(error, TargetLocked)
    holder_id = holder["request"]["operation_id"]
    assert holder_id in str(error) and "aurora-restore unlock" in str(error)
    assert lock_holder(store, TARGET_REGION, TARGET)["lock_owner"] == holder_id
    # AND the refused operation made no RDS call at all (only its state and lock in DynamoDB)
    assert call_log.of(loser_thread, "rds") == []
    assert call_log.of(winner_thread, "rds")  # the holder did look at RDS
    assert set(call_log.of(loser_thread)) <= {"PutItem", "UpdateItem", "GetItem"}

    # WHEN the refused operation goes to HandleFailure, as its Catch sends it
    before = {
        c["DBClusterIdentifier"] for c in clients("rds", TARGET_REGION).describe_db_clusters()["DBClusters"]
    }
    task(dispatcher, caught(loser, error), "handle_failure")
    # THEN it ends FAILED, but the holder's lock, state and target are untouched
    assert store.get_operation(loser["request"]["operation_id"])["status"] == STATUS_FAILED
    assert lock_holder(store, TARGET_REGION, TARGET)["lock_owner"] == holder_id
    assert store.get_operation(holder_id)["status"] == STATUS_RUNNING
    after = {
        c["DBClusterIdentifier"] for c in clients("rds", TARGET_REGION).describe_db_clusters()["DBClusters"]
    }
    assert after == before
    # AND the holder's run goes on: its copy is made and seen complete
    task(dispatcher, holder, "copy_snapshot")
    assert task(dispatcher, holder, "check_copy_status")["complete"] is True
    assert store.get_operation(holder_id)["status"] == STATUS_RUNNING
    assert lock_holder(store, TARGET_REGION, TARGET)["lock_owner"] == holder_id


def test_many_racing_operations_one_winner(
    dispatcher: Any, clients: Any, store: Any, call_log: CallLog
) -> None:
    # GIVEN five operations on one target
    source_cluster(clients)
    manual_snapshot(clients)
    runs = [validated(dispatcher, f"op-crowd-{i}") for i in range(5)]
    clients("rds", "us-east-1"), clients("rds", TARGET_REGION)
    # WHEN all take the lock at once
    outcomes = race(*[(lambda data=data: task(dispatcher, data, "snapshot_check")) for data in runs])
    # THEN one proceeds; four are refused with TargetLocked, none having called RDS
    refused = [(name, result) for name, result in outcomes if isinstance(result, BaseException)]
    assert len(refused) == 4
    assert all(isinstance(result, TargetLocked) for _, result in refused)
    assert all(call_log.of(name, "rds") == [] for name, _ in refused)
    holder = lock_holder(store, TARGET_REGION, TARGET)["lock_owner"]
    winners = [
        data
        for (_, result), data in zip(outcomes, runs, strict=True)
        if not isinstance(result, BaseException)
    ]
    assert [data["request"]["operation_id"] for data in winners] == [holder]


def test_a_crashed_operations_lock_is_released_only_by_an_audited_operator_action(
    dispatcher: Any, clients: Any, store: Any, call_log: CallLog
) -> None:
    # GIVEN an operation that took the lock and then died (no HandleFailure ran)
    source_cluster(clients)
    manual_snapshot(clients)
    crashed = validated(dispatcher, "op-crashed")
    task(dispatcher, crashed, "snapshot_check")
    # WHEN a new operation starts on the same target, twice (its state machine retries nothing here)
    fresh = validated(dispatcher, "op-fresh")
    call_log.calls.clear()
    for _ in range(2):
        with pytest.raises(TargetLocked, match="op-crashed"):
            task(dispatcher, fresh, "snapshot_check")
    # THEN it is refused each time before any RDS call; nothing released the lock silently
    assert [op for _, svc, op in call_log.calls if svc == "rds"] == []
    assert lock_holder(store, TARGET_REGION, TARGET)["lock_owner"] == "op-crashed"
    assert not [e for e in store.audit_trail("op-crashed") if e["event"] == "lock_force_released"]

    # WHEN an operator releases it, saying who and why
    released = force_release_lock(
        store,
        TARGET_REGION,
        TARGET,
        released_by="arn:aws:iam::123456789012:user/alice",
        reason="execution was aborted",
    )
    # THEN the crashed operation's trail records it, and the new operation proceeds
    assert released == "op-crashed"
    event = [e for e in store.audit_trail("op-crashed") if e["event"] == "lock_force_released"]
    assert len(event) == 1
    assert event[0]["released_by"] == "arn:aws:iam::123456789012:user/alice"
    assert event[0]["reason"] == "execution was aborted"
    assert event[0]["target_cluster_id"] == TARGET
    task(dispatcher, fresh, "snapshot_check")
    assert lock_holder(store, TARGET_REGION, TARGET)["lock_owner"] == "op-fresh"
    # AND the crashed operation cannot take it back behind the new holder's back
    with pytest.raises(TargetLocked, match="op-fresh"):
        task(dispatcher, crashed, "snapshot_check")
