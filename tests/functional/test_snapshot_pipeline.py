"""The snapshot states through the dispatcher, passing data exactly as the state machine does."""

from __future__ import annotations

from typing import Any

from refresh.target_lock import lock_holder
from tests.functional.snapshot_world import (
    OPERATION,
    TARGET_REGION,
    manual_snapshot,
    request,
    snapshots,
    source_cluster,
)

#: State -> (step, the keys it reads, where its result goes), from docs/architecture.md.
STATES = {
    "SnapshotCheck": ("snapshot_check", ("request",), "snapshot"),
    "CopySnapshot": ("copy_snapshot", ("request", "snapshot"), "copy"),
    "CheckCopyStatus": ("check_copy_status", ("request", "copy"), "copy"),
    "ArchiveSnapshot": ("archive_snapshot", ("request", "copy", "restore", "snapshot"), "archive"),
}


def task(dispatcher: Any, data: dict[str, Any], state: str) -> None:
    """One Task state: Parameters from ``reads``, ResultPath ``$.<result_key>``."""
    step, reads, result_key = STATES[state]
    assert dispatcher.registry.get(step).reads == reads
    assert dispatcher.registry.get(step).result_key == result_key
    event = {"step": step, "execution_id": "arn:aws:states:us-west-2:123456789012:execution:sm:run-1"}
    event.update({key: data[key] for key in reads})
    data[result_key] = dispatcher.handle(event)


def test_the_snapshot_states_run_in_order_and_are_audited(dispatcher: Any, clients: Any, store: Any) -> None:
    # GIVEN a source snapshot in us-east-1 and a validated request for us-west-2
    source_cluster(clients)
    manual_snapshot(clients)
    data: dict[str, Any] = {"input": {"body": request().to_dict()}}
    data["request"] = dispatcher.handle({"step": "validate_request", "input": data["input"]})
    # WHEN the snapshot states run, with a restore result standing in for the replace states
    task(dispatcher, data, "SnapshotCheck")
    task(dispatcher, data, "CopySnapshot")
    task(dispatcher, data, "CheckCopyStatus")
    data["restore"] = {"cluster_id": "orders-dev", "complete": True, "swap_required": False}
    task(dispatcher, data, "ArchiveSnapshot")
    # THEN the Choice and Wait states find what they read, and the copy was made once and tagged
    assert data["copy"]["complete"] is True
    assert isinstance(data["copy"]["next_poll_seconds"], int)
    assert data["snapshot"]["target"]["exists"] is False
    copies = [s for s in snapshots(clients, TARGET_REGION) if s.startswith("ar-")]
    assert copies == [data["copy"]["identifier"]]
    assert snapshots(clients, TARGET_REGION)[copies[0]]["aurora-restore:restored-into"] == "orders-dev"
    assert data["archive"]["kept"] == copies
    # AND every step is on the audit trail with its outcome and the lock is held for the rest
    trail = [
        (e["step"], e["event"])
        for e in store.audit_trail(OPERATION)
        if e["event"] in ("started", "succeeded")
    ]
    assert [s for s, e in trail if e == "succeeded"] == [
        "validate_request",
        "snapshot_check",
        "copy_snapshot",
        "check_copy_status",
        "archive_snapshot",
    ]
    assert lock_holder(store, TARGET_REGION, "orders-dev")["lock_owner"] == OPERATION
