"""archive_snapshot under moto: tags on the copy, retention that never deletes the wrong snapshot,
the optional S3 export, and a second run that changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.errors import Retryable, ValidationError
from dispatcher.settings import Settings
from dispatcher.store import STATUS_SUCCEEDED
from tests.functional.snapshot_world import (
    OPERATION,
    TARGET_CLUSTER,
    TARGET_REGION,
    Clock,
    context,
    fail,
    inject,
    managed_copy,
    manual_snapshot,
    record_calls,
    request,
    snapshots,
    source_cluster,
    target_key,
)

CURRENT = "ar-orders-manual-current"
RESTORE = {"cluster_id": "orders-dev-new-4f2a1c", "complete": True, "swap_required": True}


def finished(store: Any, *operation_ids: str) -> None:
    for operation_id in operation_ids:
        store.step_started(operation_id, "validate_request", None)
        store.finish(operation_id, STATUS_SUCCEEDED)


def running(store: Any, *operation_ids: str) -> None:
    for operation_id in operation_ids:
        store.step_started(operation_id, "validate_request", None)


def copy_output(clients: Any, identifier: str = CURRENT, **fields: Any) -> dict[str, Any]:
    described = clients("rds", TARGET_REGION).describe_db_cluster_snapshots(
        DBClusterSnapshotIdentifier=identifier
    )
    return {
        "identifier": identifier,
        "arn": described["DBClusterSnapshots"][0]["DBClusterSnapshotArn"],
        "region": TARGET_REGION,
        "copied": True,
        "reused_from": None,
        "status": "available",
        "complete": True,
        **fields,
    }


def archive(registry: Any, copy: dict[str, Any], *, req: Any = None, **kw: Any) -> dict[str, Any]:
    ctx = context({"step": "archive_snapshot", "copy": copy, "restore": RESTORE}, req or request(), **kw)
    result: dict[str, Any] = registry.get("archive_snapshot")().run(ctx)
    return result


@pytest.fixture
def source_arn(clients: Any) -> str:
    source_cluster(clients)
    return str(manual_snapshot(clients)["DBClusterSnapshotArn"])


@pytest.fixture
def history(clients: Any, store: Any, source_arn: str) -> dict[str, str]:
    """Copies earlier refreshes left in the target region, oldest first, and this operation's."""
    made = {}
    for name, operation_id, extra in [
        (
            "ar-orders-manual-in-use",
            "op-old-0",
            {"aurora-restore:used-by:op-stg-running": "2026-03-01T01:00:00Z"},
        ),
        ("ar-orders-manual-unknown", "op-of-another-stack", {}),
        ("ar-orders-manual-old1", "op-old-1", {}),
        ("ar-orders-manual-old2", "op-old-2", {}),
        ("ar-orders-manual-old3", "op-old-3", {}),
        ("ar-orders-manual-old4", "op-old-4", {}),
    ]:
        managed_copy(clients, name, operation_id=operation_id, source_arn=source_arn, extra_tags=extra)
        made[name] = operation_id
    # A copy made for another target, and snapshots aurora-restore did not make, even with our source.
    managed_copy(
        clients,
        "ar-orders-manual-stg",
        operation_id="op-stg-old",
        source_arn=source_arn,
        target=f"{TARGET_REGION}/orders-stg",
    )
    finished(store, "op-stg-old")
    clients("rds", TARGET_REGION).copy_db_cluster_snapshot(
        SourceDBClusterSnapshotIdentifier=source_arn,
        TargetDBClusterSnapshotIdentifier="orders-dev-keep-forever",
        SourceRegion="us-east-1",
        Tags=[{"Key": "aurora-restore:target", "Value": f"{TARGET_REGION}/{TARGET_CLUSTER}"}],
    )
    managed_copy(clients, CURRENT, operation_id=OPERATION, source_arn=source_arn)
    finished(store, "op-old-0", "op-old-1", "op-old-2", "op-old-3", "op-old-4")
    running(store, "op-stg-running", OPERATION)
    return made


def test_retention_keeps_the_newest_and_deletes_only_what_is_safe_to_delete(
    registry: Any, history: Any, settings: Any, clients: Any, store: Any
) -> None:
    calls = record_calls(clients)
    # WHEN the archive step runs with the default retention (keep 3)
    out = archive(registry, copy_output(clients), settings=settings, clients=clients, store=store)
    # THEN the newest three copies for this target are kept, this operation's among them
    assert out["kept"] == [CURRENT, "ar-orders-manual-old4", "ar-orders-manual-old3"]
    # AND only older copies of finished operations are deleted
    assert sorted(out["deleted"]) == ["ar-orders-manual-old1", "ar-orders-manual-old2"]
    assert sorted(calls.params("DeleteDBClusterSnapshot"), key=str) == [
        {"DBClusterSnapshotIdentifier": "ar-orders-manual-old1"},
        {"DBClusterSnapshotIdentifier": "ar-orders-manual-old2"},
    ]
    # AND a copy a running operation reuses, and one made by an operation this stack does not know,
    # are skipped with the reason
    skipped = {s["identifier"]: s["reason"] for s in out["skipped"]}
    assert "op-stg-running" in skipped["ar-orders-manual-in-use"]
    assert "op-of-another-stack" in skipped["ar-orders-manual-unknown"]
    # AND another target's copy and a snapshot without the managed tag are untouched
    left = snapshots(clients)
    assert "ar-orders-manual-stg" in left
    assert "orders-dev-keep-forever" in left
    assert "ar-orders-manual-in-use" in left
    assert out["problems"] == []
    deleted_events = [e for e in store.audit_trail(OPERATION) if e["event"] == "snapshot_copy_deleted"]
    assert sorted(e["copy_id"] for e in deleted_events) == ["ar-orders-manual-old1", "ar-orders-manual-old2"]


def test_the_copy_is_tagged_with_where_and_when_it_was_restored(
    registry: Any, history: Any, settings: Any, clients: Any, store: Any
) -> None:
    clock = Clock()
    out = archive(
        registry, copy_output(clients), settings=settings, clients=clients, store=store, clock=clock
    )
    assert out["tagged"] is True
    tags = snapshots(clients)[CURRENT]
    assert tags["aurora-restore:restored-into"] == TARGET_CLUSTER
    assert tags["aurora-restore:restored-at"] == "2026-03-01T02:00:00Z"
    assert tags["aurora-restore:restored-by"] == OPERATION


def test_a_second_run_tags_and_deletes_nothing_more(
    registry: Any, history: Any, settings: Any, clients: Any, store: Any
) -> None:
    first = archive(registry, copy_output(clients), settings=settings, clients=clients, store=store)
    before = snapshots(clients)
    calls = record_calls(clients)
    clock = Clock()
    clock.advance(120)  # the retry comes later: the restored-at tag must not move
    second = archive(
        registry, copy_output(clients), settings=settings, clients=clients, store=store, clock=clock
    )
    assert calls.mutating("rds") == []
    assert snapshots(clients) == before
    assert second["deleted"] == []
    assert second["kept"] == first["kept"]
    assert second["tagged"] is False


def test_the_copy_just_used_is_never_deleted_even_when_not_among_the_newest(
    registry: Any, source_arn: str, settings: Any, clients: Any, store: Any
) -> None:
    managed_copy(clients, CURRENT, operation_id=OPERATION, source_arn=source_arn)
    managed_copy(clients, "ar-orders-manual-newer", operation_id="op-newer", source_arn=source_arn)
    finished(store, "op-newer")
    out = archive(
        registry,
        copy_output(clients),
        req=request(retention={"keep_copies": 1}),
        settings=settings,
        clients=clients,
        store=store,
    )
    assert out["kept"] == ["ar-orders-manual-newer"]
    assert out["deleted"] == []
    assert out["skipped"] == [{"identifier": CURRENT, "reason": "the copy this operation restored from"}]
    assert CURRENT in snapshots(clients)


def test_a_snapshot_used_as_it_is_is_not_tagged(
    registry: Any, settings: Any, clients: Any, store: Any
) -> None:
    source_cluster(clients, region=TARGET_REGION)
    manual_snapshot(clients, "orders-manual", region=TARGET_REGION, tags={"team": "orders"})
    as_is = {**copy_output(clients, "orders-manual"), "copied": False}
    calls = record_calls(clients)
    out = archive(registry, as_is, settings=settings, clients=clients, store=store)
    assert out["tagged"] is False
    assert calls.mutating("rds") == []
    assert snapshots(clients)["orders-manual"] == {"team": "orders"}


def test_a_reused_copy_gets_the_restore_tags_and_loses_our_used_by_mark(
    registry: Any, source_arn: str, settings: Any, clients: Any, store: Any
) -> None:
    # GIVEN operation B (for orders-stg) reused operation A's copy made for orders-dev
    managed_copy(
        clients,
        "ar-orders-manual-a",
        operation_id="op-a",
        source_arn=source_arn,
        extra_tags={"aurora-restore:used-by:op-b": "2026-03-01T01:00:00Z"},
    )
    finished(store, "op-a")
    req = request(operation_id="op-b", target_cluster_id="orders-stg", retention={"keep_copies": 1})
    copy = copy_output(clients, "ar-orders-manual-a", reused_from="op-a")
    # WHEN B archives
    out = archive(registry, copy, req=req, settings=settings, clients=clients, store=store)
    # THEN A's copy says where B restored it, B no longer marks it as in use, and B's retention
    # (for orders-stg) leaves A's copy (for orders-dev) alone
    tags = snapshots(clients)["ar-orders-manual-a"]
    assert tags["aurora-restore:restored-into"] == "orders-stg"
    assert "aurora-restore:used-by:op-b" not in tags
    assert tags["aurora-restore:operation-id"] == "op-a"
    assert out["deleted"] == []


# -- export ----------------------------------------------------------------------------------------


@pytest.fixture
def export_settings(clients: Any) -> Settings:
    key = target_key(clients, "alias/exports")
    return Settings(
        export_bucket="orders-exports",
        export_role_arn="arn:aws:iam::123456789012:role/rds-export",
        export_kms_key_id=key,
    )


def test_an_export_starts_once_when_a_bucket_is_configured(
    registry: Any, source_arn: str, export_settings: Settings, clients: Any, store: Any
) -> None:
    managed_copy(clients, CURRENT, operation_id=OPERATION, source_arn=source_arn)
    calls = record_calls(clients)
    out = archive(registry, copy_output(clients), settings=export_settings, clients=clients, store=store)
    [params] = calls.params("StartExportTask")
    assert params["SourceArn"] == copy_output(clients)["arn"]
    assert params["S3BucketName"] == "orders-exports"
    assert params["IamRoleArn"] == export_settings.export_role_arn
    assert params["KmsKeyId"] == export_settings.export_kms_key_id
    assert params["S3Prefix"] == f"aurora-restore/{TARGET_CLUSTER}/{OPERATION}"
    assert out["export"]["task_id"] == params["ExportTaskIdentifier"]
    assert out["export"]["bucket"] == "orders-exports"
    # A retry finds the task and starts no second one.
    again = archive(registry, copy_output(clients), settings=export_settings, clients=clients, store=store)
    assert calls.names().count("StartExportTask") == 1
    assert again["export"]["task_id"] == out["export"]["task_id"]


def test_an_export_that_cannot_start_is_reported_not_raised(
    registry: Any, source_arn: str, export_settings: Settings, clients: Any, store: Any
) -> None:
    managed_copy(clients, CURRENT, operation_id=OPERATION, source_arn=source_arn)
    inject(clients, "StartExportTask", lambda _: fail("IamRoleNotFoundFault", "role rds-export not found"))
    out = archive(registry, copy_output(clients), settings=export_settings, clients=clients, store=store)
    assert out["export"] is None
    assert len(out["problems"]) == 1
    assert "IamRoleNotFoundFault" in out["problems"][0]
    assert "archive_problem" in [e["event"] for e in store.audit_trail(OPERATION)]


def test_an_export_bucket_without_a_role_is_a_validation_error(
    registry: Any, source_arn: str, clients: Any, store: Any
) -> None:
    managed_copy(clients, CURRENT, operation_id=OPERATION, source_arn=source_arn)
    with pytest.raises(ValidationError) as caught:
        archive(
            registry, copy_output(clients), settings=Settings(export_bucket="b"), clients=clients, store=store
        )
    assert caught.value.field == "AURORA_RESTORE_EXPORT_ROLE_ARN"


def test_throttled_deletes_are_retried_by_the_state_machine(
    registry: Any, history: Any, settings: Any, clients: Any, store: Any
) -> None:
    inject(clients, "DeleteDBClusterSnapshot", lambda _: fail("Throttling", "Rate exceeded"))
    with pytest.raises(Retryable):
        archive(registry, copy_output(clients), settings=settings, clients=clients, store=store)
