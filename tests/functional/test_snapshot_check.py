"""snapshot_check under moto: the lock, resolving the snapshot, the target's safety, the KMS key."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest

from dispatcher.errors import ValidationError
from dispatcher.settings import Settings
from refresh.errors import SnapshotNotFound, TargetLocked, UnsafeTarget
from refresh.request import MANAGED_TAG
from refresh.target_lock import lock_holder, take_lock
from tests.conftest import STACK_PLACEMENT
from tests.functional.snapshot_world import (
    ACCOUNT,
    OPERATION,
    OTHER_ACCOUNT,
    SOURCE_REGION,
    T0,
    TARGET_CLUSTER,
    TARGET_REGION,
    automated_snapshot,
    context,
    inject,
    manual_snapshot,
    record_calls,
    request,
    respond,
    snapshot_description,
    source_cluster,
    target_key,
)


def check(registry: Any, req: Any, *, settings: Any, clients: Any, store: Any) -> dict[str, Any]:
    ctx = context({"step": "snapshot_check"}, req, settings=settings, clients=clients, store=store)
    result: dict[str, Any] = registry.get("snapshot_check")().run(ctx)
    return result


@pytest.fixture
def world(clients: Any) -> dict[str, Any]:
    """The source cluster (with its automated snapshot) and a manual snapshot, in us-east-1."""
    cluster = source_cluster(clients, tags={"team": "orders"})
    return {"cluster": cluster, "manual": manual_snapshot(clients), "automated": automated_snapshot(clients)}


# -- the lock --------------------------------------------------------------------------------------


def test_a_locked_target_is_refused_before_any_rds_call(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    # GIVEN another operation holds the target's lock
    take_lock(store, TARGET_REGION, TARGET_CLUSTER, "op-other")
    calls = record_calls(clients)
    # WHEN snapshot_check runs
    with pytest.raises(TargetLocked) as caught:
        check(registry, request(), settings=settings, clients=clients, store=store)
    # THEN it names the holder and never talked to RDS
    assert "op-other" in str(caught.value)
    assert calls.names("rds") == []
    assert lock_holder(store, TARGET_REGION, TARGET_CLUSTER)["lock_owner"] == "op-other"


def test_the_lock_is_taken_and_a_second_run_changes_nothing(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    calls = record_calls(clients)
    first = check(registry, request(), settings=settings, clients=clients, store=store)
    second = check(registry, request(), settings=settings, clients=clients, store=store)
    assert first == second
    assert lock_holder(store, TARGET_REGION, TARGET_CLUSTER)["lock_owner"] == OPERATION
    assert calls.mutating("rds") == []
    assert calls.mutating("kms") == []


# -- resolving the snapshot ------------------------------------------------------------------------


def test_a_manual_snapshot_by_identifier_records_its_facts(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    facts = check(registry, request(), settings=settings, clients=clients, store=store)
    assert facts["identifier"] == "orders-manual"
    assert facts["arn"] == f"arn:aws:rds:{SOURCE_REGION}:{ACCOUNT}:cluster-snapshot:orders-manual"
    assert facts["engine"] == "aurora-postgresql"
    assert facts["engine_version"] == "15.4"
    assert facts["encrypted"] is False
    assert facts["source_cluster_id"] == "orders"
    assert facts["source_region"] == SOURCE_REGION
    assert facts["snapshot_type"] == "manual"
    assert facts["account"] == ACCOUNT
    assert facts["shared"] is False
    assert isinstance(facts["size_gb"], int)
    assert facts["copy_reason"] == "cross-region"
    assert facts["target_kms_key_id"] is None
    assert facts["target"] == {
        "exists": False,
        "cluster_id": TARGET_CLUSTER,
        "managed": False,
        "deletion_protection": False,
        "status": None,
    }


def test_an_automated_snapshot_by_its_rds_name(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    name = world["automated"]["DBClusterSnapshotIdentifier"]
    assert name.startswith("rds:")
    facts = check(
        registry,
        request(snapshot_id=name, target_region=SOURCE_REGION),
        settings=settings,
        clients=clients,
        store=store,
    )
    assert facts["identifier"] == name
    assert facts["snapshot_type"] == "automated"
    # In-region, but automated: it will be copied so it outlives the source's retention.
    assert facts["copy_reason"] == "automated"


def test_a_manual_snapshot_in_the_target_region_needs_no_copy(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    facts = check(
        registry, request(target_region=SOURCE_REGION), settings=settings, clients=clients, store=store
    )
    assert facts["copy_reason"] is None


def test_a_snapshot_by_arn_of_this_account(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    arn = world["manual"]["DBClusterSnapshotArn"]
    facts = check(registry, request(snapshot_id=arn), settings=settings, clients=clients, store=store)
    assert facts["arn"] == arn
    assert facts["shared"] is False


def test_a_snapshot_shared_from_another_account_by_arn(
    registry: Any, settings: Any, clients: Any, store: Any
) -> None:
    # GIVEN another account's snapshot, shared with ours
    with mock.patch.dict(os.environ, {"MOTO_ACCOUNT_ID": OTHER_ACCOUNT}):
        source_cluster(clients, "billing")
        shared = manual_snapshot(clients, "billing-weekly", cluster_id="billing")
        clients("rds", SOURCE_REGION).modify_db_cluster_snapshot_attribute(
            DBClusterSnapshotIdentifier="billing-weekly", AttributeName="restore", ValuesToAdd=[ACCOUNT]
        )
    arn = shared["DBClusterSnapshotArn"]
    assert f":{OTHER_ACCOUNT}:" in arn
    # WHEN it is named by ARN for a refresh in its own region
    facts = check(
        registry,
        request(snapshot_id=arn, target_region=SOURCE_REGION),
        settings=settings,
        clients=clients,
        store=store,
    )
    # THEN it is found as shared, and will be copied into this account
    assert facts["shared"] is True
    assert facts["account"] == OTHER_ACCOUNT
    assert facts["copy_reason"] == "shared"


def test_an_arn_nobody_shared_is_not_found(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    arn = f"arn:aws:rds:{SOURCE_REGION}:{OTHER_ACCOUNT}:cluster-snapshot:orders-manual"
    with pytest.raises(SnapshotNotFound, match="neither this account's nor shared"):
        check(registry, request(snapshot_id=arn), settings=settings, clients=clients, store=store)


def test_latest_finds_the_newest_available_snapshot_across_all_pages(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    # GIVEN 250 snapshots over three pages; the newest available one is on the last page, a newer
    # one is still being created, and a newer still is a copy aurora-restore made
    entries = [
        snapshot_description(f"orders-{i:03d}", region=SOURCE_REGION, created=T0 + timedelta(hours=i))
        for i in range(250)
    ]
    entries[120]["SnapshotCreateTime"] = T0 + timedelta(days=30)  # newest available, middle of page 2
    entries[249]["Status"] = "creating"
    entries[249]["SnapshotCreateTime"] = T0 + timedelta(days=40)
    entries[248]["SnapshotCreateTime"] = T0 + timedelta(days=50)
    entries[248]["TagList"] = [{"Key": MANAGED_TAG, "Value": "true"}]
    markers: list[str | None] = []

    def page(params: dict[str, Any]) -> Any:
        assert params.get("DBClusterIdentifier") == "orders"
        start = int(params.get("Marker", 0))
        markers.append(params.get("Marker"))
        end = start + 100
        body: dict[str, Any] = {"DBClusterSnapshots": entries[start:end]}
        if end < len(entries):
            body["Marker"] = str(end)
        return respond(body)

    inject(clients, "DescribeDBClusterSnapshots", page)
    # WHEN the request names latest:orders
    facts = check(
        registry, request(snapshot_id="latest:orders"), settings=settings, clients=clients, store=store
    )
    # THEN every page was read and the newest available, non-copy snapshot was chosen
    assert markers == [None, "100", "200"]
    assert facts["identifier"] == "orders-120"


def test_latest_with_nothing_available_says_what_it_found(
    registry: Any, settings: Any, clients: Any, store: Any
) -> None:
    inject(
        clients,
        "DescribeDBClusterSnapshots",
        lambda _: respond(
            {"DBClusterSnapshots": [snapshot_description("orders-1", status="creating", percent=12)]}
        ),
    )
    with pytest.raises(SnapshotNotFound) as caught:
        check(registry, request(snapshot_id="latest:orders"), settings=settings, clients=clients, store=store)
    assert "none available" in str(caught.value)
    assert "orders-1 (creating)" in str(caught.value)


def test_latest_of_a_cluster_without_snapshots(
    registry: Any, settings: Any, clients: Any, store: Any
) -> None:
    with pytest.raises(SnapshotNotFound, match="has no available cluster snapshot; it has none at all"):
        check(
            registry, request(snapshot_id="latest:nothing"), settings=settings, clients=clients, store=store
        )


def test_a_missing_snapshot_is_not_found_and_names_it(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    with pytest.raises(SnapshotNotFound) as caught:
        check(registry, request(snapshot_id="orders-typo"), settings=settings, clients=clients, store=store)
    assert "orders-typo" in str(caught.value)
    assert SOURCE_REGION in str(caught.value)


def test_an_instance_snapshot_is_refused_as_the_wrong_kind(
    registry: Any, settings: Any, clients: Any, store: Any
) -> None:
    rds = clients("rds", SOURCE_REGION)
    rds.create_db_instance(
        DBInstanceIdentifier="legacy",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="postgres",
        MasterUserPassword="password123",
        AllocatedStorage=20,
    )
    rds.create_db_snapshot(DBInstanceIdentifier="legacy", DBSnapshotIdentifier="legacy-snap")
    with pytest.raises(ValidationError) as caught:
        check(registry, request(snapshot_id="legacy-snap"), settings=settings, clients=clients, store=store)
    assert caught.value.field == "snapshot_id"
    assert "DB instance snapshot" in str(caught.value)


def test_a_snapshot_still_being_created_is_not_usable(
    registry: Any, settings: Any, clients: Any, store: Any
) -> None:
    inject(
        clients,
        "DescribeDBClusterSnapshots",
        lambda _: respond(
            {"DBClusterSnapshots": [snapshot_description("orders-manual", status="creating", percent=40)]}
        ),
    )
    with pytest.raises(SnapshotNotFound) as caught:
        check(registry, request(), settings=settings, clients=clients, store=store)
    assert "is creating (40 %), not available" in str(caught.value)


def test_a_snapshot_of_another_engine_is_refused(
    registry: Any, settings: Any, clients: Any, store: Any
) -> None:
    source_cluster(clients, "shop", engine="aurora-mysql")
    manual_snapshot(clients, "shop-manual", cluster_id="shop")
    with pytest.raises(ValidationError) as caught:
        check(registry, request(snapshot_id="shop-manual"), settings=settings, clients=clients, store=store)
    assert caught.value.field == "snapshot_id"
    assert "aurora-mysql" in str(caught.value)


# -- the target ------------------------------------------------------------------------------------


def test_an_existing_managed_target_is_recorded(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    source_cluster(clients, TARGET_CLUSTER, region=TARGET_REGION, tags={MANAGED_TAG: "true"})
    target = check(registry, request(), settings=settings, clients=clients, store=store)["target"]
    assert target["exists"] is True
    assert target["managed"] is True
    assert target["deletion_protection"] is False
    assert target["disable_deletion_protection"] is False
    assert target["status"] == "available"


def test_an_unmanaged_target_is_refused_before_anything_is_copied(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    source_cluster(clients, TARGET_CLUSTER, region=TARGET_REGION)
    calls = record_calls(clients)
    with pytest.raises(UnsafeTarget) as caught:
        check(registry, request(), settings=settings, clients=clients, store=store)
    assert caught.value.details["rule"] == "managed-or-allowed"
    assert TARGET_CLUSTER in str(caught.value)
    assert calls.mutating("rds") == []


def test_an_unmanaged_target_matching_the_allowed_pattern_is_accepted(
    registry: Any, world: Any, clients: Any, store: Any
) -> None:
    source_cluster(clients, TARGET_CLUSTER, region=TARGET_REGION)
    target = check(
        registry,
        request(),
        settings=Settings(allowed_target_pattern=r"orders-(dev|stg)(-instance-\d+)?"),
        clients=clients,
        store=store,
    )["target"]
    assert target["exists"] is True
    assert target["managed"] is False


def test_a_protected_target_is_refused_unless_the_request_allows_turning_protection_off(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    source_cluster(
        clients, TARGET_CLUSTER, region=TARGET_REGION, tags={MANAGED_TAG: "true"}, deletion_protection=True
    )
    with pytest.raises(UnsafeTarget) as caught:
        check(registry, request(), settings=settings, clients=clients, store=store)
    assert caught.value.details["rule"] == "deletion-protection"
    target = check(
        registry,
        request(allow_disable_deletion_protection=True),
        settings=settings,
        clients=clients,
        store=store,
    )["target"]
    assert target["deletion_protection"] is True
    assert target["disable_deletion_protection"] is True
    # Nothing is turned off yet: that happens right before the delete, audited.
    cluster = clients("rds", TARGET_REGION).describe_db_clusters(DBClusterIdentifier=TARGET_CLUSTER)[
        "DBClusters"
    ][0]
    assert cluster["DeletionProtection"] is True


def test_the_source_cluster_is_never_a_target(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    # A snapshot named by id does not tell the request validation its cluster: this step catches it.
    with pytest.raises(UnsafeTarget) as caught:
        check(
            registry,
            request(
                target_region=SOURCE_REGION,
                target_cluster_id="orders",
                allow_disable_deletion_protection=True,
            ),
            settings=Settings(allowed_target_pattern=".*"),
            clients=clients,
            store=store,
        )
    assert caught.value.details["rule"] == "never-the-source"


def test_a_target_of_another_engine_is_refused(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    source_cluster(
        clients, TARGET_CLUSTER, region=TARGET_REGION, engine="aurora-mysql", tags={MANAGED_TAG: "true"}
    )
    with pytest.raises(ValidationError) as caught:
        check(registry, request(), settings=settings, clients=clients, store=store)
    assert caught.value.field == "target_cluster_id"
    assert "aurora-mysql" in str(caught.value)


# -- the KMS key -----------------------------------------------------------------------------------


@pytest.fixture
def encrypted_world(clients: Any) -> dict[str, Any]:
    source_cluster(clients, encrypted=True)
    return {"manual": manual_snapshot(clients)}


def test_an_encrypted_cross_region_copy_without_a_key_is_refused_naming_kms_key_id(
    registry: Any, encrypted_world: Any, settings: Any, clients: Any, store: Any
) -> None:
    calls = record_calls(clients)
    with pytest.raises(ValidationError) as caught:
        check(registry, request(), settings=settings, clients=clients, store=store)
    assert caught.value.field == "kms_key_id"
    assert "encrypted" in str(caught.value)
    assert TARGET_REGION in str(caught.value)
    assert calls.mutating("rds") == []


def test_the_stack_default_key_is_used_and_verified(
    registry: Any, encrypted_world: Any, clients: Any, store: Any
) -> None:
    arn = target_key(clients)
    facts = check(
        registry,
        request(),
        settings=Settings(**STACK_PLACEMENT, default_kms_key_id="alias/orders-dev"),
        clients=clients,
        store=store,
    )
    assert facts["encrypted"] is True
    assert facts["target_kms_key_id"] == arn


def test_the_request_key_wins_over_the_default(
    registry: Any, encrypted_world: Any, clients: Any, store: Any
) -> None:
    target_key(clients, "alias/default")
    chosen = target_key(clients, "alias/chosen")
    facts = check(
        registry,
        request(kms_key_id="alias/chosen"),
        settings=Settings(**STACK_PLACEMENT, default_kms_key_id="alias/default"),
        clients=clients,
        store=store,
    )
    assert facts["target_kms_key_id"] == chosen


def test_a_key_that_does_not_exist_in_the_target_region_is_refused(
    registry: Any, encrypted_world: Any, settings: Any, clients: Any, store: Any
) -> None:
    target_key(clients, "alias/orders-dev", region=SOURCE_REGION)  # the right name, the wrong region
    with pytest.raises(ValidationError) as caught:
        check(
            registry, request(kms_key_id="alias/orders-dev"), settings=settings, clients=clients, store=store
        )
    assert caught.value.field == "kms_key_id"
    assert "does not exist in us-west-2" in str(caught.value)


def test_a_default_key_arn_of_another_region_is_refused(
    registry: Any, encrypted_world: Any, clients: Any, store: Any
) -> None:
    arn = target_key(clients, region=SOURCE_REGION)
    with pytest.raises(ValidationError) as caught:
        check(registry, request(), settings=Settings(**STACK_PLACEMENT, default_kms_key_id=arn), clients=clients, store=store)
    assert "DEFAULT_KMS_KEY_ID" in str(caught.value)
    assert "must be a key in the target region us-west-2" in str(caught.value)


def test_a_disabled_key_is_refused(
    registry: Any, encrypted_world: Any, settings: Any, clients: Any, store: Any
) -> None:
    arn = target_key(clients)
    clients("kms", TARGET_REGION).disable_key(KeyId=arn.split("/")[-1])
    with pytest.raises(ValidationError, match="is Disabled in us-west-2; it must be Enabled"):
        check(registry, request(kms_key_id=arn), settings=settings, clients=clients, store=store)


def test_an_unencrypted_snapshot_needs_no_key(registry: Any, world: Any, clients: Any, store: Any) -> None:
    calls = record_calls(clients)
    facts = check(
        registry,
        request(),
        settings=Settings(**STACK_PLACEMENT, default_kms_key_id="alias/none-here"),
        clients=clients,
        store=store,
    )
    assert facts["target_kms_key_id"] is None
    assert calls.names("kms") == []


def test_export_settings_without_role_are_refused_before_anything_happens(
    registry: Any, world: Any, clients: Any, store: Any
) -> None:
    with pytest.raises(ValidationError) as caught:
        check(
            registry,
            request(),
            settings=Settings(export_bucket="exports", export_kms_key_id="alias/x"),
            clients=clients,
            store=store,
        )
    assert caught.value.field == "AURORA_RESTORE_EXPORT_ROLE_ARN"
