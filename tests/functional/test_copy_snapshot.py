"""copy_snapshot under moto: when it copies, how, adopting its own copy, reusing another's."""

from __future__ import annotations

import os
from typing import Any
from unittest import mock

import pytest

from dispatcher.errors import Retryable
from dispatcher.settings import Settings
from refresh.errors import CopyFailed
from refresh.request import MANAGED_TAG, OPERATION_TAG
from steps.lib.names import copy_snapshot_id
from tests.conftest import STACK_PLACEMENT
from tests.functional.snapshot_world import (
    ACCOUNT,
    OPERATION,
    OTHER_ACCOUNT,
    SOURCE_REGION,
    TARGET_CLUSTER,
    TARGET_REGION,
    Clock,
    automated_snapshot,
    context,
    fail,
    inject,
    managed_copy,
    manual_snapshot,
    record_calls,
    request,
    respond,
    snapshot_description,
    snapshots,
    source_cluster,
    target_key,
)

COPY_ID = copy_snapshot_id("orders-manual", OPERATION)


def run_step(registry: Any, name: str, req: Any, event: dict[str, Any], **kw: Any) -> dict[str, Any]:
    ctx = context({"step": name, **event}, req, **kw)
    result: dict[str, Any] = registry.get(name)().run(ctx)
    return result


def check_then_copy(registry: Any, req: Any, *, settings: Any, clients: Any, store: Any) -> dict[str, Any]:
    """snapshot_check, then copy_snapshot with its output, as the state machine runs them."""
    kw = {"settings": settings, "clients": clients, "store": store}
    facts = run_step(registry, "snapshot_check", req, {}, **kw)
    return run_step(registry, "copy_snapshot", req, {"snapshot": facts}, **kw)


@pytest.fixture
def world(clients: Any) -> dict[str, Any]:
    source_cluster(clients, tags={"team": "orders", "cost-centre": "42"})
    return {"manual": manual_snapshot(clients, tags={"team": "orders", "cost-centre": "42"})}


# -- copying across regions ------------------------------------------------------------------------


def test_a_cross_region_copy_is_made_in_the_target_region_tagged_as_ours(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    calls = record_calls(clients)
    # WHEN the steps run for a cross-region refresh of an unencrypted snapshot
    copy = check_then_copy(registry, request(), settings=settings, clients=clients, store=store)
    # THEN one copy was started, in the target region, from the source's ARN, with SourceRegion
    [params] = calls.params("CopyDBClusterSnapshot")
    assert params["SourceDBClusterSnapshotIdentifier"] == world["manual"]["DBClusterSnapshotArn"]
    assert params["TargetDBClusterSnapshotIdentifier"] == COPY_ID
    assert params["SourceRegion"] == SOURCE_REGION
    assert "KmsKeyId" not in params  # an unencrypted snapshot copied with a key is an error
    assert params["CopyTags"] is True
    # AND the copy carries our tags and the source's own
    tags = snapshots(clients)[COPY_ID]
    assert tags[MANAGED_TAG] == "true"
    assert tags[OPERATION_TAG] == OPERATION
    assert tags["aurora-restore:source-snapshot"] == world["manual"]["DBClusterSnapshotArn"]
    assert tags["aurora-restore:target"] == f"{TARGET_REGION}/{TARGET_CLUSTER}"
    assert tags["aurora-restore:kms-key"] == "none"
    assert tags["team"] == "orders"
    assert tags["cost-centre"] == "42"
    # AND the output says what the restore will use and how to wait for it
    assert copy["identifier"] == COPY_ID
    assert copy["arn"] == f"arn:aws:rds:{TARGET_REGION}:{ACCOUNT}:cluster-snapshot:{COPY_ID}"
    assert copy["region"] == TARGET_REGION
    assert copy["copied"] is True
    assert copy["reason"] == "cross-region"
    assert copy["reused_from"] is None
    assert copy["status"] == "available"  # moto copies at once
    assert copy["complete"] is True
    assert copy["next_poll_seconds"] == 0
    assert copy["polls"] == 1
    assert copy["started_at"]
    trail = [e["event"] for e in store.audit_trail(OPERATION)]
    assert "snapshot_copy_started" in trail


def test_an_encrypted_snapshot_is_copied_with_the_target_region_key_and_a_presigned_url(
    registry: Any, clients: Any, store: Any
) -> None:
    source_cluster(clients, encrypted=True)
    manual_snapshot(clients)
    key = target_key(clients)
    wire: list[dict[str, Any]] = []
    clients.add_hook(
        "before-call.rds.CopyDBClusterSnapshot", lambda params, **_: wire.append(dict(params["body"]))
    )
    copy = check_then_copy(
        registry, request(kms_key_id="alias/orders-dev"), settings=Settings(**STACK_PLACEMENT), clients=clients, store=store
    )
    # boto3 turned SourceRegion into the pre-signed URL RDS needs for encrypted cross-region copies.
    assert wire[0]["KmsKeyId"] == key
    assert "SourceRegion" not in wire[0]
    assert "PreSignedUrl" in wire[0]
    assert copy["kms_key_id"] == key
    assert snapshots(clients)[COPY_ID]["aurora-restore:kms-key"] == key


def test_a_second_run_adopts_the_copy_and_makes_nothing_more(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    kw = {"settings": settings, "clients": clients, "store": store}
    facts = run_step(registry, "snapshot_check", request(), {}, **kw)
    first = run_step(registry, "copy_snapshot", request(), {"snapshot": facts}, **kw)
    before = snapshots(clients)
    calls = record_calls(clients)
    second = run_step(registry, "copy_snapshot", request(), {"snapshot": facts}, **kw)
    assert calls.mutating("rds") == []
    assert snapshots(clients) == before
    assert {k: v for k, v in second.items()} == first


def test_a_copy_reported_existing_by_a_racing_attempt_is_adopted_when_it_is_ours(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    # GIVEN our copy exists, but the first look by name misses it (an attempt racing this one)
    managed_copy(clients, COPY_ID, operation_id=OPERATION, source_arn=world["manual"]["DBClusterSnapshotArn"])
    hidden = {"done": False}

    def miss_once(params: dict[str, Any]) -> Any:
        if params.get("DBClusterSnapshotIdentifier") == COPY_ID and not hidden["done"]:
            hidden["done"] = True
            return fail("DBClusterSnapshotNotFoundFault")
        return None

    inject(clients, "DescribeDBClusterSnapshots", miss_once)
    calls = record_calls(clients)
    # WHEN the step copies and RDS answers DBClusterSnapshotAlreadyExistsFault
    copy = check_then_copy(registry, request(), settings=settings, clients=clients, store=store)
    # THEN it adopts the copy its tags say is ours
    assert calls.names().count("CopyDBClusterSnapshot") == 1
    assert copy["identifier"] == COPY_ID
    assert copy["reused_from"] is None
    assert len([s for s in snapshots(clients) if s == COPY_ID]) == 1


@pytest.mark.parametrize(
    ("owner_tags", "expected"),
    [
        ({MANAGED_TAG: "true", OPERATION_TAG: "op-somebody-else"}, "belongs to operation op-somebody-else"),
        ({"team": "orders"}, "belongs to someone else (not aurora-restore)"),
    ],
)
def test_a_snapshot_under_our_copy_name_that_is_not_ours_is_refused_and_left_alone(
    registry: Any,
    world: Any,
    settings: Any,
    clients: Any,
    store: Any,
    owner_tags: dict[str, str],
    expected: str,
) -> None:
    clients("rds", TARGET_REGION).copy_db_cluster_snapshot(
        SourceDBClusterSnapshotIdentifier=world["manual"]["DBClusterSnapshotArn"],
        TargetDBClusterSnapshotIdentifier=COPY_ID,
        SourceRegion=SOURCE_REGION,
        Tags=[{"Key": k, "Value": v} for k, v in owner_tags.items()],
    )
    before = snapshots(clients)
    with pytest.raises(CopyFailed) as caught:
        check_then_copy(registry, request(), settings=settings, clients=clients, store=store)
    assert expected in str(caught.value)
    assert COPY_ID in str(caught.value)
    assert snapshots(clients) == before


def test_an_already_exists_fault_for_another_operations_copy_is_refused(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    # GIVEN a racing look by name misses a copy under our name that another operation owns
    clients("rds", TARGET_REGION).copy_db_cluster_snapshot(
        SourceDBClusterSnapshotIdentifier=world["manual"]["DBClusterSnapshotArn"],
        TargetDBClusterSnapshotIdentifier=COPY_ID,
        SourceRegion=SOURCE_REGION,
        Tags=[{"Key": MANAGED_TAG, "Value": "true"}, {"Key": OPERATION_TAG, "Value": "op-racer"}],
    )
    misses = iter([True])
    inject(
        clients,
        "DescribeDBClusterSnapshots",
        lambda params: (
            fail("DBClusterSnapshotNotFoundFault")
            if params.get("DBClusterSnapshotIdentifier") == COPY_ID and next(misses, False)
            else None
        ),
    )
    calls = record_calls(clients)
    before = snapshots(clients)
    # WHEN the copy call answers DBClusterSnapshotAlreadyExistsFault
    with pytest.raises(CopyFailed) as caught:
        check_then_copy(registry, request(), settings=settings, clients=clients, store=store)
    # THEN the step says whose it is and changes nothing
    assert calls.names().count("CopyDBClusterSnapshot") == 1
    assert "belongs to operation op-racer" in str(caught.value)
    assert snapshots(clients) == before


# -- in-region -------------------------------------------------------------------------------------


def test_a_manual_snapshot_in_the_target_region_is_used_as_it_is(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    calls = record_calls(clients)
    copy = check_then_copy(
        registry, request(target_region=SOURCE_REGION), settings=settings, clients=clients, store=store
    )
    assert calls.mutating("rds") == []
    assert copy["copied"] is False
    assert copy["identifier"] == "orders-manual"
    assert copy["arn"] == world["manual"]["DBClusterSnapshotArn"]
    assert copy["complete"] is True
    assert copy["next_poll_seconds"] == 0


def test_an_automated_snapshot_is_copied_in_region_by_identifier_without_source_region(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    name = automated_snapshot(clients)["DBClusterSnapshotIdentifier"]
    calls = record_calls(clients)
    copy = check_then_copy(
        registry,
        request(snapshot_id=name, target_region=SOURCE_REGION),
        settings=settings,
        clients=clients,
        store=store,
    )
    [params] = calls.params("CopyDBClusterSnapshot")
    assert params["SourceDBClusterSnapshotIdentifier"] == name
    assert "SourceRegion" not in params
    assert copy["reason"] == "automated"
    assert ":" not in copy["identifier"]
    assert copy["identifier"] in snapshots(clients, SOURCE_REGION)


def test_a_snapshot_shared_from_another_account_is_copied_in_region_by_arn_with_our_key(
    registry: Any, settings: Any, clients: Any, store: Any
) -> None:
    # GIVEN an encrypted snapshot shared from another account, and our key in that region
    with mock.patch.dict(os.environ, {"MOTO_ACCOUNT_ID": OTHER_ACCOUNT}):
        source_cluster(clients, "billing", encrypted=True)
        shared = manual_snapshot(clients, "billing-weekly", cluster_id="billing")
        clients("rds", SOURCE_REGION).modify_db_cluster_snapshot_attribute(
            DBClusterSnapshotIdentifier="billing-weekly", AttributeName="restore", ValuesToAdd=[ACCOUNT]
        )
    key = target_key(clients, region=SOURCE_REGION)
    copy_id = copy_snapshot_id("billing-weekly", OPERATION)
    # moto cannot copy another account's snapshot: answer as RDS would, having started the copy
    inject(
        clients,
        "CopyDBClusterSnapshot",
        lambda params: respond(
            {
                "DBClusterSnapshot": snapshot_description(
                    copy_id, status="copying", percent=0, region=SOURCE_REGION, encrypted=True
                )
            }
        ),
    )
    calls = record_calls(clients)
    # WHEN the refresh runs in the snapshot's own region
    copy = check_then_copy(
        registry,
        request(snapshot_id=shared["DBClusterSnapshotArn"], target_region=SOURCE_REGION, kms_key_id=key),
        settings=settings,
        clients=clients,
        store=store,
    )
    # THEN it copied by ARN, in-region, with our key, and waits for it
    [params] = calls.params("CopyDBClusterSnapshot")
    assert params["SourceDBClusterSnapshotIdentifier"] == shared["DBClusterSnapshotArn"]
    assert params["KmsKeyId"] == key
    assert "SourceRegion" not in params
    assert copy["reason"] == "shared"
    assert copy["complete"] is False
    assert copy["status"] == "copying"
    assert copy["next_poll_seconds"] == settings.poll_min_seconds


# -- a copy in progress, throttling, refusals ------------------------------------------------------


def test_a_copy_that_starts_queued_reports_progress_and_the_first_wait(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    inject(
        clients,
        "CopyDBClusterSnapshot",
        lambda params: respond(
            {
                "DBClusterSnapshot": snapshot_description(
                    params["TargetDBClusterSnapshotIdentifier"], status="copying", percent=0
                )
            }
        ),
    )
    copy = check_then_copy(registry, request(), settings=settings, clients=clients, store=store)
    assert copy["status"] == "copying"
    assert copy["percent_progress"] == 0
    assert copy["complete"] is False
    assert copy["next_poll_seconds"] == settings.poll_min_seconds


def test_throttling_that_outlasts_botocore_fails_retryably_and_the_retry_copies_once(
    dispatcher: Any, world: Any, clients: Any, store: Any
) -> None:
    # GIVEN RDS throttles the copy (botocore's retries are spent)
    request_data = dispatcher.handle({"step": "validate_request", "input": request().to_dict()})
    facts = dispatcher.handle({"step": "snapshot_check", "request": request_data})
    throttled = {"on": True}
    inject(
        clients,
        "CopyDBClusterSnapshot",
        lambda _: fail("Throttling", "Rate exceeded") if throttled["on"] else None,
    )
    # WHEN the step runs
    with pytest.raises(Retryable) as caught:
        dispatcher.handle({"step": "copy_snapshot", "request": request_data, "snapshot": facts})
    # THEN the state machine sees a Retryable error and nothing was copied
    assert "Rate exceeded" in str(caught.value)
    assert COPY_ID not in snapshots(clients)
    # AND the retry copies exactly once
    throttled["on"] = False
    copy = dispatcher.handle({"step": "copy_snapshot", "request": request_data, "snapshot": facts})
    assert copy["identifier"] == COPY_ID
    assert [s for s in snapshots(clients) if s.startswith("ar-")] == [COPY_ID]


def test_a_key_rds_cannot_use_fails_the_copy_naming_the_key_and_permissions(
    registry: Any, clients: Any, store: Any
) -> None:
    source_cluster(clients, encrypted=True)
    manual_snapshot(clients)
    key = target_key(clients)
    inject(clients, "CopyDBClusterSnapshot", lambda _: fail("KMSKeyNotAccessibleFault", "key not accessible"))
    with pytest.raises(CopyFailed) as caught:
        check_then_copy(registry, request(kms_key_id=key), settings=Settings(**STACK_PLACEMENT), clients=clients, store=store)
    assert key in str(caught.value)
    assert "kms:CreateGrant" in str(caught.value)


# -- reuse across operations (fan-out) --------------------------------------------------------------


def test_another_operation_reuses_a_copy_of_the_same_source_instead_of_copying_again(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    # GIVEN operation A copied the snapshot for orders-dev
    first = check_then_copy(registry, request(), settings=settings, clients=clients, store=store)
    calls = record_calls(clients)
    # WHEN operation B refreshes another target from the same snapshot into the same region
    other = request(operation_id="op-copy-2", target_cluster_id="orders-stg")
    second = check_then_copy(registry, other, settings=settings, clients=clients, store=store)
    # THEN B reuses A's copy: no second copy, and the copy is marked as used by B
    assert "CopyDBClusterSnapshot" not in calls.names()
    assert second["identifier"] == first["identifier"]
    assert second["reused_from"] == OPERATION
    assert second["copied"] is True
    tags = snapshots(clients)[first["identifier"]]
    assert "aurora-restore:used-by:op-copy-2" in tags
    assert tags[OPERATION_TAG] == OPERATION  # still A's
    assert "snapshot_copy_reused" in [e["event"] for e in store.audit_trail("op-copy-2")]
    # AND B's retry, later, keeps the same choice and tags nothing new
    before = snapshots(clients)
    calls = record_calls(clients)
    later = Clock()
    later.advance(300)
    again = run_step(
        registry,
        "copy_snapshot",
        other,
        {
            "snapshot": run_step(
                registry, "snapshot_check", other, {}, settings=settings, clients=clients, store=store
            )
        },
        settings=settings,
        clients=clients,
        store=store,
        clock=later,
    )
    assert again["identifier"] == second["identifier"]
    assert calls.mutating() == []
    assert snapshots(clients) == before


def test_a_copy_with_another_key_is_not_reused(registry: Any, clients: Any, store: Any) -> None:
    source_cluster(clients, encrypted=True)
    manual_snapshot(clients)
    target_key(clients, "alias/one")
    target_key(clients, "alias/two")
    first = check_then_copy(
        registry, request(kms_key_id="alias/one"), settings=Settings(**STACK_PLACEMENT), clients=clients, store=store
    )
    second = check_then_copy(
        registry,
        request(operation_id="op-copy-2", target_cluster_id="orders-stg", kms_key_id="alias/two"),
        settings=Settings(**STACK_PLACEMENT),
        clients=clients,
        store=store,
    )
    assert second["reused_from"] is None
    assert second["identifier"] != first["identifier"]


def test_a_copy_still_in_progress_for_another_operation_is_reused_and_waited_for(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    # GIVEN operation A's copy is at 40 % (moto's copies are done at once: the listing says otherwise)
    source_arn = world["manual"]["DBClusterSnapshotArn"]
    a_copy = managed_copy(clients, "ar-orders-manual-aaaa", operation_id="op-a", source_arn=source_arn)

    def in_progress(params: dict[str, Any]) -> Any:
        wanted = params.get("DBClusterSnapshotIdentifier")
        if params.get("SnapshotType") == "manual" or wanted == a_copy["DBClusterSnapshotIdentifier"]:
            tags = snapshots(clients)[a_copy["DBClusterSnapshotIdentifier"]]
            entry = snapshot_description(
                a_copy["DBClusterSnapshotIdentifier"], status="copying", percent=40, tags=tags
            )
            return respond({"DBClusterSnapshots": [entry]})
        return None

    inject(clients, "DescribeDBClusterSnapshots", in_progress)
    copy = check_then_copy(registry, request(), settings=settings, clients=clients, store=store)
    assert copy["reused_from"] == "op-a"
    assert copy["complete"] is False
    assert copy["percent_progress"] == 40
    assert copy["next_poll_seconds"] >= settings.poll_min_seconds


def test_a_failed_copy_of_another_operation_is_not_reused(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    source_arn = world["manual"]["DBClusterSnapshotArn"]
    managed_copy(clients, "ar-orders-manual-bbbb", operation_id="op-b", source_arn=source_arn)

    def failed(params: dict[str, Any]) -> Any:
        if params.get("SnapshotType") == "manual":
            tags = snapshots(clients)["ar-orders-manual-bbbb"]
            return respond(
                {
                    "DBClusterSnapshots": [
                        snapshot_description("ar-orders-manual-bbbb", status="failed", tags=tags)
                    ]
                }
            )
        return None

    inject(clients, "DescribeDBClusterSnapshots", failed)
    copy = check_then_copy(registry, request(), settings=settings, clients=clients, store=store)
    assert copy["reused_from"] is None
    assert copy["identifier"] == COPY_ID


def test_the_clock_of_the_step_is_the_start_of_the_wait(
    registry: Any, world: Any, settings: Any, clients: Any, store: Any
) -> None:
    clock = Clock()
    facts = run_step(
        registry, "snapshot_check", request(), {}, settings=settings, clients=clients, store=store
    )
    copy = run_step(
        registry,
        "copy_snapshot",
        request(),
        {"snapshot": facts},
        settings=settings,
        clients=clients,
        store=store,
        clock=clock,
    )
    assert copy["started_at"] == "2026-03-01T02:00:00Z"
