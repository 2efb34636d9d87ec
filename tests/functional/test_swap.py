"""swap_clusters and check_swap_status under moto: renames, waits, undo, and the old cluster's end."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dispatcher.errors import PollTimeout, Retryable
from dispatcher.handler import Dispatcher
from dispatcher.settings import Settings
from refresh.errors import SwapFailed, UnsafeTarget
from refresh.request import OPERATION_TAG
from steps.lib import names
from steps.lib.clusters import RETIRED_BY_TAG, RETIRED_FROM_TAG
from tests.functional.replace_world import (
    OPERATION,
    TARGET,
    TARGET_REGION,
    client_error,
    cluster_ids,
    describe,
    event,
    faithful_rds,
    instance_ids,
    make_cluster,
    managed_tags,
    mutations,
    overlay,
    rds,
    request,
    snapshot_facts,
    tags,
    target_world,
)

__all__ = ["faithful_rds", "mutations", "overlay", "target_world"]

NEW = names.temporary_cluster_id(TARGET, OPERATION)
RETIRED = names.retired_cluster_id(TARGET, OPERATION)
FINAL_SNAPSHOT = names.final_snapshot_id(TARGET, OPERATION)
NEW_WRITER = names.instance_id(TARGET, OPERATION, 0)
OLD_INSTANCES = [f"{TARGET}-instance-1", f"{TARGET}-instance-2"]


class Swap:
    """A target and this operation's restored cluster beside it, and the calls of the swap loop."""

    def __init__(self, dispatcher: Any, world: dict[str, Any], **request_fields: Any) -> None:
        self.dispatcher = dispatcher
        self.request = request(**request_fields)
        self.snapshot = snapshot_facts(target_exists=True)
        restore = dispatcher.handle(
            event("restore_snapshot", request=self.request, snapshot=self.snapshot, copy=world["copy"])
        )
        self.restore = dispatcher.handle(event("check_restore_status", request=self.request, restore=restore))
        assert self.restore["complete"] is True
        assert self.restore["cluster_id"] == NEW

    def start(self, **overrides: Any) -> dict[str, Any]:
        """swap_clusters."""
        result: dict[str, Any] = self.dispatcher.handle(
            event(
                "swap_clusters",
                request=self.request,
                snapshot=self.snapshot,
                restore=self.restore,
                **overrides,
            )
        )
        return result

    def poll(self, swap: dict[str, Any]) -> dict[str, Any]:
        """check_swap_status after ``swap``."""
        result: dict[str, Any] = self.dispatcher.handle(
            event(
                "check_swap_status",
                request=self.request,
                snapshot=self.snapshot,
                restore=self.restore,
                swap=swap,
            )
        )
        return result


@pytest.fixture
def swap(dispatcher: Any, clients: Any, target_world: dict[str, Any]) -> Swap:
    """A managed target with two instances, and this operation's available cluster beside it."""
    make_cluster(clients, TARGET, instances=2)
    return Swap(dispatcher, target_world)


def snapshot_ids(clients: Any) -> list[str]:
    return [
        s["DBClusterSnapshotIdentifier"]
        for s in rds(clients).describe_db_cluster_snapshots()["DBClusterSnapshots"]
    ]


def test_full_swap_puts_the_new_cluster_under_the_name_and_deletes_the_old_one(
    swap: Swap, clients: Any, mutations: Any, store: Any
) -> None:
    mutations.clear()
    # WHEN the swap starts: the old target is tagged and renamed away
    first = swap.start()
    assert first["phase"] == "renaming-old-away"
    assert (first["old_cluster_id"], first["new_cluster_id"]) == (RETIRED, NEW)
    assert first["complete"] is False
    assert first["next_poll_seconds"] == 30  # the name is in flux: poll at the shortest interval
    retired = describe(clients, RETIRED)
    assert retired is not None
    assert tags(clients, retired)[RETIRED_BY_TAG] == OPERATION
    assert tags(clients, retired)[RETIRED_FROM_TAG] == TARGET
    # WHEN the next poll finds the rename done: the new cluster takes the name
    second = swap.poll(first)
    assert second["phase"] == "renaming-new-in"
    assert second["next_poll_seconds"] == 30
    holder = describe(clients, TARGET)
    assert holder is not None
    assert tags(clients, holder)[OPERATION_TAG] == OPERATION
    assert instance_ids(clients, TARGET) == [NEW_WRITER]
    # WHEN the next poll finds that done: the old cluster goes, instances first, final snapshot kept
    third = swap.poll(second)
    assert third["complete"] is True
    assert third["phase"] == "complete"
    assert third["final_snapshot_id"] == FINAL_SNAPSHOT
    assert third["endpoint"].startswith(f"{TARGET}.cluster-")
    assert cluster_ids(clients) == [TARGET]
    assert FINAL_SNAPSHOT in snapshot_ids(clients)
    assert instance_ids(clients) == [NEW_WRITER]
    # AND the calls came in exactly this order
    assert mutations.names == [
        "AddTagsToResource",
        "ModifyDBCluster",
        "ModifyDBCluster",
        "DeleteDBInstance",
        "DeleteDBInstance",
        "DeleteDBCluster",
    ]
    renames = [
        (c["DBClusterIdentifier"], c["NewDBClusterIdentifier"]) for c in mutations.of("ModifyDBCluster")
    ]
    assert renames == [(TARGET, RETIRED), (NEW, TARGET)]
    assert {c["ApplyImmediately"] for c in mutations.of("ModifyDBCluster")} == {True}
    assert mutations.of("DeleteDBCluster") == [
        {"DBClusterIdentifier": RETIRED, "FinalDBSnapshotIdentifier": FINAL_SNAPSHOT}
    ]
    events = [i["event"] for i in store.audit_trail(OPERATION)]
    assert events.count("cluster_renamed") == 2


def test_skip_final_snapshot_deletes_the_old_cluster_without_one(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, TARGET)
    loop = Swap(dispatcher, target_world, skip_final_snapshot=True)
    loop.poll(loop.poll(loop.start()))
    assert mutations.of("DeleteDBCluster") == [{"DBClusterIdentifier": RETIRED, "SkipFinalSnapshot": True}]


def test_each_call_waits_while_rds_is_still_renaming(
    swap: Swap, clients: Any, overlay: Any, mutations: Any
) -> None:
    # GIVEN the old target's rename still under way
    first = swap.start()
    overlay.clusters[RETIRED] = {"Status": "renaming"}
    mutations.clear()
    # WHEN polls come: nothing is done, and they stay close together
    waiting = swap.poll(swap.poll(first))
    assert mutations.names == []
    assert waiting["phase"] == "renaming-old-away"
    assert waiting["next_poll_seconds"] == 30
    assert RETIRED in waiting["note"]
    # WHEN the rename is done: the new cluster takes the name
    overlay.clusters.clear()
    assert swap.poll(waiting)["phase"] == "renaming-new-in"
    # AND while the new cluster is renaming under the target name, the old one is kept
    overlay.clusters[TARGET] = {"Status": "renaming"}
    mutations.clear()
    renaming = swap.poll({**waiting, "phase": "renaming-new-in"})
    assert renaming["phase"] == "renaming-new-in"
    assert mutations.names == []
    assert describe(clients, RETIRED) is not None


def test_a_call_whose_input_is_behind_or_ahead_of_the_world_waits_one_poll(
    swap: Swap, clients: Any, mutations: Any
) -> None:
    # The input says the old target is being renamed, but RDS does not show it yet: no new action.
    mutations.clear()
    behind = swap.poll(
        {"phase": "renaming-old-away", "polls": 0, "started_at": datetime.now(timezone.utc).isoformat()}
    )
    assert behind["phase"] == "renaming-old-away"
    assert mutations.names == []
    # The world is ahead of the input (a lost output): report it, act next poll.
    first = swap.start()
    mutations.clear()
    ahead = swap.start()
    assert ahead["phase"] == "renaming-old-away"
    assert mutations.names == []
    assert swap.poll(ahead)["phase"] == "renaming-new-in"
    assert first["new_cluster_id"] == NEW


def test_the_new_cluster_not_yet_available_holds_the_swap_before_anything_is_renamed(
    swap: Swap, clients: Any, overlay: Any, mutations: Any
) -> None:
    overlay.clusters[NEW] = {"Status": "modifying"}
    mutations.clear()
    output = swap.start()
    assert output["phase"] == "starting"
    assert mutations.names == []
    assert describe(clients, TARGET) is not None


def test_a_failed_second_rename_renames_the_old_target_back_and_raises_swap_failed(
    swap: Swap, clients: Any, mutations: Any
) -> None:
    # GIVEN RDS refuses to rename the new cluster into place
    def refuse_new_in(params: dict[str, Any], **kwargs: Any) -> Any:
        if params["body"].get("DBClusterIdentifier") == NEW:
            return client_error("ModifyDBCluster", "InvalidDBClusterStateFault", "cluster is busy")()
        return None

    first = swap.start()
    rds(clients).meta.events.register("before-call.rds.ModifyDBCluster", refuse_new_in)
    mutations.clear()
    # WHEN the poll tries the second rename
    with pytest.raises(SwapFailed) as caught:
        swap.poll(first)
    # THEN the old target is back under its name, untagged, and the new cluster waits beside it
    assert "renamed back" in str(caught.value)
    assert "InvalidDBClusterStateFault" in str(caught.value)
    back = describe(clients, TARGET)
    assert back is not None
    assert tags(clients, back).get(OPERATION_TAG) == "op-earlier"
    assert RETIRED_BY_TAG not in tags(clients, back)
    assert sorted(instance_ids(clients, TARGET)) == OLD_INSTANCES
    assert cluster_ids(clients) == sorted([TARGET, NEW])


def test_an_undo_whose_rename_back_is_refused_keeps_the_retired_tags_the_runbook_finds(
    swap: Swap, clients: Any, mutations: Any
) -> None:
    # GIVEN RDS refuses every further rename once the old target was renamed away
    def refuse_renames(params: dict[str, Any], **kwargs: Any) -> Any:
        if params["body"].get("NewDBClusterIdentifier"):
            return client_error("ModifyDBCluster", "InvalidDBClusterStateFault", "cluster is busy")()
        return None

    first = swap.start()
    rds(clients).meta.events.register("before-call.rds.ModifyDBCluster", refuse_renames)
    # WHEN the second rename fails and the undo's rename back fails too
    with pytest.raises(SwapFailed) as caught:
        swap.poll(first)
    # THEN the error says the old target stays renamed away, and that cluster still carries the
    # retired tags: the runbook's query (by aurora-restore:retired-by) and the clean-up find it
    assert "failed too" in str(caught.value) and RETIRED in str(caught.value)
    retired = describe(clients, RETIRED)
    assert retired is not None
    assert tags(clients, retired).get(RETIRED_BY_TAG) == OPERATION
    assert tags(clients, retired).get(RETIRED_FROM_TAG) == TARGET
    assert describe(clients, TARGET) is None


def test_throttling_on_the_second_rename_is_retried_without_undoing_the_first(
    swap: Swap, clients: Any
) -> None:
    first = swap.start()
    throttled: list[int] = []

    def throttle_once(params: dict[str, Any], **kwargs: Any) -> Any:
        if params["body"].get("DBClusterIdentifier") == NEW and not throttled:
            throttled.append(1)
            return client_error("ModifyDBCluster", "Throttling", "Rate exceeded")()
        return None

    rds(clients).meta.events.register("before-call.rds.ModifyDBCluster", throttle_once)
    with pytest.raises(Retryable):
        swap.poll(first)
    assert describe(clients, RETIRED) is not None  # not undone
    assert swap.poll(first)["phase"] == "renaming-new-in"  # Step Functions' retry, same input


def test_a_retired_name_taken_by_another_cluster_fails_before_anything_changes(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, TARGET)
    make_cluster(clients, RETIRED, tags=[], instances=0)
    loop = Swap(dispatcher, target_world)
    mutations.clear()
    with pytest.raises(SwapFailed, match=f"name {RETIRED}.*left untouched"):
        loop.start()
    assert mutations.names == []


def test_a_retired_name_still_held_by_a_deleting_cluster_is_waited_for(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], overlay: Any, mutations: Any
) -> None:
    make_cluster(clients, TARGET)
    make_cluster(clients, RETIRED, tags=[], instances=0)
    overlay.clusters[RETIRED] = {"Status": "deleting"}
    loop = Swap(dispatcher, target_world)
    mutations.clear()
    output = loop.start()
    assert output["phase"] == "starting"
    assert "being deleted" in output["note"]
    assert mutations.names == []


def test_a_target_name_taken_by_someone_else_between_the_renames_stops_the_swap(
    swap: Swap, clients: Any, mutations: Any
) -> None:
    make_cluster(clients, "intruder", tags=[], instances=0)
    first = swap.start()
    # Someone puts another cluster under the target name in the gap between the renames.
    rds(clients).modify_db_cluster(
        DBClusterIdentifier="intruder", NewDBClusterIdentifier=TARGET, ApplyImmediately=True
    )
    mutations.clear()
    with pytest.raises(SwapFailed, match="appeared under the target name"):
        swap.poll(first)
    assert mutations.names == []
    assert describe(clients, RETIRED) is not None
    assert describe(clients, NEW) is not None


def test_a_stopped_target_fails_the_swap_with_nothing_changed(
    swap: Swap, clients: Any, overlay: Any, mutations: Any
) -> None:
    overlay.clusters[TARGET] = {"Status": "stopped"}
    mutations.clear()
    with pytest.raises(SwapFailed, match="stopped"):
        swap.start()
    assert mutations.names == []


def test_a_target_that_vanished_lets_the_new_cluster_take_the_name(
    swap: Swap, clients: Any, mutations: Any
) -> None:
    for instance in OLD_INSTANCES:
        rds(clients).delete_db_instance(DBInstanceIdentifier=instance, SkipFinalSnapshot=True)
    rds(clients).delete_db_cluster(DBClusterIdentifier=TARGET, SkipFinalSnapshot=True)
    mutations.clear()
    first = swap.start()
    assert first["phase"] == "renaming-old-away"
    assert mutations.names == []
    second = swap.poll(first)
    # With no old cluster to delete, the swap is complete once the name is taken.
    assert second["complete"] is True
    assert second["old_cluster_id"] is None
    assert second["final_snapshot_id"] is None
    assert [c["NewDBClusterIdentifier"] for c in mutations.of("ModifyDBCluster")] == [TARGET]


def test_no_swap_needed_completes_at_once(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    loop = Swap.__new__(Swap)
    loop.dispatcher = dispatcher
    loop.request = request()
    loop.snapshot = snapshot_facts(target_exists=False)
    loop.restore = {"cluster_id": TARGET, "swap_required": False}
    mutations.clear()
    output = loop.start()
    assert output["complete"] is True
    assert mutations.names == []


def test_an_unmanaged_target_is_never_renamed(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, TARGET, tags=[])
    loop = Swap(dispatcher, target_world)
    mutations.clear()
    with pytest.raises(UnsafeTarget) as caught:
        loop.start()
    assert caught.value.details["rule"] == "managed-or-allowed"
    assert mutations.names == []
    assert describe(clients, TARGET) is not None


def test_a_protected_target_is_renamed_only_when_the_request_allows_turning_protection_off(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, TARGET, protected=True)
    refused = Swap(dispatcher, target_world)
    mutations.clear()
    with pytest.raises(UnsafeTarget, match="deletion protection"):
        refused.start()
    assert mutations.names == []

    allowed = Swap(dispatcher, target_world, allow_disable_deletion_protection=True)
    output = allowed.poll(allowed.poll(allowed.start()))
    assert output["complete"] is True
    assert mutations.of("ModifyDBCluster")[0] == {
        "DBClusterIdentifier": TARGET,
        "DeletionProtection": False,
        "ApplyImmediately": True,
    }


def test_the_source_cluster_is_never_renamed(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, TARGET)
    loop = Swap(dispatcher, target_world, source_region=TARGET_REGION)
    loop.snapshot = {**loop.snapshot, "source_cluster_id": TARGET}
    mutations.clear()
    with pytest.raises(UnsafeTarget) as caught:
        loop.start()
    assert caught.value.details["rule"] == "never-the-source"
    assert mutations.names == []


def test_an_old_target_allowed_by_pattern_is_judged_under_its_old_name_when_deleted(
    registry: Any, clients: Any, store: Any, target_world: dict[str, Any]
) -> None:
    # GIVEN an untagged target the stack allows by pattern (the retired name does not match it)
    app = Dispatcher(
        registry=registry, settings=Settings(allowed_target_pattern=r"orders-(dev|stg)(-instance-\d+)?"), clients=clients
    )
    app._store = store
    make_cluster(clients, TARGET, tags=[])
    loop = Swap(app, target_world)
    # WHEN the swap runs to the end
    output = loop.poll(loop.poll(loop.start()))
    # THEN the old cluster was deleted: the rules judged it as the target it was
    assert output["complete"] is True
    assert cluster_ids(clients) == [TARGET]


def test_protection_turned_on_after_the_rename_stops_the_old_clusters_deletion(
    swap: Swap, clients: Any, mutations: Any
) -> None:
    second = swap.poll(swap.start())
    rds(clients).modify_db_cluster(
        DBClusterIdentifier=RETIRED, DeletionProtection=True, ApplyImmediately=True
    )
    mutations.clear()
    with pytest.raises(UnsafeTarget, match=f"now named {RETIRED}"):
        swap.poll(second)
    assert mutations.names == []
    assert describe(clients, RETIRED) is not None


def test_old_cluster_deletion_refused_while_instances_settle_is_retried_by_the_next_poll(
    swap: Swap, clients: Any, overlay: Any, mutations: Any
) -> None:
    second = swap.poll(swap.start())
    refused: list[int] = []

    def refuse_once(**kwargs: Any) -> Any:
        if not refused:
            refused.append(1)
            return client_error(
                "DeleteDBCluster", "InvalidDBClusterStateFault", "instances in non-deleting state"
            )()
        return None

    rds(clients).meta.events.register("before-call.rds.DeleteDBCluster", refuse_once)
    third = swap.poll(second)
    assert third["phase"] == "deleting-old"
    assert third["complete"] is False
    assert third["next_poll_seconds"] > 30  # nobody is without a cluster now: back off
    fourth = swap.poll(third)
    assert fourth["complete"] is True
    assert cluster_ids(clients) == [TARGET]


def test_the_old_cluster_being_deleted_is_waited_for(swap: Swap, clients: Any, overlay: Any) -> None:
    second = swap.poll(swap.start())
    overlay.clusters[RETIRED] = {"Status": "deleting"}
    third = swap.poll(second)
    assert (third["phase"], third["complete"]) == ("deleting-old", False)
    assert swap.poll(third)["complete"] is False


def test_swapping_past_the_maximum_wait_raises_poll_timeout(swap: Swap, overlay: Any) -> None:
    first = swap.start()
    overlay.clusters[RETIRED] = {"Status": "renaming"}
    long_ago = (datetime.now(timezone.utc) - timedelta(days=2)).isoformat()
    with pytest.raises(PollTimeout, match="swap"):
        swap.poll({**first, "started_at": long_ago})


def test_a_new_cluster_failed_after_taking_the_name_raises_swap_failed(swap: Swap, overlay: Any) -> None:
    second = swap.poll(swap.start())
    overlay.clusters[TARGET] = {"Status": "failed"}
    with pytest.raises(SwapFailed, match="failed"):
        swap.poll(second)


def test_a_swap_never_touches_clusters_it_did_not_move(
    dispatcher: Any, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN neighbours: another managed cluster of an earlier operation and an unmanaged one
    make_cluster(clients, TARGET)
    make_cluster(clients, "orders-dev-other", tags=managed_tags("op-earlier"))
    make_cluster(clients, "billing-dev", tags=[])
    loop = Swap(dispatcher, target_world)
    mutations.clear()
    # WHEN the swap runs to the end
    loop.poll(loop.poll(loop.start()))
    # THEN only the target, the retired name and the new cluster were touched
    touched = {
        c.get("DBClusterIdentifier") or c.get("ResourceName", "").split(":")[-1] for _, c in mutations.calls
    }
    touched |= {c.get("DBInstanceIdentifier", "").rsplit("-instance-", 1)[0] for _, c in mutations.calls}
    touched.discard("")
    assert touched <= {TARGET, NEW, RETIRED}
    assert {"orders-dev-other", "billing-dev"} <= set(cluster_ids(clients))
