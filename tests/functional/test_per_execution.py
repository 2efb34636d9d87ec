"""One outcome per execution: a retry reports for itself, a success is never followed by FAILED.

``aurora-restore retry`` runs the same operation (same id) as a new execution. What the
subscribers see is read from the SNS inbox (a queue subscribed to the topic), what the operators
see from the state item and the audit trail; the tables and the topic are moto's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from dispatcher.settings import Settings
from dispatcher.store import execution_record
from refresh.target_lock import lock_holder, take_lock
from steps.handle_failure import step as handle_failure
from tests.conftest import STACK_PLACEMENT
from tests.functional.sns_inbox import TOPIC_ARN, Inbox

FIRST = "arn:aws:states:us-east-1:123456789012:execution:aurora-restore:op-test002"
RETRY = "arn:aws:states:us-east-1:123456789012:execution:aurora-restore:op-test002-retry-1"
OPERATION = "op-test002"
TARGET = "new-cluster-id"
TARGET_REGION = "us-west-2"


@pytest.fixture
def settings() -> Settings:
    """The stack's settings with a notification topic and where a new target goes."""
    return Settings(topic_arn=TOPIC_ARN, **STACK_PLACEMENT)


@pytest.fixture
def inbox(clients: Any) -> Inbox:
    """The topic and a queue subscribed to it."""
    return Inbox(clients)


@pytest.fixture
def cleanups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The clean-up seam: records which execution asked, reports the temporary cluster removed."""
    calls: list[str] = []

    def run_cleanup(ctx: Any, data: dict[str, Any]) -> list[str]:
        calls.append(str(ctx.execution_id))
        return [f"deleting the temporary cluster {TARGET}-new-abc (made by {ctx.execution_id})"]

    monkeypatch.setattr(handle_failure, "run_cleanup", run_cleanup)
    return calls


def run_fails(dispatcher: Any, seed_input: dict[str, Any], store: Any, execution: str) -> dict[str, Any]:
    """One execution: validate, take the lock, fail in the restore; returns the caught data."""
    request = dispatcher.handle({"step": "validate_request", "input": seed_input, "execution_id": execution})
    take_lock(store, TARGET_REGION, TARGET, OPERATION)
    store.step_started(OPERATION, "restore_snapshot", execution)
    store.audit(OPERATION, "started", step="restore_snapshot", execution_id=execution)
    store.step_failed(
        OPERATION, "restore_snapshot", {"type": "RestoreFailed", "message": "boom"}, 10, execution
    )
    cause = json.dumps({"errorType": "RestoreFailed", "errorMessage": f"restore failed in {execution}"})
    return {**seed_input, "request": request, "error": {"Error": "RestoreFailed", "Cause": cause}}


def fail(dispatcher: Any, data: dict[str, Any], execution: str) -> dict[str, Any]:
    result: dict[str, Any] = dispatcher.handle(
        {"step": "handle_failure", "input": data, "execution_id": execution}
    )
    return result


def test_a_retry_that_fails_again_sends_its_own_failed_message_and_cleans_up_its_own_cluster(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanups: list[str]
) -> None:
    # GIVEN an operation whose first execution failed and was reported
    seed_input = {"body": {**seed_input["body"], "operation_id": OPERATION}}
    fail(dispatcher, run_fails(dispatcher, seed_input, store, FIRST), FIRST)
    first = inbox.deliveries()
    assert [d.attributes["status"] for d in first] == ["FAILED"]

    # WHEN its retry (same operation, new execution) fails too, and its handler is invoked twice
    data = run_fails(dispatcher, seed_input, store, RETRY)
    output = fail(dispatcher, data, RETRY)
    again = fail(dispatcher, data, RETRY)

    # THEN the retry sent exactly one FAILED message of its own, about itself
    [delivery] = inbox.deliveries()
    assert delivery.attributes["status"] == "FAILED"
    assert delivery.message["execution_id"] == RETRY
    assert delivery.message["error"]["message"] == f"restore failed in {RETRY}"
    assert delivery.message["cleaned_up"] == [
        f"deleting the temporary cluster {TARGET}-new-abc (made by {RETRY})"
    ]
    assert output["notification"]["sent"] is True and output["notification"]["already_sent"] is False
    assert again["notification"]["already_sent"] is True
    # ... its clean-up ran (once, for it), the lock it took is free, and each execution's outcome is kept
    assert cleanups == [FIRST, RETRY]
    assert lock_holder(store, TARGET_REGION, TARGET) is None
    item = store.get_operation(OPERATION)
    assert item["status"] == "FAILED"
    assert execution_record(item, FIRST)["status"] == "FAILED"
    assert execution_record(item, RETRY)["status"] == "FAILED"
    assert execution_record(item, RETRY)["notifications"]["FAILED"]["message_id"] == delivery.message_id


def test_a_retry_that_succeeds_leaves_the_operation_succeeded_without_the_first_runs_error(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanups: list[str]
) -> None:
    # GIVEN a failed first execution
    seed_input = {"body": {**seed_input["body"], "operation_id": OPERATION}}
    fail(dispatcher, run_fails(dispatcher, seed_input, store, FIRST), FIRST)
    inbox.deliveries()
    # WHEN the retry gets to the end and closes the operation SUCCEEDED
    store.finish(OPERATION, "SUCCEEDED", execution_id=RETRY)
    # THEN the item says SUCCEEDED with no error, while the first execution's record keeps its failure
    item = store.get_operation(OPERATION)
    assert item["status"] == "SUCCEEDED"
    assert "error" not in item
    assert execution_record(item, FIRST)["error"]["type"] == "RestoreFailed"
    assert execution_record(item, RETRY)["status"] == "SUCCEEDED"


def refuse_lock_release(clients: Any) -> list[str]:
    """The state table refuses DeleteItem (the lock release) from now on."""
    refused: list[str] = []

    def answer(model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        refused.append(model.name)
        error = {"Code": "AccessDeniedException", "Message": "not allowed to delete the lock"}
        return AWSResponse("https://dynamodb", 400, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    clients.add_hook("before-call.dynamodb.DeleteItem", answer)
    return refused


def succeeded_run(dispatcher: Any, seed_input: dict[str, Any], store: Any, clients: Any) -> dict[str, Any]:
    """The data of a run that got to SendNotification, holding the target's lock."""
    clients("rds", TARGET_REGION).create_db_cluster(
        DBClusterIdentifier=TARGET,
        Engine="aurora-postgresql",
        MasterUsername="postgres",
        MasterUserPassword="x" * 12,
    )
    seed_input = {"body": {**seed_input["body"], "operation_id": OPERATION}}
    request = dispatcher.handle({"step": "validate_request", "input": seed_input, "execution_id": FIRST})
    take_lock(store, TARGET_REGION, TARGET, OPERATION)
    return {**seed_input, "request": request}


def test_a_lock_that_cannot_be_released_after_success_is_reported_without_a_failed_message(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, clients: Any
) -> None:
    # GIVEN a run at its success notification, and a table that refuses to delete the lock
    data = succeeded_run(dispatcher, seed_input, store, clients)
    refused = refuse_lock_release(clients)
    # WHEN the success step runs
    output = dispatcher.handle({"step": "send_notification", "input": data, "execution_id": FIRST})
    # THEN one SUCCEEDED message went out and nothing else; the item says SUCCEEDED
    assert [d.attributes["status"] for d in inbox.deliveries()] == ["SUCCEEDED"]
    item = store.get_operation(OPERATION)
    assert item["status"] == "SUCCEEDED"
    # ... and the lock problem is reported, with the command that frees it
    unlock = f"aurora-restore unlock {TARGET} --region {TARGET_REGION}"
    assert refused and output["lock_released"] is False and unlock in output["lock"]
    assert unlock in execution_record(item, FIRST)["lock_error"]
    assert "lock_release_failed" in [e["event"] for e in store.audit_trail(OPERATION)]


def test_a_failure_after_the_success_was_published_keeps_the_run_succeeded(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, clients: Any, cleanups: list[str]
) -> None:
    # GIVEN a run whose success was published, then closing it failed (the Catch sends it to
    # HandleFailure: e.g. the final status write throttled past the state's Retry)
    data = succeeded_run(dispatcher, seed_input, store, clients)
    dispatcher.handle({"step": "send_notification", "input": data, "execution_id": FIRST})
    take_lock(store, TARGET_REGION, TARGET, OPERATION)  # as if the release had not happened
    store.step_started(OPERATION, "send_notification", FIRST)
    cause = json.dumps({"errorType": "Retryable", "errorMessage": "UpdateItem throttled"})
    data["error"] = {"Error": "Retryable", "Cause": cause}
    # WHEN the failure handler runs for that execution
    output = fail(dispatcher, data, FIRST)
    # THEN no FAILED message follows the SUCCEEDED one, nothing is cleaned up, the item ends SUCCEEDED
    assert [d.attributes["status"] for d in inbox.deliveries()] == ["SUCCEEDED"]
    assert output["status"] == "SUCCEEDED" and output["notification"]["sent"] is False
    assert cleanups == []
    assert store.get_operation(OPERATION)["status"] == "SUCCEEDED"
    assert lock_holder(store, TARGET_REGION, TARGET) is None


def test_a_retry_that_dies_without_an_error_never_reports_the_first_runs_error(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanups: list[str]
) -> None:
    # GIVEN a first execution that failed in the restore, with the error recorded, and was stopped
    # before its failure handler ran (so its error stays on the item)
    seed_input = {"body": {**seed_input["body"], "operation_id": OPERATION}}
    run_fails(dispatcher, seed_input, store, FIRST)
    # ... and a retry whose Lambda died in its first step (timed out: no error recorded, no cause)
    store.step_started(OPERATION, "validate_request", RETRY)
    store.audit(OPERATION, "started", step="validate_request", execution_id=RETRY)
    data = {**seed_input, "error": {"Error": "Lambda.Unknown"}}
    # WHEN the retry's failure handler runs
    output = fail(dispatcher, data, RETRY)
    # THEN its message names the retry's own failure, not the first run's restore error
    [delivery] = inbox.deliveries()
    assert delivery.message["failed_step"] == "validate_request"
    assert delivery.message["error"]["type"] == "Lambda.Unknown"
    assert "boom" not in delivery.message["error"]["message"]
    assert output["failed_step"] == "validate_request"
