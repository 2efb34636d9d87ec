"""A retry rehearsed as an operator meets it: ``aurora-restore simulate ... --retry ...``.

Each execution of an operation reports its own outcome exactly once (read from the topic's
subscribed queue, as a subscriber would) and cleans up what it made; the report holds both
executions. Also here: what a delete-first failure says was destroyed, and a success whose lock
cannot be released, both through the whole state machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from aurora_restore.cli import main
from aurora_restore.simulate.hooks import parse_fault
from aurora_restore.simulate.rehearsal import Report, RetryOptions
from dispatcher.store import execution_record
from steps.lib import names

OPERATION = "op-test002"
TARGET = "new-cluster-id"


@pytest.fixture
def database_flags(postgres_server: Any) -> list[str]:
    """--database-url / --database-ca for the session's server."""
    url = (
        f"postgresql://{quote(postgres_server.superuser)}:{quote(postgres_server.password, safe='')}"
        f"@{postgres_server.host}:{postgres_server.port}/postgres"
        f"?sslmode=verify-full&sslrootcert={quote(postgres_server.ca_file)}"
    )
    return ["--database-url", url, "--database-ca", postgres_server.ca_file]


def temporary_clusters(world: dict[str, Any]) -> list[str]:
    """Clusters a swap run restores beside the target (``<target>-new-<hash>``)."""
    return [c["id"] for c in world["clusters"] if c["id"].startswith(f"{TARGET}-new-")]


def test_a_retry_that_fails_again_sends_one_failed_message_and_leaves_no_temporary_cluster(
    database_flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN the restore fails, and the operator's retry of the operation fails the same way
    code = main(
        [
            "simulate",
            "--json",
            "--outcome",
            "restore=failed",
            *database_flags,
            "--retry",
            "--outcome",
            "restore=failed",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    retry = report["retry"]
    # THEN the command fails, and each execution sent exactly one message: FAILED, about itself
    assert code == 1
    assert [n["attributes"]["status"] for n in report["notifications"]] == ["FAILED"]
    [message] = [n["message"] for n in retry["notifications"]]
    assert message["status"] == "FAILED" and message["operation_id"] == OPERATION
    assert message["execution_id"].endswith(f":{OPERATION}-retry-1")
    assert retry["execution_name"] == f"{OPERATION}-retry-1" and retry["operation_id"] == OPERATION
    # ... the retry removed the temporary cluster it restored, and says so; no lock is left
    temporary = names.temporary_cluster_id(TARGET, OPERATION)
    assert any(temporary in line and "deleting" in line for line in message["cleaned_up"]), message
    assert temporary_clusters(retry["world_after"]) == []
    assert retry["locks"] == []
    # ... and the operation's item keeps each execution's outcome
    item = retry["state_item"]
    assert item["status"] == "FAILED"
    assert {name: record["status"] for name, record in item["executions"].items()} == {
        OPERATION: "FAILED",
        f"{OPERATION}-retry-1": "FAILED",
    }


def test_a_retry_that_succeeds_reports_success_once_and_clears_the_first_runs_error(
    rehearse: Callable[..., Report], seed_input: dict[str, Any]
) -> None:
    # WHEN the first run fails on a denied restore and the retry meets no fault
    report = rehearse(
        seed_input,
        faults=[parse_fault("rds.RestoreDBClusterFromSnapshot=AccessDenied")],
        retry=RetryOptions(),
    )
    # THEN one FAILED message, then one SUCCEEDED message; the operation ends SUCCEEDED, no error
    assert report.status == "FAILED" and report.retry is not None
    assert report.final.status == "SUCCEEDED", report.retry.error
    assert [n["attributes"]["status"] for n in report.notifications] == ["FAILED"]
    assert [n["attributes"]["status"] for n in report.retry.notifications] == ["SUCCEEDED"]
    item = report.retry.state_item or {}
    assert item["status"] == "SUCCEEDED" and "error" not in item
    assert execution_record(item, report.execution_arn)["status"] == "FAILED"
    assert temporary_clusters(report.retry.world_after) == []
    assert report.retry.faults == []


def test_a_delete_first_failure_says_what_was_deleted_kept_and_left(
    rehearse: Callable[..., Report], seed_input: dict[str, Any]
) -> None:
    # GIVEN delete-first: the target goes (with a final snapshot) before the restore
    raw = {"body": {**seed_input["body"], "strategy": "delete-first"}}
    # WHEN the restore fails after the target was deleted
    report = rehearse(raw, restore_outcome="failed")
    # THEN the failure message says the target was deleted, which final snapshot holds its data,
    # and what is under its name now
    assert report.status == "FAILED"
    [notification] = report.notifications
    replaced = notification["message"]["replaced_target"]
    final = names.final_snapshot_id(TARGET, OPERATION)
    assert f"the cluster {TARGET}" in replaced["deleted"]
    assert replaced["final_snapshot_id"] == final
    assert final in replaced["kept"] and "available" in replaced["kept"]
    assert replaced["remains"].startswith(f"{TARGET} is this operation's restored cluster"), replaced
    assert final in replaced["summary"]
    # ... and the final snapshot is really there
    assert final in [s["id"] for s in report.world_after["snapshots"]]


def test_a_success_whose_lock_cannot_be_released_sends_only_succeeded(
    rehearse: Callable[..., Report], seed_input: dict[str, Any]
) -> None:
    # GIVEN a state table that refuses to delete items (the lock release is the one delete)
    report = rehearse(seed_input, faults=[parse_fault("dynamodb.DeleteItem=AccessDeniedException")])
    # THEN the refresh SUCCEEDED with one SUCCEEDED message and no FAILED one
    assert report.status == "SUCCEEDED", report.error
    assert [n["attributes"]["status"] for n in report.notifications] == ["SUCCEEDED"]
    item = report.state_item or {}
    assert item["status"] == "SUCCEEDED"
    # ... and the lock left held is reported where the operator looks, with how to free it
    unlock = f"aurora-restore unlock {TARGET} --region us-west-2"
    assert unlock in execution_record(item, report.execution_arn)["lock_error"]
    assert [lock["lock_owner"] for lock in report.locks] == [OPERATION]
    assert "lock_release_failed" in [event["event"] for event in report.audit]


def test_a_retry_after_the_swap_moved_the_new_cluster_in_finishes_the_swap(
    rehearse: Callable[..., Report], seed_input: dict[str, Any]
) -> None:
    # GIVEN a first run that swapped the restored cluster in, then could not delete the old one
    report = rehearse(
        seed_input, faults=[parse_fault("rds.DeleteDBCluster=AccessDenied")], retry=RetryOptions()
    )
    assert report.status == "FAILED"
    retired = names.retired_cluster_id(TARGET, OPERATION)
    assert retired in [c["id"] for c in report.world_after["clusters"]]
    # WHEN the operation is retried; THEN the retry adopts the cluster already under the target's
    # name (no second restore) and finishes: the old cluster goes, with its final snapshot
    retry = report.retry
    assert retry is not None and retry.status == "SUCCEEDED", retry.error if retry else None
    assert [n["attributes"]["status"] for n in retry.notifications] == ["SUCCEEDED"]
    assert not [c for c in retry.aws_calls if c["operation"] == "RestoreDBClusterFromSnapshot"]
    clusters = {c["id"]: c for c in retry.world_after["clusters"]}
    assert retired not in clusters and temporary_clusters(retry.world_after) == []
    assert clusters[TARGET]["tags"]["aurora-restore:operation-id"] == OPERATION
    assert names.final_snapshot_id(TARGET, OPERATION) in [s["id"] for s in retry.world_after["snapshots"]]
