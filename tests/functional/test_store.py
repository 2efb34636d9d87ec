"""State item, audit trail and target locks against moto's DynamoDB."""

from __future__ import annotations

from typing import Any

import pytest

from refresh.errors import TargetLocked
from refresh.target_lock import force_release_lock, lock_holder, release_lock, take_lock


def test_state_item_tracks_an_operation(store: Any) -> None:
    store.step_started("op-1", "validate_request", "exec-1")
    store.step_started("op-1", "validate_request", "exec-1")  # a retried start changes nothing
    store.record_request("op-1", {"target_region": "eu-central-1", "target_cluster_id": "orders-dev"})
    store.step_started("op-1", "snapshot_check", "exec-1")
    store.step_succeeded("op-1", "snapshot_check", {"engine": "aurora-postgresql", "size_gb": 1.5}, 120)
    store.finish("op-1", "SUCCEEDED")
    item = store.get_operation("op-1")
    assert item["status"] == "SUCCEEDED"
    assert item["current_step"] == "snapshot_check"
    assert item["results"]["snapshot_check"] == {"engine": "aurora-postgresql", "size_gb": 1.5}
    assert item["step_durations_ms"]["snapshot_check"] == 120
    assert item["target_cluster_id"] == "orders-dev"
    assert item["finished_at"].endswith("Z")


def test_state_item_never_holds_a_secret(store: Any) -> None:
    store.step_started("op-2", "setup_db_users", None)
    store.step_succeeded("op-2", "setup_db_users", {"password": "hunter2", "created": ["app"]}, 5)
    item = store.get_operation("op-2")
    assert item["results"]["setup_db_users"]["password"] == "***"


def test_audit_trail_is_ordered_and_expires(store: Any) -> None:
    for event in ("started", "succeeded", "started", "failed"):
        store.audit("op-3", event, step="copy_snapshot", token="abc")
    trail = store.audit_trail("op-3")
    assert [i["event"] for i in trail] == ["started", "succeeded", "started", "failed"]
    assert all(i["token"] == "***" for i in trail)
    assert all(isinstance(i["expires_at"], int) for i in trail)


def test_lock_is_exclusive_reentrant_and_released_by_its_owner_only(store: Any) -> None:
    take_lock(store, "eu-central-1", "orders-dev", "op-a")
    take_lock(store, "eu-central-1", "orders-dev", "op-a")  # a retry of the owner
    with pytest.raises(TargetLocked) as caught:
        take_lock(store, "eu-central-1", "Orders-Dev", "op-b")
    assert "op-a" in str(caught.value)
    assert "aurora-restore unlock orders-dev" in str(caught.value)
    assert release_lock(store, "eu-central-1", "orders-dev", "op-b") is False
    assert lock_holder(store, "eu-central-1", "orders-dev")["lock_owner"] == "op-a"
    assert release_lock(store, "eu-central-1", "orders-dev", "op-a") is True
    assert lock_holder(store, "eu-central-1", "orders-dev") is None
    take_lock(store, "eu-central-1", "orders-dev", "op-b")
    assert lock_holder(store, "eu-central-1", "orders-dev")["lock_owner"] == "op-b"


def test_taking_a_lock_writes_one_item_naming_its_owner(store: Any, clients: Any, settings: Any) -> None:
    take_lock(store, "eu-central-1", "Orders-Dev", "op-a")

    # The lock is one item of the state table, keyed by the target whatever its case in the request.
    key = {"operation_id": {"S": "lock#eu-central-1#orders-dev"}}
    response = clients("dynamodb").get_item(TableName=settings.state_table, Key=key, ConsistentRead=True)
    item = response["Item"]
    assert item["lock_owner"] == {"S": "op-a"}
    assert item["target_region"] == {"S": "eu-central-1"}
    assert item["target_cluster_id"] == {"S": "Orders-Dev"}
    assert lock_holder(store, "eu-central-1", "orders-dev")["lock_owner"] == "op-a"
    assert lock_holder(store, "eu-central-1", "orders-stg") is None


def test_locks_on_other_targets_are_independent(store: Any) -> None:
    targets = [("eu-central-1", "orders-dev", "op-a"), ("eu-west-1", "orders-dev", "op-b"),
               ("eu-central-1", "orders-stg", "op-c")]  # fmt: skip
    for region, cluster, owner in targets:
        take_lock(store, region, cluster, owner)
    assert [lock_holder(store, region, cluster)["lock_owner"] for region, cluster, _ in targets] == [
        "op-a",
        "op-b",
        "op-c",
    ]
    # Each target still refuses a second owner, and releasing one leaves the others held.
    with pytest.raises(TargetLocked):
        take_lock(store, "eu-west-1", "orders-dev", "op-a")
    assert release_lock(store, "eu-central-1", "orders-dev", "op-a") is True
    assert lock_holder(store, "eu-central-1", "orders-dev") is None
    assert lock_holder(store, "eu-west-1", "orders-dev")["lock_owner"] == "op-b"
    assert lock_holder(store, "eu-central-1", "orders-stg")["lock_owner"] == "op-c"


def test_force_release_is_audited_on_the_holders_trail(store: Any) -> None:
    take_lock(store, "eu-central-1", "orders-dev", "op-dead")
    owner = force_release_lock(store, "eu-central-1", "orders-dev", released_by="alice", reason="crashed")
    assert owner == "op-dead"
    assert lock_holder(store, "eu-central-1", "orders-dev") is None
    trail = store.audit_trail("op-dead")
    assert trail[-1]["event"] == "lock_force_released"
    assert trail[-1]["released_by"] == "alice"
    assert force_release_lock(store, "eu-central-1", "orders-dev", released_by="alice", reason="x") is None


def test_a_step_start_creates_the_item_and_a_retried_operation_runs_again(store: Any) -> None:
    store.step_started("op-9", "validate_request", "exec-1")
    item = store.get_operation("op-9")
    assert (item["status"], item["current_step"], item["results"]) == ("RUNNING", "validate_request", {})
    store.step_succeeded("op-9", "validate_request", {"ok": True}, 3)
    store.finish("op-9", "FAILED", error={"type": "CopyFailed", "message": "x"})
    # WHEN the operator retries the same operation
    store.step_started("op-9", "validate_request", "exec-2")
    item = store.get_operation("op-9")
    # THEN it is RUNNING again, its earlier results and start time kept
    assert item["status"] == "RUNNING"
    assert item["execution_id"] == "exec-2"
    assert item["results"]["validate_request"] == {"ok": True}
