"""delete_target and check_delete_status under moto: the delete-first strategy, safely."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dispatcher.errors import PollTimeout, Retryable
from dispatcher.handler import Dispatcher
from dispatcher.settings import Settings
from refresh.errors import UnsafeTarget
from steps.lib import names
from tests.functional.replace_world import (
    OPERATION,
    TARGET,
    TARGET_REGION,
    always_fail,
    describe,
    event,
    fail_once,
    faithful_rds,
    instance_ids,
    make_cluster,
    managed_tags,
    mutations,
    overlay,
    rds,
    request,
    snapshot_facts,
    target_world,
)

__all__ = ["faithful_rds", "mutations", "overlay", "target_world"]

FINAL_SNAPSHOT = names.final_snapshot_id(TARGET, OPERATION)


def delete_event(**request_fields: Any) -> dict[str, Any]:
    return event(
        "delete_target",
        request=request(strategy="delete-first", **request_fields),
        snapshot=snapshot_facts(target_exists=True),
    )


def check_event(delete: dict[str, Any], **request_fields: Any) -> dict[str, Any]:
    return event(
        "check_delete_status", request=request(strategy="delete-first", **request_fields), delete=delete
    )


def snapshot_ids(clients: Any) -> list[str]:
    return [
        s["DBClusterSnapshotIdentifier"]
        for s in rds(clients).describe_db_cluster_snapshots()["DBClusterSnapshots"]
    ]


def test_instances_go_first_then_the_cluster_with_a_final_snapshot(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any, store: Any
) -> None:
    # GIVEN a managed target with a writer and a reader
    make_cluster(clients, TARGET, instances=2)
    mutations.clear()
    # WHEN delete_target runs
    output = dispatcher.handle(delete_event())
    # THEN both instances were deleted before the cluster, which leaves a final snapshot
    assert mutations.names == ["DeleteDBInstance", "DeleteDBInstance", "DeleteDBCluster"]
    assert mutations.of("DeleteDBCluster")[0] == {
        "DBClusterIdentifier": TARGET,
        "FinalDBSnapshotIdentifier": FINAL_SNAPSHOT,
    }
    assert sorted(output["instances_deleted"]) == [f"{TARGET}-instance-1", f"{TARGET}-instance-2"]
    assert describe(clients, TARGET) is None
    assert FINAL_SNAPSHOT in snapshot_ids(clients)
    # AND (moto deletes at once) the name is free: the restore may follow
    assert output["complete"] is True
    assert output["phase"] == "deleted"
    assert output["final_snapshot_id"] == FINAL_SNAPSHOT
    events = [i["event"] for i in store.audit_trail(OPERATION)]
    assert events.count("instance_deleted") == 2
    assert "cluster_delete_started" in events


def test_the_writer_is_deleted_last(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, TARGET, instances=3)
    writer = next(m for m in describe(clients, TARGET)["DBClusterMembers"] if m["IsClusterWriter"])  # type: ignore[index]
    mutations.clear()
    dispatcher.handle(delete_event())
    assert mutations.of("DeleteDBInstance")[-1]["DBInstanceIdentifier"] == writer["DBInstanceIdentifier"]


def test_skip_final_snapshot_deletes_without_one(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, TARGET)
    before = snapshot_ids(clients)
    output = dispatcher.handle(delete_event(skip_final_snapshot=True))
    assert mutations.of("DeleteDBCluster")[0] == {"DBClusterIdentifier": TARGET, "SkipFinalSnapshot": True}
    assert output["final_snapshot_id"] is None
    assert snapshot_ids(clients) == before


def test_a_cluster_refused_while_instances_delete_is_deleted_by_the_next_poll(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], overlay: Any, mutations: Any
) -> None:
    # GIVEN RDS refuses the cluster's deletion once (its instances are still on their way out)
    make_cluster(clients, TARGET, instances=1)
    fail_once(clients, "DeleteDBCluster", "InvalidDBClusterStateFault", "still contains DB instances")
    mutations.clear()
    # WHEN delete_target runs
    first = dispatcher.handle(delete_event())
    # THEN the instance is gone, the cluster stays, and the loop waits
    assert first["complete"] is False
    assert first["phase"] == "deleting-instances"
    assert describe(clients, TARGET) is not None
    assert instance_ids(clients, TARGET) == []
    # WHEN the next poll runs
    second = dispatcher.handle(check_event(first))
    # THEN it deletes the cluster, remembers the instances already deleted, and is done
    assert second["complete"] is True
    assert describe(clients, TARGET) is None
    assert second["instances_deleted"] == [f"{TARGET}-instance-1"]
    assert second["polls"] == 2
    assert mutations.names == ["DeleteDBInstance", "DeleteDBCluster", "DeleteDBCluster"]


def test_a_deleting_target_is_waited_for_until_it_is_gone(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], overlay: Any, mutations: Any
) -> None:
    # GIVEN a target already being deleted (an earlier attempt, or someone else)
    make_cluster(clients, TARGET, instances=0)
    overlay.clusters[TARGET] = {"Status": "deleting"}
    mutations.clear()
    # WHEN delete_target and a poll run while RDS is still deleting
    first = dispatcher.handle(delete_event())
    second = dispatcher.handle(check_event(first))
    # THEN nothing is called, and the loop waits with a growing interval
    assert mutations.names == []
    assert (first["phase"], first["complete"]) == ("deleting-cluster", False)
    assert second["complete"] is False
    assert second["next_poll_seconds"] > first["next_poll_seconds"]
    # WHEN the cluster is finally gone
    overlay.clusters.clear()
    rds(clients).delete_db_cluster(DBClusterIdentifier=TARGET, SkipFinalSnapshot=True)
    # THEN the poll reports completion
    assert dispatcher.handle(check_event(second))["complete"] is True


def test_a_target_already_gone_is_complete_at_once(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    output = dispatcher.handle(delete_event())
    assert output["complete"] is True
    assert output["status"] == "deleted"
    assert mutations.names == []


def test_a_target_holding_this_operations_restore_is_never_deleted(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # A redriven execution must not delete the cluster this very operation restored.
    make_cluster(clients, TARGET, tags=managed_tags(OPERATION))
    mutations.clear()
    output = dispatcher.handle(delete_event())
    assert output["complete"] is True
    assert "this operation's restored cluster" in output["note"]
    assert mutations.names == []
    assert describe(clients, TARGET) is not None


def test_an_unmanaged_target_is_refused_and_untouched(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, TARGET, tags=[], instances=2)
    mutations.clear()
    with pytest.raises(UnsafeTarget) as caught:
        dispatcher.handle(delete_event())
    assert caught.value.details["rule"] == "managed-or-allowed"
    assert TARGET in str(caught.value)
    assert mutations.names == []
    assert len(instance_ids(clients, TARGET)) == 2


def test_an_untagged_target_matching_the_allowed_pattern_is_deleted(
    registry: Any, clients: Any, store: Any, target_world: dict[str, Any]
) -> None:
    app = Dispatcher(
        registry=registry, settings=Settings(allowed_target_pattern=r"orders-(dev|stg)(-instance-\d+)?"), clients=clients
    )
    app._store = store
    make_cluster(clients, TARGET, tags=[])
    assert app.handle(delete_event())["complete"] is True
    assert describe(clients, TARGET) is None


def test_deletion_protection_refuses_unless_the_request_allows_turning_it_off(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any, store: Any
) -> None:
    # GIVEN a managed target with deletion protection
    make_cluster(clients, TARGET, protected=True)
    mutations.clear()
    # WHEN the request does not allow turning it off: refused, untouched
    with pytest.raises(UnsafeTarget, match="deletion protection") as caught:
        dispatcher.handle(delete_event())
    assert caught.value.details["rule"] == "deletion-protection"
    assert mutations.names == []
    # WHEN it does: protection is turned off (audited), then the target is deleted
    output = dispatcher.handle(delete_event(allow_disable_deletion_protection=True))
    assert output["complete"] is True
    assert mutations.names[0] == "ModifyDBCluster"
    assert mutations.of("ModifyDBCluster")[0]["DeletionProtection"] is False
    assert describe(clients, TARGET) is None
    audited = [i for i in store.audit_trail(OPERATION) if i["event"] == "deletion_protection_disabled"]
    assert audited and audited[0]["cluster_id"] == TARGET


def test_the_source_cluster_is_never_deleted(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN an in-region refresh whose snapshot came from the target itself, managed and unprotected
    make_cluster(clients, TARGET)
    mutations.clear()
    same_region = request(strategy="delete-first", source_region=TARGET_REGION)
    snapshot = {**snapshot_facts(target_exists=True), "source_cluster_id": TARGET}
    # WHEN delete_target runs: refused by the never-the-source rule
    with pytest.raises(UnsafeTarget) as caught:
        dispatcher.handle(event("delete_target", request=same_region, snapshot=snapshot))
    assert caught.value.details["rule"] == "never-the-source"
    assert mutations.names == []


def test_the_rules_are_applied_again_at_every_poll_that_deletes(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN the first attempt deleted the instance but RDS refused the cluster
    make_cluster(clients, TARGET)
    fail_once(clients, "DeleteDBCluster", "InvalidDBClusterStateFault")
    first = dispatcher.handle(delete_event())
    # WHEN someone turns deletion protection on before the next poll
    rds(clients).modify_db_cluster(DBClusterIdentifier=TARGET, DeletionProtection=True, ApplyImmediately=True)
    mutations.clear()
    # THEN the poll refuses to delete it
    with pytest.raises(UnsafeTarget, match="deletion protection"):
        dispatcher.handle(check_event(first))
    assert mutations.names == []
    assert describe(clients, TARGET) is not None


def test_throttling_is_retryable_and_the_retry_finishes_the_job(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, TARGET, instances=2)
    stop_throttling = always_fail(clients, "DeleteDBCluster", "Throttling", "Rate exceeded")
    with pytest.raises(Retryable):
        dispatcher.handle(delete_event())
    assert instance_ids(clients, TARGET) == []
    stop_throttling()
    assert dispatcher.handle(delete_event())["complete"] is True


def test_waiting_past_the_maximum_raises_poll_timeout(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], overlay: Any
) -> None:
    make_cluster(clients, TARGET, instances=0)
    overlay.clusters[TARGET] = {"Status": "deleting"}
    first = dispatcher.handle(delete_event())
    long_ago = (datetime.now(timezone.utc) - timedelta(days=2)).isoformat()
    with pytest.raises(PollTimeout, match=f"deletion of {TARGET}"):
        dispatcher.handle(check_event({**first, "started_at": long_ago}))
