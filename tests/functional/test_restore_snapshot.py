"""restore_snapshot under moto: where the cluster goes, what it is restored with, what it adopts."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.errors import AwsCallFailed, ResourceBusy, Retryable, ValidationError
from dispatcher.handler import Dispatcher
from dispatcher.settings import Settings
from refresh.errors import UnsafeTarget
from refresh.request import MANAGED_TAG, OPERATION_TAG
from steps.lib import names
from steps.lib.clusters import SOURCE_SNAPSHOT_TAG
from tests.functional.replace_world import (
    OPERATION,
    TARGET,
    always_fail,
    cluster_ids,
    describe,
    event,
    faithful_rds,
    make_cluster,
    managed_tags,
    mutations,
    overlay,
    request,
    snapshot_facts,
    tags,
    target_world,
)

__all__ = ["faithful_rds", "mutations", "overlay", "target_world"]

TEMPORARY = names.temporary_cluster_id(TARGET, OPERATION)


def restore_event(world: dict[str, Any], *, target_exists: bool, **request_fields: Any) -> dict[str, Any]:
    return event(
        "restore_snapshot",
        request=request(**request_fields),
        snapshot=snapshot_facts(target_exists=target_exists),
        copy=world["copy"],
    )


def test_no_target_restores_under_the_target_name_tagged_and_unprotected(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN no target cluster yet
    # WHEN the restore starts
    output = dispatcher.handle(restore_event(target_world, target_exists=False, tags={"team": "orders"}))
    # THEN the cluster is restored under the target's own name, needing no swap
    assert output["cluster_id"] == TARGET
    assert output["swap_required"] is False
    assert output["complete"] is False
    assert output["next_poll_seconds"] >= 30
    assert output["polls"] == 1
    assert output["writer_instance_id"] == names.instance_id(TARGET, OPERATION, 0)
    cluster = describe(clients, TARGET)
    assert cluster is not None
    assert cluster["DeletionProtection"] is False
    assert tags(clients, cluster) == {
        MANAGED_TAG: "true",
        OPERATION_TAG: OPERATION,
        SOURCE_SNAPSHOT_TAG: snapshot_facts(target_exists=False)["arn"],
        "team": "orders",
    }
    # AND the call restored the copy with the snapshot's engine and version, protection off
    (call,) = mutations.of("RestoreDBClusterFromSnapshot")
    assert call["SnapshotIdentifier"] == target_world["copy"]["identifier"]
    assert (call["Engine"], call["EngineVersion"]) == ("aurora-postgresql", "15.4")
    assert call["DeletionProtection"] is False
    assert "ServerlessV2ScalingConfiguration" not in call
    assert "KmsKeyId" not in call


def test_swap_with_an_existing_target_restores_beside_it_and_leaves_it_alone(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN an existing target
    make_cluster(clients, TARGET)
    mutations.clear()
    # WHEN the restore starts under the swap strategy
    output = dispatcher.handle(restore_event(target_world, target_exists=True))
    # THEN the new cluster sits beside the target under the temporary name
    assert output["cluster_id"] == TEMPORARY
    assert output["swap_required"] is True
    assert cluster_ids(clients) == sorted([TARGET, TEMPORARY])
    # AND the only change is the restore: the target is neither renamed nor deleted
    assert mutations.names == ["RestoreDBClusterFromSnapshot"]


def test_delete_first_restores_under_the_target_name_once_it_is_gone(
    dispatcher: Any, clients: Any, target_world: dict[str, Any]
) -> None:
    # The target existed at snapshot_check; delete-first removed it before this state.
    output = dispatcher.handle(restore_event(target_world, target_exists=True, strategy="delete-first"))
    assert output["cluster_id"] == TARGET
    assert output["swap_required"] is False


def test_request_settings_reach_the_restore_call(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    dispatcher.handle(
        restore_event(
            target_world,
            target_exists=False,
            instance_class="db.serverless",
            serverless_min_capacity=1,
            serverless_max_capacity=16,
            engine_version="15.5",
            db_subnet_group="dev-subnets",
            vpc_security_group_ids=["sg-0123456789abcdef0"],
            db_cluster_parameter_group="dev-params",
            port=5433,
            iam_database_auth=True,
        )
    )
    (call,) = mutations.of("RestoreDBClusterFromSnapshot")
    assert call["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 1.0, "MaxCapacity": 16.0}
    assert call["EngineVersion"] == "15.5"
    assert call["DBSubnetGroupName"] == "dev-subnets"
    assert call["VpcSecurityGroupIds"] == ["sg-0123456789abcdef0"]
    assert call["DBClusterParameterGroupName"] == "dev-params"
    assert call["Port"] == 5433
    assert call["EnableIAMDatabaseAuthentication"] is True
    cluster = describe(clients, TARGET)
    assert cluster is not None
    assert cluster["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 1.0, "MaxCapacity": 16.0}
    assert cluster["IAMDatabaseAuthenticationEnabled"] is True


def test_stack_defaults_fill_in_what_the_request_leaves_out(
    registry: Any, clients: Any, store: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN a stack with default network, parameter group and KMS key, and an encrypted snapshot
    settings = Settings(
        default_subnet_group="stack-subnets",
        default_security_group_ids=("sg-00000000000000001",),
        default_cluster_parameter_group="stack-params",
        default_kms_key_id="alias/aurora-restore",
    )
    app = Dispatcher(registry=registry, settings=settings, clients=clients)
    app._store = store
    encrypted = snapshot_facts(target_exists=False, encrypted=True)
    # WHEN the restore starts
    app.handle(event("restore_snapshot", request=request(), snapshot=encrypted, copy=target_world["copy"]))
    # THEN the stack's defaults are used
    (call,) = mutations.of("RestoreDBClusterFromSnapshot")
    assert call["DBSubnetGroupName"] == "stack-subnets"
    assert call["VpcSecurityGroupIds"] == ["sg-00000000000000001"]
    assert call["DBClusterParameterGroupName"] == "stack-params"
    assert call["KmsKeyId"] == "alias/aurora-restore"


def test_request_kms_key_wins_and_an_unencrypted_snapshot_gets_none(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    key = "arn:aws:kms:us-west-2:123456789012:key/11111111-2222-3333-4444-555555555555"
    encrypted = snapshot_facts(target_exists=False, encrypted=True)
    dispatcher.handle(
        event(
            "restore_snapshot", request=request(kms_key_id=key), snapshot=encrypted, copy=target_world["copy"]
        )
    )
    assert mutations.of("RestoreDBClusterFromSnapshot")[0]["KmsKeyId"] == key

    # An unencrypted snapshot is restored unencrypted even when the request names a key.
    mutations.clear()
    other = request(kms_key_id=key, operation_id="op-replace-2")
    dispatcher.handle(
        event(
            "restore_snapshot",
            request={**other, "target_cluster_id": "orders-dev-2"},
            snapshot=snapshot_facts(target_exists=False),
            copy=target_world["copy"],
        )
    )
    assert "KmsKeyId" not in mutations.of("RestoreDBClusterFromSnapshot")[0]


def test_a_retry_adopts_the_cluster_this_operation_restored(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    first = dispatcher.handle(restore_event(target_world, target_exists=True))
    mutations.clear()
    second = dispatcher.handle(restore_event(target_world, target_exists=True))
    assert mutations.names == []
    assert second["cluster_id"] == first["cluster_id"] == TEMPORARY
    assert second["instance_ids"] == first["instance_ids"]


def test_a_cluster_under_the_temporary_name_made_by_another_operation_is_never_adopted(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN the target, and a cluster someone else made under this operation's temporary name
    make_cluster(clients, TARGET)
    make_cluster(clients, TEMPORARY, tags=managed_tags("op-someone-else"), instances=0)
    mutations.clear()
    # WHEN the restore starts
    with pytest.raises(UnsafeTarget) as caught:
        dispatcher.handle(restore_event(target_world, target_exists=True))
    # THEN it refuses, naming the cluster and its owner, and changes nothing
    assert TEMPORARY in str(caught.value)
    assert "op-someone-else" in str(caught.value)
    assert caught.value.details["rule"] == "not-this-operation"
    assert mutations.names == []


def test_an_untagged_cluster_under_the_target_name_is_never_adopted(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # The target appeared after snapshot_check said there was none.
    make_cluster(clients, TARGET, tags=[], instances=0)
    mutations.clear()
    with pytest.raises(UnsafeTarget, match="no aurora-restore operation tag"):
        dispatcher.handle(restore_event(target_world, target_exists=False))
    assert mutations.names == []


def test_a_target_still_being_deleted_is_waited_for_not_adopted(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], overlay: Any, mutations: Any
) -> None:
    # GIVEN delete-first, and the old target still deleting under the name
    make_cluster(clients, TARGET, instances=0)
    overlay.clusters[TARGET] = {"Status": "deleting"}
    mutations.clear()
    # WHEN the restore starts
    with pytest.raises(ResourceBusy, match="still being deleted"):
        dispatcher.handle(restore_event(target_world, target_exists=True, strategy="delete-first"))
    # THEN it is a retryable wait and nothing was restored over it
    assert isinstance(ResourceBusy("x"), Retryable)
    assert mutations.names == []


@pytest.mark.parametrize(
    ("owner", "adopted"),
    [(OPERATION, True), ("op-someone-else", False)],
)
def test_already_exists_fault_adopts_only_this_operations_cluster(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], owner: str, adopted: bool
) -> None:
    # GIVEN a concurrent run that restores the same name between our describe and our restore
    def concurrent_restore(**_: Any) -> Any:
        make_cluster(clients, TARGET, tags=managed_tags(owner), instances=0)
        from tests.functional.replace_world import client_error

        return client_error("RestoreDBClusterFromSnapshot", "DBClusterAlreadyExistsFault")()

    clients.add_hook("before-call.rds.RestoreDBClusterFromSnapshot", concurrent_restore)
    # WHEN the restore runs into DBClusterAlreadyExistsFault
    if adopted:
        output = dispatcher.handle(restore_event(target_world, target_exists=False))
        # THEN this operation's cluster is adopted
        assert output["cluster_id"] == TARGET
    else:
        # THEN another's is refused
        with pytest.raises(UnsafeTarget, match="op-someone-else"):
            dispatcher.handle(restore_event(target_world, target_exists=False))


def test_throttling_that_outlasts_botocore_is_retryable_and_restores_nothing(
    dispatcher: Any, clients: Any, target_world: dict[str, Any]
) -> None:
    always_fail(clients, "RestoreDBClusterFromSnapshot", "Throttling", "Rate exceeded")
    with pytest.raises(Retryable, match="Rate exceeded"):
        dispatcher.handle(restore_event(target_world, target_exists=False))
    assert describe(clients, TARGET) is None


def test_a_missing_copy_is_an_aws_error_naming_the_snapshot(
    dispatcher: Any, clients: Any, target_world: dict[str, Any]
) -> None:
    world = {"copy": {**target_world["copy"], "identifier": "ar-does-not-exist"}}
    with pytest.raises(AwsCallFailed, match="DBClusterSnapshotNotFoundFault"):
        dispatcher.handle(restore_event(world, target_exists=False))
    assert describe(clients, TARGET) is None


def test_a_copy_output_without_a_snapshot_is_refused_before_any_call(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    world = {"copy": {"status": "available"}}
    with pytest.raises(ValidationError, match=r"copy\.identifier"):
        dispatcher.handle(restore_event(world, target_exists=False))
    assert mutations.names == []
