"""SnapshotCheck for clone:/pitr: under moto (with the rehearsal's RDS corrections): what RDS would
refuse is refused before any change, and the facts the restore needs are recorded."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dispatcher.errors import ValidationError
from refresh.errors import SnapshotNotFound
from refresh.sources import MAX_CLONES_PER_SOURCE
from tests.functional.replace_world import faithful_rds, make_cluster
from tests.functional.snapshot_world import TARGET_CLUSTER, TARGET_REGION, context, record_calls, request

__all__ = ["faithful_rds"]
SOURCE = "orders-prod"


def check(registry: Any, req: Any, *, settings: Any, clients: Any, store: Any) -> dict[str, Any]:
    ctx = context({"step": "snapshot_check"}, req, settings=settings, clients=clients, store=store)
    result: dict[str, Any] = registry.get("snapshot_check")().run(ctx)
    return result


def live(**fields: Any) -> Any:
    """A request from the live cluster ``orders-prod`` in the target's region."""
    return request(source_region=TARGET_REGION, **fields)


@pytest.fixture
def world(faithful_rds: None, clients: Any) -> None:
    """Production (one instance, unmanaged) and the managed target, in one region."""
    make_cluster(clients, SOURCE, tags=[{"Key": "environment", "Value": "production"}])
    make_cluster(clients, TARGET_CLUSTER)


def test_a_clone_records_what_the_restore_needs_and_changes_nothing(
    registry: Any, world: None, settings: Any, clients: Any, store: Any
) -> None:
    calls = record_calls(clients)
    facts = check(registry, live(snapshot_id=f"clone:{SOURCE}"), settings=settings, clients=clients, store=store)
    assert facts["source_kind"] == "clone" and facts["restore_type"] == "copy-on-write"
    assert facts["source_cluster_id"] == SOURCE and facts["restore_to_time"] is None
    assert facts["copy_reason"] is None and facts["target"]["exists"] is True
    assert facts["restorable_window"]["earliest"] and facts["restorable_window"]["latest"]
    assert calls.mutating("rds") == [] and calls.mutating("kms") == []


def test_a_missing_source_cluster_is_not_found(
    registry: Any, world: None, settings: Any, clients: Any, store: Any
) -> None:
    with pytest.raises(SnapshotNotFound, match="no cluster nope"):
        check(registry, live(snapshot_id="clone:nope"), settings=settings, clients=clients, store=store)


def test_a_stopped_source_is_refused_before_any_change(
    registry: Any, world: None, settings: Any, clients: Any, store: Any
) -> None:
    clients("rds", TARGET_REGION).stop_db_cluster(DBClusterIdentifier=SOURCE)
    calls = record_calls(clients)
    with pytest.raises(ValidationError) as caught:
        check(registry, live(snapshot_id=f"pitr:{SOURCE}@latest"), settings=settings, clients=clients, store=store)
    assert caught.value.field == "snapshot_id" and "stopped" in str(caught.value)
    assert calls.mutating("rds") == []


def test_the_sixteenth_clone_of_one_source_is_refused(
    registry: Any, world: None, settings: Any, clients: Any, store: Any
) -> None:
    # GIVEN 15 copy-on-write clones of production already (RDS puts them in its clone group)
    rds = clients("rds", TARGET_REGION)
    for index in range(MAX_CLONES_PER_SOURCE):
        rds.restore_db_cluster_to_point_in_time(
            DBClusterIdentifier=f"clone-{index}",
            SourceDBClusterIdentifier=SOURCE,
            RestoreType="copy-on-write",
            UseLatestRestorableTime=True,
        )
    calls = record_calls(clients)
    # WHEN another clone is asked for
    with pytest.raises(ValidationError) as caught:
        check(registry, live(snapshot_id=f"clone:{SOURCE}"), settings=settings, clients=clients, store=store)
    # THEN it is refused, naming the limit and the way out, with nothing changed
    assert "already has 15 copy-on-write clones" in str(caught.value) and f"pitr:{SOURCE}@latest" in str(caught.value)
    assert calls.mutating("rds") == []
    # AND a point-in-time restore of the same source is not counted against it
    assert check(registry, live(snapshot_id=f"pitr:{SOURCE}@latest"), settings=settings, clients=clients, store=store)


def test_a_point_in_time_outside_the_window_is_refused(
    registry: Any, world: None, settings: Any, clients: Any, store: Any
) -> None:
    when = (datetime.now(timezone.utc) - timedelta(days=3)).replace(microsecond=0).isoformat()
    with pytest.raises(ValidationError) as caught:
        check(registry, live(snapshot_id=f"pitr:{SOURCE}@{when}"), settings=settings, clients=clients, store=store)
    assert "restorable window" in str(caught.value) and when in str(caught.value)


def test_an_engine_version_other_than_the_sources_is_refused(
    registry: Any, world: None, settings: Any, clients: Any, store: Any
) -> None:
    with pytest.raises(ValidationError) as caught:
        check(
            registry,
            live(snapshot_id=f"clone:{SOURCE}", engine_version="16.1"),
            settings=settings,
            clients=clients,
            store=store,
        )
    assert caught.value.field == "engine_version" and "15.4" in str(caught.value)


def test_a_key_for_a_point_in_time_restore_of_an_unencrypted_source_is_refused(
    registry: Any, world: None, settings: Any, clients: Any, store: Any
) -> None:
    # GIVEN production is not encrypted, and the request names a key
    calls = record_calls(clients)
    req = live(snapshot_id=f"pitr:{SOURCE}@latest", kms_key_id="alias/orders-dev")
    # THEN it is refused by field, before any change (RDS would reject the restore)
    with pytest.raises(ValidationError) as caught:
        check(registry, req, settings=settings, clients=clients, store=store)
    assert caught.value.field == "kms_key_id" and "not encrypted" in str(caught.value)
    assert calls.mutating("rds") == []


# -- moto corrected to RDS's documented RestoreDBClusterToPointInTime ---------------------------------


def test_rds_refuses_a_taken_name_a_time_outside_the_window_and_another_key_for_a_clone(
    world: None, clients: Any
) -> None:
    rds = clients("rds", TARGET_REGION)
    source = rds.describe_db_clusters(DBClusterIdentifier=SOURCE)["DBClusters"][0]
    taken = rds.exceptions.DBClusterAlreadyExistsFault
    with pytest.raises(taken):
        rds.restore_db_cluster_to_point_in_time(
            DBClusterIdentifier=TARGET_CLUSTER, SourceDBClusterIdentifier=SOURCE, UseLatestRestorableTime=True
        )
    with pytest.raises(rds.exceptions.InvalidRestoreFault):
        rds.restore_db_cluster_to_point_in_time(
            DBClusterIdentifier="too-early",
            SourceDBClusterIdentifier=SOURCE,
            RestoreToTime=source["EarliestRestorableTime"] - timedelta(seconds=1),
        )
    with pytest.raises(rds.exceptions.ClientError, match="InvalidParameterCombination"):
        rds.restore_db_cluster_to_point_in_time(
            DBClusterIdentifier="other-key",
            SourceDBClusterIdentifier=SOURCE,
            RestoreType="copy-on-write",
            UseLatestRestorableTime=True,
            KmsKeyId="arn:aws:kms:us-west-2:123456789012:key/another",
        )
    with pytest.raises(rds.exceptions.ClientError, match="unencrypted source"):
        rds.restore_db_cluster_to_point_in_time(
            DBClusterIdentifier="key-for-plain",
            SourceDBClusterIdentifier=SOURCE,
            UseLatestRestorableTime=True,
            KmsKeyId="arn:aws:kms:us-west-2:123456789012:key/another",
        )
    clone = rds.restore_db_cluster_to_point_in_time(
        DBClusterIdentifier="a-clone", SourceDBClusterIdentifier=SOURCE, RestoreType="copy-on-write",
        UseLatestRestorableTime=True,
    )["DBCluster"]
    described = {c["DBClusterIdentifier"]: c for c in rds.describe_db_clusters()["DBClusters"]}
    assert clone["CloneGroupId"] and described[SOURCE]["CloneGroupId"] == clone["CloneGroupId"]
    assert "too-early" not in described and "other-key" not in described
