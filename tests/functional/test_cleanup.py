"""cleanup_after_failure under moto: what a failed run leaves behind, and what is never touched."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher import logs
from dispatcher.context import StepContext
from refresh.request import OPERATION_TAG
from steps.handle_failure.cleanup import cleanup_after_failure
from steps.lib import names
from steps.lib.clusters import RETIRED_BY_TAG
from tests.functional.replace_world import (
    EXECUTION,
    OPERATION,
    TARGET,
    TARGET_REGION,
    always_fail,
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
NEW_WRITER = names.instance_id(TARGET, OPERATION, 0)


@pytest.fixture
def failure_ctx(settings: Any, clients: Any, store: Any) -> StepContext:
    """The context the failure handler runs with: no validated request of its own."""
    return StepContext(
        event={"step": "handle_failure"},
        operation_id=OPERATION,
        settings=settings,
        aws=clients,
        store=store,
        log=logs.get_logger("test.cleanup"),
        execution_id=EXECUTION,
    )


def run_until_restored(dispatcher: Any, world: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The execution data after restore and its poll: the state a later failure leaves behind."""
    data: dict[str, Any] = {
        "request": request(**fields),
        "snapshot": snapshot_facts(target_exists=describe_target_exists(dispatcher)),
        "copy": world["copy"],
    }
    restore = dispatcher.handle(event("restore_snapshot", **data))
    data["restore"] = dispatcher.handle(
        event("check_restore_status", request=data["request"], restore=restore)
    )
    return data


def describe_target_exists(dispatcher: Any) -> bool:
    return describe(dispatcher.clients, TARGET) is not None


def failed(data: dict[str, Any], step: str = "SetupDBUsers") -> dict[str, Any]:
    """The data as HandleFailure receives it: the error under ``$.error``."""
    return {**data, "error": {"Error": "DatabaseSetupFailed", "Cause": f"{step} failed"}}


def test_nothing_to_clean_up_before_the_restore(
    failure_ctx: StepContext, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, TARGET)
    mutations.clear()
    assert cleanup_after_failure(failure_ctx, failed({"request": request()}, "CopySnapshot")) == []
    assert mutations.names == []


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"error": {"Error": "ValidationError"}},
        {"request": {"snapshot_id": "bad--id"}},
        {"request": "text"},
    ],
)
def test_data_without_a_usable_request_cleans_nothing_and_does_not_raise(
    failure_ctx: StepContext, clients: Any, data: dict[str, Any], mutations: Any
) -> None:
    assert cleanup_after_failure(failure_ctx, data) == []
    assert mutations.names == []


def test_the_temporary_cluster_is_deleted_instances_first_without_a_final_snapshot(
    dispatcher: Any, failure_ctx: StepContext, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN a swap run that restored beside the target and failed setting up users
    make_cluster(clients, TARGET, instances=2)
    data = run_until_restored(dispatcher, target_world, reader_count=1)
    assert data["restore"]["cluster_id"] == NEW
    mutations.clear()
    # WHEN the failure handler cleans up
    lines = cleanup_after_failure(failure_ctx, failed(data))
    # THEN the temporary cluster's instances, then the cluster, are gone, with no final snapshot
    assert mutations.names == ["DeleteDBInstance", "DeleteDBInstance", "DeleteDBCluster"]
    assert mutations.of("DeleteDBCluster") == [{"DBClusterIdentifier": NEW, "SkipFinalSnapshot": True}]
    assert cluster_ids(clients) == [TARGET]
    assert any(f"deleting the temporary cluster {NEW}" in line for line in lines)
    assert any(NEW_WRITER in line for line in lines)
    # AND the target is exactly as it was
    assert sorted(instance_ids(clients, TARGET)) == [f"{TARGET}-instance-1", f"{TARGET}-instance-2"]


def test_cleaning_up_twice_does_nothing_more(
    dispatcher: Any, failure_ctx: StepContext, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, TARGET)
    data = failed(run_until_restored(dispatcher, target_world))
    cleanup_after_failure(failure_ctx, data)
    mutations.clear()
    assert cleanup_after_failure(failure_ctx, data) == []
    assert mutations.names == []


def test_a_temporary_cluster_already_deleting_is_reported_not_deleted_again(
    dispatcher: Any,
    failure_ctx: StepContext,
    clients: Any,
    target_world: dict[str, Any],
    overlay: Any,
    mutations: Any,
) -> None:
    make_cluster(clients, TARGET)
    data = failed(run_until_restored(dispatcher, target_world))
    overlay.clusters[NEW] = {"Status": "deleting"}
    mutations.clear()
    assert cleanup_after_failure(failure_ctx, data) == [
        f"the temporary cluster {NEW} is already being deleted"
    ]
    assert mutations.names == []


def test_the_temporary_cluster_is_found_even_when_the_data_lost_the_restore_output(
    dispatcher: Any, failure_ctx: StepContext, clients: Any, target_world: dict[str, Any]
) -> None:
    # A restore that timed out in Lambda after RDS accepted it has no $.restore.
    make_cluster(clients, TARGET)
    data = run_until_restored(dispatcher, target_world)
    cleanup_after_failure(failure_ctx, {"request": data["request"], "error": {"Error": "Lambda.Unknown"}})
    assert cluster_ids(clients) == [TARGET]


def test_a_half_done_swap_is_put_back_and_the_temporary_cluster_removed(
    dispatcher: Any, failure_ctx: StepContext, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN a swap that renamed the old target away and then failed
    make_cluster(clients, TARGET, instances=2)
    data = run_until_restored(dispatcher, target_world)
    data["swap"] = dispatcher.handle(
        event("swap_clusters", **{k: data[k] for k in ("request", "snapshot", "restore")})
    )
    assert describe(clients, TARGET) is None
    mutations.clear()
    # WHEN the failure handler cleans up
    lines = cleanup_after_failure(failure_ctx, failed(data, "CheckSwapStatus"))
    # THEN the old target is back under its name first, without the swap's tags, then the new one goes
    assert lines[0] == f"renamed the old target {RETIRED} back to {TARGET}"
    renames = [
        (c["DBClusterIdentifier"], c["NewDBClusterIdentifier"]) for c in mutations.of("ModifyDBCluster")
    ]
    assert renames == [(RETIRED, TARGET)]
    back = describe(clients, TARGET)
    assert back is not None
    assert tags(clients, back)[OPERATION_TAG] == "op-earlier"
    assert RETIRED_BY_TAG not in tags(clients, back)
    assert sorted(instance_ids(clients, TARGET)) == [f"{TARGET}-instance-1", f"{TARGET}-instance-2"]
    assert cluster_ids(clients) == [TARGET]


def test_a_swap_past_its_second_rename_keeps_both_clusters(
    dispatcher: Any, failure_ctx: StepContext, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN a swap whose new cluster holds the name, failing before the old one was deleted
    make_cluster(clients, TARGET)
    data = run_until_restored(dispatcher, target_world)
    inputs = {k: data[k] for k in ("request", "snapshot", "restore")}
    first = dispatcher.handle(event("swap_clusters", **inputs))
    dispatcher.handle(event("check_swap_status", **inputs, swap=first))
    mutations.clear()
    # WHEN the failure handler cleans up: nothing is renamed or deleted, and it says where the old one is
    lines = cleanup_after_failure(failure_ctx, failed(data, "CheckSwapStatus"))
    assert mutations.names == []
    assert cluster_ids(clients) == sorted([TARGET, RETIRED])
    assert any(f"kept as {RETIRED}" in line for line in lines)


def test_the_old_target_still_renaming_is_left_with_an_instruction(
    dispatcher: Any,
    failure_ctx: StepContext,
    clients: Any,
    target_world: dict[str, Any],
    overlay: Any,
    mutations: Any,
) -> None:
    make_cluster(clients, TARGET)
    data = run_until_restored(dispatcher, target_world)
    dispatcher.handle(event("swap_clusters", **{k: data[k] for k in ("request", "snapshot", "restore")}))
    overlay.clusters[RETIRED] = {"Status": "renaming"}
    mutations.clear()
    lines = cleanup_after_failure(failure_ctx, failed(data))
    assert (
        lines[0] == f"the old target {RETIRED} is renaming; rename it back to {TARGET} once it is available"
    )
    assert "ModifyDBCluster" not in mutations.names


def test_a_cluster_restored_under_the_target_name_is_kept(
    dispatcher: Any, failure_ctx: StepContext, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN delete-first (or no target): the restore holds the target's name when users fail
    data = run_until_restored(dispatcher, target_world, strategy="delete-first")
    assert data["restore"]["cluster_id"] == TARGET
    mutations.clear()
    lines = cleanup_after_failure(failure_ctx, failed(data))
    assert lines == [f"kept the restored cluster {TARGET}: it holds the target's name"]
    assert mutations.names == []


def test_a_cluster_under_the_temporary_name_made_by_another_operation_is_left_alone(
    failure_ctx: StepContext, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, NEW, tags=managed_tags("op-someone-else"))
    mutations.clear()
    lines = cleanup_after_failure(failure_ctx, failed({"request": request()}))
    assert lines == [f"left {NEW} alone: operation {OPERATION} did not make it"]
    assert mutations.names == []


def test_a_garbled_restore_output_naming_an_unmanaged_cluster_touches_nothing(
    failure_ctx: StepContext, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, "billing-prod", tags=[])
    mutations.clear()
    data = failed({"request": request(), "restore": {"cluster_id": "billing-prod"}})
    assert cleanup_after_failure(failure_ctx, data) == [
        f"left billing-prod alone: operation {OPERATION} did not make it"
    ]
    assert mutations.names == []


def test_a_protected_temporary_cluster_is_left_unless_the_request_allows_turning_protection_off(
    dispatcher: Any, failure_ctx: StepContext, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    make_cluster(clients, TARGET)
    data = failed(run_until_restored(dispatcher, target_world))
    rds(clients).modify_db_cluster(DBClusterIdentifier=NEW, DeletionProtection=True, ApplyImmediately=True)
    mutations.clear()
    (line,) = cleanup_after_failure(failure_ctx, data)
    assert line.startswith(f"left the temporary cluster {NEW} alone") and "deletion protection" in line
    assert mutations.names == []

    allowed = {**data, "request": request(allow_disable_deletion_protection=True)}
    cleanup_after_failure(failure_ctx, allowed)
    assert cluster_ids(clients) == [TARGET]


def test_the_source_is_never_deleted_even_if_it_looks_like_the_temporary_cluster(
    dispatcher: Any, failure_ctx: StepContext, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN data claiming the snapshot came from the temporary cluster, in the target region
    make_cluster(clients, TARGET)
    data = failed(run_until_restored(dispatcher, target_world, source_region=TARGET_REGION))
    data["snapshot"] = {**data["snapshot"], "source_cluster_id": NEW}
    mutations.clear()
    (line,) = cleanup_after_failure(failure_ctx, data)
    assert "is the source" in line
    assert mutations.names == []


def test_a_temporary_cluster_being_renamed_is_left_alone(
    dispatcher: Any,
    failure_ctx: StepContext,
    clients: Any,
    target_world: dict[str, Any],
    overlay: Any,
    mutations: Any,
) -> None:
    make_cluster(clients, TARGET)
    data = failed(run_until_restored(dispatcher, target_world))
    overlay.clusters[NEW] = {"Status": "renaming"}
    mutations.clear()
    assert cleanup_after_failure(failure_ctx, data) == [
        f"left the temporary cluster {NEW} alone: it is being renamed"
    ]
    assert mutations.names == []


def test_an_aws_error_is_reported_as_a_line_never_raised(
    dispatcher: Any, failure_ctx: StepContext, clients: Any, target_world: dict[str, Any]
) -> None:
    make_cluster(clients, TARGET)
    data = failed(run_until_restored(dispatcher, target_world))
    always_fail(clients, "DeleteDBCluster", "Throttling", "Rate exceeded")
    lines = cleanup_after_failure(failure_ctx, data)
    assert lines[-1].startswith(f"clean-up stopped in {TARGET_REGION}: Retryable")
    assert "Rate exceeded" in lines[-1]


def test_keep_failed_restore_keeps_only_a_copy_that_failed_its_checks(
    dispatcher: Any, failure_ctx: StepContext, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    # GIVEN a swap run with keep_failed_restore that restored beside the target
    make_cluster(clients, TARGET)
    data = run_until_restored(dispatcher, target_world, keep_failed_restore=True)
    mutations.clear()
    # WHEN it failed in the users setup (the master password may still be production's)
    lines = cleanup_after_failure(failure_ctx, failed(data))
    # THEN the copy is deleted all the same: only a copy that failed its checks is kept
    assert "DeleteDBCluster" in mutations.names
    assert any(f"deleting the temporary cluster {NEW}" in line for line in lines)


def test_a_copy_that_failed_its_checks_is_kept_tagged_and_tagging_again_changes_nothing(
    dispatcher: Any, failure_ctx: StepContext, clients: Any, target_world: dict[str, Any], mutations: Any
) -> None:
    from steps.handle_failure.cleanup import KEPT_TAG

    make_cluster(clients, TARGET)
    data = run_until_restored(dispatcher, target_world, keep_failed_restore=True)
    data = {**data, "error": {"Error": "ChecksFailed", "Cause": "1 of 1 checks failed"}}
    mutations.clear()
    first = cleanup_after_failure(failure_ctx, data)
    second = cleanup_after_failure(failure_ctx, data)
    assert mutations.names == ["AddTagsToResource", "AddTagsToResource"]
    assert first == second and f"kept the restored cluster {NEW}" in first[0]
    assert tags(clients, describe(clients, NEW))[KEPT_TAG] == f"operation {OPERATION}: checks failed"
    assert sorted(cluster_ids(clients)) == sorted([TARGET, NEW])
