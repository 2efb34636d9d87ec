"""Where the restored cluster goes: the old target's place unless the request says otherwise, never public.

And the early refusals: a region the stack does not serve, a new target nobody places, a member
instance the safety rules do not cover, a script outside the stack's prefix, a snapshot key the
function cannot use. Each is refused before any call that changes something.
"""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.errors import ValidationError
from dispatcher.handler import Dispatcher
from dispatcher.settings import Settings
from refresh.errors import UnsafeTarget
from refresh.target_lock import release_lock
from tests.conftest import STACK_PLACEMENT
from tests.functional.replace_world import (
    SOURCE_CLUSTER,
    SOURCE_REGION,
    TARGET,
    TARGET_REGION,
    event,
    faithful_rds,
    managed_tags,
    mutations,
    rds,
    request,
    target_world,
)

__all__ = ["faithful_rds", "mutations", "target_world"]

CLUSTER_GROUP = "orders-dev-cluster-params"
INSTANCE_GROUP = "orders-dev-instance-params"


def network(clients: Any) -> tuple[str, list[str]]:
    """A DB subnet group and two security groups in the target region."""
    ec2 = clients("ec2", TARGET_REGION)
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.7.{i}.0/24", AvailabilityZone=f"{TARGET_REGION}{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in enumerate("ab")
    ]
    groups = [
        ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
        for name in ("orders-dev-db", "dba-access")
    ]
    rds(clients).create_db_subnet_group(
        DBSubnetGroupName="orders-dev-private", DBSubnetGroupDescription="dev", SubnetIds=subnets
    )
    return "orders-dev-private", groups


def placed_target(
    clients: Any, *, instance_tags: list[dict[str, str]] | None = None
) -> tuple[str, list[str]]:
    """A managed target with its own subnet group, security groups, parameter groups, port 5433,
    a db.r6g.xlarge writer and one reader; returns the subnet group and the security groups."""
    subnet_group, groups = network(clients)
    client = rds(clients)
    client.create_db_cluster_parameter_group(
        DBClusterParameterGroupName=CLUSTER_GROUP,
        DBParameterGroupFamily="aurora-postgresql15",
        Description="dev",
    )
    client.create_db_parameter_group(
        DBParameterGroupName=INSTANCE_GROUP, DBParameterGroupFamily="aurora-postgresql15", Description="dev"
    )
    client.create_db_cluster(
        DBClusterIdentifier=TARGET,
        Engine="aurora-postgresql",
        EngineVersion="15.4",
        MasterUsername="postgres",
        MasterUserPassword="not-a-real-password-1",
        DBSubnetGroupName=subnet_group,
        VpcSecurityGroupIds=groups,
        DBClusterParameterGroupName=CLUSTER_GROUP,
        Port=5433,
        Tags=managed_tags(),
    )
    for index in (1, 2):
        client.create_db_instance(
            DBInstanceIdentifier=f"{TARGET}-instance-{index}",
            DBClusterIdentifier=TARGET,
            Engine="aurora-postgresql",
            DBInstanceClass="db.r6g.xlarge",
            DBParameterGroupName=INSTANCE_GROUP,
            Tags=managed_tags() if instance_tags is None else instance_tags,
        )
    return subnet_group, groups


def source_snapshot(clients: Any) -> None:
    """The snapshot the request names, of the source cluster in its own region."""
    clients("rds", SOURCE_REGION).create_db_cluster_snapshot(
        DBClusterIdentifier=SOURCE_CLUSTER, DBClusterSnapshotIdentifier="orders-snap"
    )


def refresh_to_instances(dispatcher: Any, world: dict[str, Any], req: dict[str, Any]) -> dict[str, Any]:
    """snapshot_check, restore_snapshot, then check_restore_status until the instances exist."""
    snapshot = dispatcher.handle(event("snapshot_check", request=req))
    restore = dispatcher.handle(event("restore_snapshot", request=req, snapshot=snapshot, copy=world["copy"]))
    restore = dispatcher.handle(event("check_restore_status", request=req, restore=restore))
    return {"snapshot": snapshot, "restore": restore}


def test_a_restore_over_a_target_takes_its_place_size_and_groups_and_is_never_public(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN a target in its own subnet group and security groups, with its own parameter groups,
    # port, instance class and one reader, and a request that names none of these
    subnet_group, groups = placed_target(clients)
    source_snapshot(clients)
    mutations.clear()
    # WHEN the refresh checks, restores and adds the instances
    done = refresh_to_instances(dispatcher, target_world, request())
    # THEN the restored cluster is placed and configured like the old target
    (restore,) = mutations.of("RestoreDBClusterFromSnapshot")
    assert restore["DBSubnetGroupName"] == subnet_group
    assert restore["VpcSecurityGroupIds"] == groups
    assert restore["DBClusterParameterGroupName"] == CLUSTER_GROUP
    assert restore["Port"] == 5433
    # AND it gets as many instances as the old target, of its class and parameter group, private
    created = mutations.of("CreateDBInstance")
    assert len(created) == 2
    assert {c["DBInstanceClass"] for c in created} == {"db.r6g.xlarge"}
    assert {c["DBParameterGroupName"] for c in created} == {INSTANCE_GROUP}
    assert [c["PubliclyAccessible"] for c in created] == [False, False]
    # AND the output says where each value came from
    assert done["restore"]["placement"]["sources"]["db_subnet_group"] == "old target"
    assert done["snapshot"]["target"]["placement"]["reader_count"] == 1


def test_the_request_overrides_what_the_target_would_give(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN the same target, and a request that places and sizes the copy itself, publicly
    placed_target(clients)
    source_snapshot(clients)
    req = request(
        db_subnet_group="elsewhere",
        vpc_security_group_ids=["sg-0123456789abcdef0"],
        db_cluster_parameter_group="other-cluster-params",
        port=6543,
        instance_class="db.r6g.large",
        reader_count=0,
        db_parameter_group="other-instance-params",
        publicly_accessible=True,
    )
    snapshot = dispatcher.handle(event("snapshot_check", request=req))
    mutations.clear()
    # WHEN the restore starts
    restore = dispatcher.handle(
        event("restore_snapshot", request=req, snapshot=snapshot, copy=target_world["copy"])
    )
    # THEN the request's values win, one writer only, public as asked
    (call,) = mutations.of("RestoreDBClusterFromSnapshot")
    assert (call["DBSubnetGroupName"], call["VpcSecurityGroupIds"]) == ("elsewhere", ["sg-0123456789abcdef0"])
    assert (call["DBClusterParameterGroupName"], call["Port"]) == ("other-cluster-params", 6543)
    assert len(restore["instance_ids"]) == 1
    placement = restore["placement"]
    assert placement["instance_class"] == "db.r6g.large"
    assert placement["db_parameter_group"] == "other-instance-params"
    assert placement["publicly_accessible"] is True
    assert set(placement["sources"].values()) == {"request"}


def test_rds_default_parameter_groups_are_not_inherited(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN a target on RDS's default groups (they belong to its engine version)
    subnet_group, groups = network(clients)
    rds(clients).create_db_cluster(
        DBClusterIdentifier=TARGET,
        Engine="aurora-postgresql",
        EngineVersion="15.4",
        MasterUsername="postgres",
        MasterUserPassword="not-a-real-password-1",
        DBSubnetGroupName=subnet_group,
        VpcSecurityGroupIds=groups,
        Tags=managed_tags(),
    )
    source_snapshot(clients)
    # WHEN the restore starts for another engine version
    req = request(engine_version="16.1")
    snapshot = dispatcher.handle(event("snapshot_check", request=req))
    mutations.clear()
    dispatcher.handle(event("restore_snapshot", request=req, snapshot=snapshot, copy=target_world["copy"]))
    # THEN RDS picks the default group of the new version itself: none is passed
    (call,) = mutations.of("RestoreDBClusterFromSnapshot")
    assert "DBClusterParameterGroupName" not in call
    assert call["DBSubnetGroupName"] == subnet_group


@pytest.mark.parametrize(
    ("stack", "fields", "missing"),
    [
        pytest.param({}, {}, "db_subnet_group", id="nothing"),
        pytest.param({"default_subnet_group": "dev-private"}, {}, "vpc_security_group_ids", id="no-groups"),
        pytest.param(
            {}, {"db_subnet_group": "dev-private"}, "vpc_security_group_ids", id="request-subnets-only"
        ),
    ],
)
def test_a_new_target_nobody_places_is_refused_in_validate_request(
    registry: Any,
    clients: Any,
    store: Any,
    seed_input: dict[str, Any],
    stack: dict[str, Any],
    fields: dict[str, Any],
    missing: str,
) -> None:
    # GIVEN no cluster under the target's name, and placement missing from the request and stack
    app = Dispatcher(registry=registry, settings=Settings(**stack), clients=clients)
    app._store = store
    calls: list[str] = []
    clients.add_hook("before-call.rds", lambda model, **_: calls.append(model.name))
    body = {**seed_input["body"], **fields}
    # WHEN the first state validates the request
    with pytest.raises(ValidationError) as caught:
        app.handle({"step": "validate_request", "input": {"body": body}, "execution_id": "exec-1"})
    # THEN it names the missing field and where it may come from; it only looked at the target
    assert caught.value.field == missing
    assert "does not exist" in str(caught.value) and "stack's Default" in str(caught.value)
    assert calls == ["DescribeDBClusters"]
    # AND with both named in the request, it passes
    body.update(db_subnet_group="dev-private", vpc_security_group_ids=["sg-0123456789abcdef0"])
    output = app.handle({"step": "validate_request", "input": {"body": body}, "execution_id": "exec-2"})
    assert output["db_subnet_group"] == "dev-private"


def test_a_region_the_stack_does_not_serve_is_refused_before_any_aws_call(
    registry: Any, clients: Any, store: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN a stack in eu-central-1 (Lambda's AWS_REGION) and the seed's request for us-west-2
    settings = Settings.from_env({"AWS_REGION": "eu-central-1"})
    assert settings.stack_region == "eu-central-1"
    app = Dispatcher(registry=registry, settings=settings, clients=clients)
    app._store = store
    calls: list[str] = []
    clients.add_hook("before-call.rds", lambda model, **_: calls.append(model.name))
    # WHEN the first state validates it
    with pytest.raises(ValidationError) as caught:
        app.handle({"step": "validate_request", "input": seed_input, "execution_id": "exec-1"})
    # THEN it names the field, the value and the one region allowed; nothing was looked at
    assert caught.value.field == "target_region"
    assert "'us-west-2'" in str(caught.value) and "allowed: eu-central-1" in str(caught.value)
    assert calls == []


def test_an_untagged_member_instance_is_refused_before_the_copy(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN a managed target whose instances carry no managed tag
    placed_target(clients, instance_tags=[{"Key": "team", "Value": "orders"}])
    source_snapshot(clients)
    mutations.clear()
    # WHEN snapshot_check looks at the target
    with pytest.raises(UnsafeTarget) as caught:
        dispatcher.handle(event("snapshot_check", request=request()))
    # THEN it names the instance and the rule, and nothing changed in RDS
    assert caught.value.details["instance_id"] == f"{TARGET}-instance-1"
    assert caught.value.details["rule"] == "managed-or-allowed"
    assert f"instance {TARGET}-instance-1 of cluster {TARGET}" in str(caught.value)
    assert mutations.names == []


def test_member_instances_matching_the_allowed_pattern_pass(
    registry: Any, clients: Any, store: Any, target_world: dict[str, Any]
) -> None:
    # GIVEN an untagged target and instances, all matching the stack's allowed-target pattern
    placed_target(clients, instance_tags=[])
    rds(clients).remove_tags_from_resource(
        ResourceName=rds(clients).describe_db_clusters(DBClusterIdentifier=TARGET)["DBClusters"][0][
            "DBClusterArn"
        ],
        TagKeys=["aurora-restore:managed", "aurora-restore:operation-id"],
    )
    source_snapshot(clients)
    narrow = Settings(allowed_target_pattern=r"orders-dev", **STACK_PLACEMENT)
    wide = Settings(allowed_target_pattern=r"orders-dev(-instance-\d+)?", **STACK_PLACEMENT)
    # WHEN the pattern covers the cluster only: refused, naming the instance
    app = Dispatcher(registry=registry, settings=narrow, clients=clients)
    app._store = store
    with pytest.raises(UnsafeTarget, match="does not match the allowed-target pattern"):
        app.handle(event("snapshot_check", request=request()))
    release_lock(store, TARGET_REGION, TARGET, "op-replace-1")
    # WHEN it covers the instances too: the target may be replaced
    app = Dispatcher(registry=registry, settings=wide, clients=clients)
    app._store = store
    assert app.handle(event("snapshot_check", request=request()))["target"]["exists"] is True


@pytest.mark.parametrize(
    ("prefix", "uri", "refused"),
    [
        pytest.param("", "s3://masking-scripts/mask.sql", True, id="no-prefix-no-s3-scripts"),
        pytest.param("masking-scripts/dev/", "s3://masking-scripts/prod/mask.sql", True, id="other-folder"),
        pytest.param(
            "masking-scripts/dev/", "s3://masking-scripts-dev/mask.sql", True, id="lookalike-bucket"
        ),
        pytest.param(
            "masking-scripts/dev/", "s3://masking-scripts/dev/mask.sql", False, id="under-the-prefix"
        ),
    ],
)
def test_scripts_outside_the_prefix_are_refused_by_snapshot_check(
    registry: Any,
    clients: Any,
    store: Any,
    target_world: dict[str, Any],
    prefix: str,
    uri: str,
    refused: bool,
) -> None:
    # GIVEN a stack reading scripts under ``prefix`` and a users spec with an S3 script
    source_snapshot(clients)
    app = Dispatcher(
        registry=registry, settings=Settings(scripts_s3_prefix=prefix, **STACK_PLACEMENT), clients=clients
    )
    app._store = store
    req = request(users={"scripts": [{"name": "mask", "s3_uri": uri}]})
    calls: list[str] = []
    clients.add_hook("before-call.rds", lambda model, **_: calls.append(model.name))
    # WHEN snapshot_check runs
    if not refused:
        assert app.handle(event("snapshot_check", request=req))["identifier"] == "orders-snap"
        return
    with pytest.raises(ValidationError) as caught:
        app.handle(event("snapshot_check", request=req))
    # THEN it names the field, the URI and what is allowed, before looking at RDS at all
    assert caught.value.field == "users.scripts[0].s3_uri"
    assert uri in str(caught.value) and "ScriptsS3Prefix" in str(caught.value)
    assert calls == []


def test_a_snapshot_used_as_it_is_needs_a_key_the_function_can_use(
    registry: Any, clients: Any, store: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN an encrypted manual snapshot in the target region (no copy) whose key is disabled
    kms = clients("kms", TARGET_REGION)
    made = kms.create_key(Description="dev")["KeyMetadata"]
    key, key_id = made["Arn"], made["KeyId"]
    client = rds(clients)
    client.create_db_cluster(
        DBClusterIdentifier="orders-here",
        Engine="aurora-postgresql",
        EngineVersion="15.4",
        MasterUsername="postgres",
        MasterUserPassword="not-a-real-password-1",
        StorageEncrypted=True,
        KmsKeyId=key,
    )
    client.create_db_cluster_snapshot(
        DBClusterIdentifier="orders-here", DBClusterSnapshotIdentifier="here-snap"
    )
    kms.disable_key(KeyId=key_id)  # AWS takes the ARN too; moto only the id
    app = Dispatcher(registry=registry, settings=Settings(**STACK_PLACEMENT), clients=clients)
    app._store = store
    req = request(snapshot_id="here-snap", source_region=TARGET_REGION)
    mutations.clear()
    # WHEN snapshot_check runs
    with pytest.raises(ValidationError) as caught:
        app.handle(event("snapshot_check", request=req))
    # THEN the snapshot and its key are named, and nothing changed
    assert caught.value.field == "snapshot_id"
    assert key in str(caught.value) and "Disabled" in str(caught.value)
    assert mutations.names == []
    # AND once the key is enabled again, the snapshot passes (used as it is)
    kms.enable_key(KeyId=key_id)
    release_lock(store, TARGET_REGION, TARGET, "op-replace-1")
    assert app.handle(event("snapshot_check", request=req))["copy_reason"] is None
