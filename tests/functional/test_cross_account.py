"""Snapshots of another account: shared through a copy there, copied here, retired there; every trap refused.

Two accounts in moto (``aurora_restore.simulate.accounts``): the target (moto's default account,
where the stack runs) and the source (production), whose role and shareable key are the
source-account template's. ``accounts_as_documented`` holds moto to what AWS documents: the trust
policy and external id on AssumeRole, no sharing under ``aws/rds``, a shared snapshot copied by ARN
only with a key of the caller's and a source key policy that grants the caller's account.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aurora_restore.simulate.accounts import (
    EXTERNAL_ID,
    SOURCE_ACCOUNT,
    SourceAccount,
    automated_snapshot_under_aws_rds,
    deploy_source_account,
)
from dispatcher.errors import ValidationError
from dispatcher.registry import load_builtin_steps
from dispatcher.settings import Settings
from refresh.source_accounts import policy_grants
from steps.retire_source_share import RetireSourceShare
from steps.share_source_snapshot import ShareSourceSnapshot
from steps.snapshot_check import SnapshotCheck
from tests.conftest import STACK_PLACEMENT
from tests.functional.snapshot_world import (
    SOURCE_REGION,
    TARGET_REGION,
    Clock,
    context,
    request,
    target_key,
)

TARGET_ACCOUNT = "123456789012"
AUTOMATED = "rds:orders-2026-11-29-03-00"
MUTATING_PREFIXES = (
    "Copy",
    "Create",
    "Delete",
    "Modify",
    "Restore",
    "AddTags",
    "RemoveTags",
    "Start",
    "Stop",
)


@pytest.fixture
def two_accounts(aws: None) -> Iterator[None]:
    from aurora_restore.simulate.moto_compat import accounts_as_documented, rds_as_documented

    with rds_as_documented(), accounts_as_documented():
        yield


@pytest.fixture
def calls(clients: Any) -> list[tuple[str, str]]:
    """Every AWS call the steps make through the target account's clients, as (service, operation)."""
    seen: list[tuple[str, str]] = []

    def record(model: Any, **_: Any) -> None:
        seen.append((model.service_model.service_name, model.name))

    clients.add_hook("before-call", record)
    return seen


def source_of(clients: Any, **kwargs: Any) -> SourceAccount:
    return deploy_source_account(clients, region=SOURCE_REGION, target_account=TARGET_ACCOUNT, **kwargs)


def settings_for(source: SourceAccount, key: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "source_account_role_arns": (source.role_arn,),
        "source_kms_key_arns": (source.key_arn,),
        "source_account_external_id": EXTERNAL_ID,
        "default_kms_key_id": key,
        **STACK_PLACEMENT,
        **overrides,
    }
    return Settings(**values)


def check(clients: Any, store: Any, settings: Settings, **fields: Any) -> dict[str, Any]:
    req = request(snapshot_id=AUTOMATED, source_account=SOURCE_ACCOUNT, **fields)
    return SnapshotCheck().run(context({}, req, settings=settings, clients=clients, store=store))


def source_state(source: SourceAccount) -> dict[str, Any]:
    """The source account as an operator would look at it: clusters, snapshots, their tags and shares."""
    rds = source.rds()
    snapshots = {}
    for snapshot in rds.describe_db_cluster_snapshots()["DBClusterSnapshots"]:
        identifier = snapshot["DBClusterSnapshotIdentifier"]
        shares = rds.describe_db_cluster_snapshot_attributes(DBClusterSnapshotIdentifier=identifier)
        restore = next(
            a["AttributeValues"]
            for a in shares["DBClusterSnapshotAttributesResult"]["DBClusterSnapshotAttributes"]
            if a["AttributeName"] == "restore"
        )
        tags = rds.list_tags_for_resource(ResourceName=snapshot["DBClusterSnapshotArn"])["TagList"]
        snapshots[identifier] = {"shared_with": restore, "tags": {t["Key"]: t["Value"] for t in tags}}
    clusters = {c["DBClusterIdentifier"]: c["Status"] for c in rds.describe_db_clusters()["DBClusters"]}
    return {"clusters": clusters, "snapshots": snapshots}


def mutating(calls: list[tuple[str, str]]) -> list[str]:
    return [f"{s}:{op}" for s, op in calls if s == "rds" and op.startswith(MUTATING_PREFIXES)]


# -- the whole way ----------------------------------------------------------------------------------
def test_an_automated_snapshot_under_aws_rds_reaches_the_target_account_and_the_source_is_left_as_it_was(
    two_accounts: None, clients: Any, store: Any
) -> None:
    # GIVEN production in another account: an automated snapshot under aws/rds, and its stack deployed
    source = source_of(clients)
    automated_snapshot_under_aws_rds(source, "orders", AUTOMATED)
    before = source_state(source)
    key = target_key(clients)
    settings = settings_for(source, key)
    req = request(snapshot_id=AUTOMATED, source_account=SOURCE_ACCOUNT)
    clock = Clock()

    def ctx(**event: Any) -> Any:
        return context(event, req, settings=settings, clients=clients, store=store, clock=clock)

    # WHEN SnapshotCheck, ShareSourceSnapshot (start and check), CopySnapshot and RetireSourceShare run
    snapshot = SnapshotCheck().run(ctx())
    assert snapshot["source_share_required"] is True
    assert snapshot["snapshot_type"] == "automated" and snapshot["account"] == SOURCE_ACCOUNT
    # Across regions too (the default request): the copy here re-encrypts under the target key either way.
    assert snapshot["copy_reason"] == "cross-region" and snapshot["target_kms_key_id"] == key
    shared = ShareSourceSnapshot().start(ctx(snapshot=snapshot))
    if not shared["complete"]:
        shared = ShareSourceSnapshot().check(ctx(snapshot=shared))
    assert shared["complete"] is True
    registry = load_builtin_steps()
    copy = registry.get("copy_snapshot")().run(ctx(snapshot=shared))
    while not copy["complete"]:
        copy = registry.get("check_copy_status")().run(ctx(snapshot=shared, copy=copy))

    # THEN the copy in the source account was made under the shareable key and shared with us only
    copy_id = shared["shared_copy"]["identifier"]
    during = source_state(source)
    assert during["snapshots"][copy_id]["shared_with"] == [TARGET_ACCOUNT]
    assert during["snapshots"][copy_id]["tags"]["aurora-restore:managed"] == "true"
    made = source.rds().describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=copy_id)[
        "DBClusterSnapshots"
    ]
    assert made[0]["KmsKeyId"] == source.key_arn
    # AND the target account has its own copy, under its own key, made from the shared copy
    target = clients("rds", TARGET_REGION).describe_db_cluster_snapshots(
        DBClusterSnapshotIdentifier=copy["identifier"]
    )["DBClusterSnapshots"][0]
    assert target["KmsKeyId"] == key and copy["source_arn"] == shared["shared_copy_arn"]
    assert target["DBClusterSnapshotArn"].split(":")[4] == TARGET_ACCOUNT

    # WHEN the share is retired (twice: steps run twice sooner or later)
    retired = RetireSourceShare().run(ctx(snapshot=shared, copy=copy))
    again = RetireSourceShare().run(ctx(snapshot=shared, copy=copy))
    # THEN the source account is exactly as it was: the copy unshared and gone, nothing else touched
    assert retired == {
        "account": SOURCE_ACCOUNT,
        "copy_id": copy_id,
        "unshared": True,
        "deleted": True,
        "existed": True,
    }
    assert again["deleted"] is True and again["unshared"] is False
    assert source_state(source) == before


def test_the_share_step_run_twice_makes_one_copy(two_accounts: None, clients: Any, store: Any) -> None:
    source = source_of(clients)
    automated_snapshot_under_aws_rds(source, "orders", AUTOMATED)
    settings = settings_for(source, target_key(clients))
    req = request(snapshot_id=AUTOMATED, source_account=SOURCE_ACCOUNT)
    snapshot = SnapshotCheck().run(context({}, req, settings=settings, clients=clients, store=store))
    first = ShareSourceSnapshot().start(
        context({"snapshot": snapshot}, req, settings=settings, clients=clients, store=store)
    )
    after_first = source_state(source)
    second = ShareSourceSnapshot().start(
        context({"snapshot": snapshot}, req, settings=settings, clients=clients, store=store)
    )
    assert second["shared_copy"]["identifier"] == first["shared_copy"]["identifier"]
    assert source_state(source) == after_first


def test_a_failure_after_the_share_retires_the_copy_in_the_source_account(
    two_accounts: None, clients: Any, store: Any
) -> None:
    from steps.handle_failure.cleanup import cleanup_after_failure

    # GIVEN a refresh that shared its copy out of the source account, then failed (its copy here, say)
    source = source_of(clients)
    automated_snapshot_under_aws_rds(source, "orders", AUTOMATED)
    before = source_state(source)
    settings = settings_for(source, target_key(clients))
    req = request(snapshot_id=AUTOMATED, source_account=SOURCE_ACCOUNT)
    snapshot = SnapshotCheck().run(context({}, req, settings=settings, clients=clients, store=store))
    shared = ShareSourceSnapshot().start(
        context({"snapshot": snapshot}, req, settings=settings, clients=clients, store=store)
    )
    assert source_state(source) != before
    # WHEN the failure handler cleans up (twice: it runs twice sooner or later)
    ctx = context({}, req, settings=settings, clients=clients, store=store)
    data = {"request": req.to_dict(), "snapshot": shared}
    lines = cleanup_after_failure(ctx, data)
    again = cleanup_after_failure(ctx, data)
    # THEN the copy there is unshared and deleted, and the source account is as it was
    copy_id = shared["shared_copy"]["identifier"]
    assert lines == [f"copy {copy_id} in account {SOURCE_ACCOUNT} unshared and deleted"]
    assert again == []  # nothing left to do
    assert source_state(source) == before


def test_the_archive_step_retires_copies_left_in_the_source_account_by_runs_that_died(
    two_accounts: None, clients: Any, store: Any
) -> None:
    from steps.archive_snapshot import ArchiveSnapshot

    # GIVEN two earlier runs that shared copies and died before retiring them: one FAILED, one RUNNING
    source = source_of(clients)
    automated_snapshot_under_aws_rds(source, "orders", AUTOMATED)
    before = source_state(source)
    settings = settings_for(source, target_key(clients))
    left = {}
    for operation_id, status in (("op-dead-1", "FAILED"), ("op-alive-1", None)):
        # (each its own target: their locks stay taken, as a dead run's would)
        req = request(
            snapshot_id=AUTOMATED,
            source_account=SOURCE_ACCOUNT,
            operation_id=operation_id,
            target_cluster_id=f"orders-{operation_id}",
        )
        snapshot = SnapshotCheck().run(context({}, req, settings=settings, clients=clients, store=store))
        shared = ShareSourceSnapshot().start(
            context({"snapshot": snapshot}, req, settings=settings, clients=clients, store=store)
        )
        left[operation_id] = shared["shared_copy"]["identifier"]
        if status:
            store.finish(operation_id, status)
    # WHEN a later refresh of the same source archives
    req = request(snapshot_id=AUTOMATED, source_account=SOURCE_ACCOUNT, operation_id="op-now-1")
    snapshot = SnapshotCheck().run(context({}, req, settings=settings, clients=clients, store=store))
    event = {"snapshot": snapshot, "copy": {"identifier": "none", "copied": False}, "restore": {}}
    output = ArchiveSnapshot().run(context(event, req, settings=settings, clients=clients, store=store))
    # THEN the dead run's copy is unshared and deleted there, the running one's kept
    assert output["problems"] == []
    assert output["source_account_deleted"] == [left["op-dead-1"]]
    assert {"identifier": left["op-alive-1"], "reason": "operation op-alive-1 may still run"} in output[
        "skipped"
    ]
    after = source_state(source)
    assert left["op-dead-1"] not in after["snapshots"]
    assert after["snapshots"][left["op-alive-1"]]["shared_with"] == [TARGET_ACCOUNT]
    assert set(after["snapshots"]) - {left["op-alive-1"]} == set(before["snapshots"])


# -- the traps: refused in SnapshotCheck, nothing changed in the target account --------------------
def test_no_role_for_the_account(
    two_accounts: None, clients: Any, store: Any, calls: list[tuple[str, str]]
) -> None:
    source = source_of(clients)
    automated_snapshot_under_aws_rds(source, "orders", AUTOMATED)
    calls.clear()
    settings = settings_for(source, target_key(clients), source_account_role_arns=())
    with pytest.raises(ValidationError) as caught:
        check(clients, store, settings)
    message = str(caught.value)
    assert "source_account: '111111111111'" in message
    assert "SourceAccountRoleArns" in message and "--source-account" in message
    assert mutating(calls) == []


def test_a_role_that_cannot_be_assumed_names_trust_and_external_id(
    two_accounts: None, clients: Any, store: Any, calls: list[tuple[str, str]]
) -> None:
    source = source_of(clients)
    automated_snapshot_under_aws_rds(source, "orders", AUTOMATED)
    calls.clear()
    settings = settings_for(source, target_key(clients), source_account_external_id="not-the-right-one-00")
    with pytest.raises(ValidationError) as caught:
        check(clients, store, settings)
    message = str(caught.value)
    assert "cannot be assumed (AccessDenied)" in message
    assert "DispatcherRoleArn" in message and "SourceAccountExternalId" in message
    assert "not-the-right-one" not in message  # the external id is never echoed
    assert mutating(calls) == []


def test_a_key_policy_without_the_target_account_is_refused_before_any_copy(
    two_accounts: None, clients: Any, store: Any, calls: list[tuple[str, str]]
) -> None:
    source = source_of(clients, key_grants_target=False)
    automated_snapshot_under_aws_rds(source, "orders", AUTOMATED)
    before = source_state(source)
    calls.clear()
    with pytest.raises(ValidationError) as caught:
        check(clients, store, settings_for(source, target_key(clients)))
    message = str(caught.value)
    assert f"does not let account {TARGET_ACCOUNT} use it" in message
    assert f"arn:aws:iam::{TARGET_ACCOUNT}:root" in message
    assert mutating(calls) == []
    assert source_state(source) == before


def test_a_snapshot_that_cannot_be_shared_without_a_shareable_key_is_refused(
    two_accounts: None, clients: Any, store: Any, calls: list[tuple[str, str]]
) -> None:
    source = source_of(clients)
    automated_snapshot_under_aws_rds(source, "orders", AUTOMATED)
    calls.clear()
    with pytest.raises(ValidationError) as caught:
        check(clients, store, settings_for(source, target_key(clients), source_kms_key_arns=()))
    message = str(caught.value)
    assert "is an automated snapshot in account 111111111111, which AWS does not share" in message
    assert "ShareableKeyArn to SourceKmsKeyArns" in message
    assert mutating(calls) == []


# -- moto held to AWS ---------------------------------------------------------------------------------
def test_moto_refuses_to_share_a_snapshot_under_aws_rds(two_accounts: None, clients: Any) -> None:
    source = source_of(clients)
    automated_snapshot_under_aws_rds(source, "orders", AUTOMATED)
    rds = source.rds()
    rds.copy_db_cluster_snapshot(
        SourceDBClusterSnapshotIdentifier=AUTOMATED, TargetDBClusterSnapshotIdentifier="manual-copy"
    )
    with pytest.raises(rds.exceptions.ClientError, match="cannot be shared"):
        rds.modify_db_cluster_snapshot_attribute(
            DBClusterSnapshotIdentifier="manual-copy", AttributeName="restore", ValuesToAdd=[TARGET_ACCOUNT]
        )


def test_moto_refuses_a_cross_account_copy_when_the_key_policy_leaves_the_caller_out(
    two_accounts: None, clients: Any
) -> None:
    source = source_of(clients, key_grants_target=False)
    automated_snapshot_under_aws_rds(source, "orders", AUTOMATED)
    rds = source.rds()
    made = rds.copy_db_cluster_snapshot(
        SourceDBClusterSnapshotIdentifier=AUTOMATED,
        TargetDBClusterSnapshotIdentifier="shareable",
        KmsKeyId=source.key_arn,
    )["DBClusterSnapshot"]
    rds.modify_db_cluster_snapshot_attribute(
        DBClusterSnapshotIdentifier="shareable", AttributeName="restore", ValuesToAdd=[TARGET_ACCOUNT]
    )
    here = clients("rds", SOURCE_REGION)
    shared = here.describe_db_cluster_snapshots(SnapshotType="shared", IncludeShared=True)[
        "DBClusterSnapshots"
    ]
    assert [s["DBClusterSnapshotArn"] for s in shared] == [made["DBClusterSnapshotArn"]]
    with pytest.raises(here.exceptions.ClientError, match="KMSKeyNotAccessibleFault"):
        here.copy_db_cluster_snapshot(
            SourceDBClusterSnapshotIdentifier=made["DBClusterSnapshotArn"],
            TargetDBClusterSnapshotIdentifier="mine",
            KmsKeyId=target_key(clients, region=SOURCE_REGION),
        )


def test_the_key_policy_check_reads_principals_and_conditions() -> None:
    granting = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "kms:*"},
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["arn:aws:iam::333333333333:role/x"]},
                "Action": ["kms:Decrypt"],
                "Condition": {"StringEquals": {"kms:ViaService": "rds.us-east-1.amazonaws.com"}},
            },
        ]
    }
    import json

    text = json.dumps(granting)
    assert policy_grants(text, "222222222222", "kms:CreateGrant")
    assert not policy_grants(text, "333333333333", "kms:Decrypt")  # a condition we cannot promise
    assert not policy_grants(text, "444444444444", "kms:Decrypt")


def test_a_snapshot_arn_of_a_configured_account_is_read_through_its_role(
    two_accounts: None, clients: Any, store: Any
) -> None:
    source = source_of(clients)
    made = automated_snapshot_under_aws_rds(source, "orders", AUTOMATED)
    req = request(snapshot_id=made["DBClusterSnapshotArn"])  # no source_account: the ARN says it
    facts = SnapshotCheck().run(
        context({}, req, settings=settings_for(source, target_key(clients)), clients=clients, store=store)
    )
    assert facts["source_share_required"] is True
    assert facts["source_share"]["account"] == SOURCE_ACCOUNT and facts["identifier"] == AUTOMATED


def test_a_clone_of_another_accounts_cluster_is_refused_naming_source_account(
    two_accounts: None, clients: Any, store: Any, calls: list[tuple[str, str]]
) -> None:
    source = source_of(clients)
    req = request(snapshot_id="clone:orders", source_account=SOURCE_ACCOUNT, source_region=TARGET_REGION)
    with pytest.raises(
        ValidationError, match="source_account: '111111111111' is not valid; applies to snapshots"
    ):
        SnapshotCheck().run(
            context({}, req, settings=settings_for(source, target_key(clients)), clients=clients, store=store)
        )
    assert mutating(calls) == []
