"""check_restore_status under moto: instances added once the cluster is up, failures, timeouts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dispatcher.errors import PollTimeout
from refresh.errors import RestoreFailed, UnsafeTarget
from refresh.request import MANAGED_TAG, OPERATION_TAG
from steps.lib import names
from tests.functional.replace_world import (
    OPERATION,
    TARGET,
    event,
    faithful_rds,
    instance_ids,
    mutations,
    overlay,
    rds,
    request,
    snapshot_facts,
    target_world,
)

__all__ = ["faithful_rds", "mutations", "overlay", "target_world"]

WRITER = names.instance_id(TARGET, OPERATION, 0)
READERS = [names.instance_id(TARGET, OPERATION, i) for i in (1, 2)]


def start_restore(
    dispatcher: Any, world: dict[str, Any], **fields: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    req = request(**fields)
    restore = dispatcher.handle(
        event(
            "restore_snapshot", request=req, snapshot=snapshot_facts(target_exists=False), copy=world["copy"]
        )
    )
    return req, restore


def check(dispatcher: Any, req: dict[str, Any], restore: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = dispatcher.handle(event("check_restore_status", request=req, restore=restore))
    return result


def test_writer_and_readers_are_added_once_the_cluster_is_available_then_it_is_complete(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN a restore with two readers, the cluster still creating (as RDS reports right after it)
    req, restore = start_restore(dispatcher, target_world, reader_count=2, instance_class="db.r6g.xlarge")
    assert restore["status"] == "creating"
    assert instance_ids(clients, TARGET) == []
    # WHEN the cluster is available at the next poll
    output = check(dispatcher, req, restore)
    # THEN the writer and both readers exist in the cluster, tagged as this operation's
    assert instance_ids(clients, TARGET) == sorted([WRITER, *READERS])
    calls = mutations.of("CreateDBInstance")
    assert [c["DBInstanceIdentifier"] for c in calls] == [WRITER, *READERS]
    assert {c["DBClusterIdentifier"] for c in calls} == {TARGET}
    assert {c["Engine"] for c in calls} == {"aurora-postgresql"}
    assert {c["DBInstanceClass"] for c in calls} == {"db.r6g.xlarge"}
    assert [c["PromotionTier"] for c in calls] == [0, 1, 1]
    writer_tags = {t["Key"]: t["Value"] for t in calls[0]["Tags"]}
    assert writer_tags[MANAGED_TAG] == "true"
    assert writer_tags[OPERATION_TAG] == OPERATION
    # AND (moto makes instances available at once) the restore is complete, with its endpoints
    assert output["complete"] is True
    assert output["next_poll_seconds"] == 0
    assert output["instance_statuses"] == dict.fromkeys([WRITER, *READERS], "available")
    assert output["endpoint"].startswith(f"{TARGET}.cluster-")
    assert output["reader_endpoint"].startswith(f"{TARGET}.cluster-ro-")
    assert output["port"] == 5432
    assert output["polls"] == 2
    assert output["started_at"] == restore["started_at"]


def test_the_stack_default_instance_class_is_used_when_the_request_has_none(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    req, restore = start_restore(dispatcher, target_world)
    check(dispatcher, req, restore)
    assert [c["DBInstanceClass"] for c in mutations.of("CreateDBInstance")] == ["db.r6g.large"]


def test_while_the_cluster_is_creating_nothing_is_added_and_polls_back_off(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], overlay: Any, mutations: Any
) -> None:
    req, restore = start_restore(dispatcher, target_world)
    overlay.clusters[TARGET] = {"Status": "creating"}
    mutations.clear()
    waits = []
    for _ in range(3):
        restore = check(dispatcher, req, restore)
        assert restore["complete"] is False
        assert restore["status"] == "creating"
        waits.append(restore["next_poll_seconds"])
    assert mutations.names == []
    assert restore["instance_statuses"] == {WRITER: "not-created"}
    assert waits == sorted(waits) and waits[0] < waits[-1]
    assert all(30 <= w <= 900 for w in waits)


def test_instances_still_creating_keep_the_restore_incomplete(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], overlay: Any
) -> None:
    req, restore = start_restore(dispatcher, target_world, reader_count=1)
    overlay.instances[READERS[0]] = {"DBInstanceStatus": "creating"}
    output = check(dispatcher, req, restore)
    assert output["complete"] is False
    assert output["instance_statuses"] == {WRITER: "available", READERS[0]: "creating"}
    assert output["next_poll_seconds"] >= 30


@pytest.mark.parametrize(
    "status",
    ["failed", "inaccessible-encryption-credentials", "incompatible-restore", "incompatible-parameters"],
)
def test_a_failed_cluster_raises_restore_failed_with_its_status(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], overlay: Any, mutations: Any, status: str
) -> None:
    req, restore = start_restore(dispatcher, target_world)
    overlay.clusters[TARGET] = {"Status": status}
    mutations.clear()
    with pytest.raises(RestoreFailed) as caught:
        check(dispatcher, req, restore)
    assert status in str(caught.value)
    assert TARGET in str(caught.value)
    assert caught.value.details["status"] == status
    assert mutations.names == []


def test_a_failed_instance_raises_restore_failed_naming_it(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], overlay: Any
) -> None:
    req, restore = start_restore(dispatcher, target_world)
    overlay.instances[WRITER] = {"DBInstanceStatus": "incompatible-parameters"}
    with pytest.raises(RestoreFailed, match=f"instance {WRITER} .* incompatible-parameters"):
        check(dispatcher, req, restore)


def test_a_vanished_cluster_raises_restore_failed(
    dispatcher: Any, clients: Any, target_world: dict[str, Any]
) -> None:
    req, restore = start_restore(dispatcher, target_world)
    rds(clients).delete_db_cluster(DBClusterIdentifier=TARGET, SkipFinalSnapshot=True)
    with pytest.raises(RestoreFailed, match="no longer exists"):
        check(dispatcher, req, restore)


def test_waiting_past_the_maximum_raises_poll_timeout_but_a_finished_restore_does_not(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], overlay: Any
) -> None:
    # GIVEN a restore that started 25 hours ago (the default limit is 24)
    req, restore = start_restore(dispatcher, target_world)
    long_ago = (datetime.now(timezone.utc) - timedelta(hours=25)).isoformat()
    restore = {**restore, "started_at": long_ago, "polls": 60}
    overlay.clusters[TARGET] = {"Status": "creating"}
    # WHEN it is still creating: PollTimeout, naming what it waited for
    with pytest.raises(PollTimeout, match=f"{TARGET} .*creating"):
        check(dispatcher, req, restore)
    # WHEN it is done at that very poll: complete, no timeout
    overlay.clusters.clear()
    assert check(dispatcher, req, restore)["complete"] is True


def test_an_instance_id_held_by_someone_else_is_refused(
    dispatcher: Any, clients: Any, target_world: dict[str, Any]
) -> None:
    # GIVEN an instance under this operation's writer id, not made by it (in another cluster)
    req, restore = start_restore(dispatcher, target_world)
    client = rds(clients)
    client.create_db_cluster(
        DBClusterIdentifier="other",
        Engine="aurora-postgresql",
        MasterUsername="postgres",
        MasterUserPassword="not-a-real-password-1",
    )
    client.create_db_instance(
        DBInstanceIdentifier=WRITER,
        DBClusterIdentifier="other",
        Engine="aurora-postgresql",
        DBInstanceClass="db.r6g.large",
    )
    # WHEN the poll would add the writer: refused, naming the instance
    with pytest.raises(UnsafeTarget, match=f"DB instance {WRITER}"):
        check(dispatcher, req, restore)
    assert instance_ids(clients, TARGET) == []


def test_a_cluster_not_restored_by_this_operation_gets_no_instances(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    _req, restore = start_restore(dispatcher, target_world)
    mutations.clear()
    other = request(operation_id="op-other")
    with pytest.raises(UnsafeTarget, match="not restored by operation op-other"):
        check(dispatcher, other, restore)
    assert mutations.names == []
