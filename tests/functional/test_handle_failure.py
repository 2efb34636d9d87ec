"""handle_failure: every Catch lands here; whatever the input, the failure is reported once.

The clean-up itself belongs to ``steps.handle_failure.cleanup`` (tested there); these tests replace the
handler's one seam to it, ``steps.handle_failure.step.run_cleanup``, to see what the handler does
with its result, its failure, and when it must not call it at all.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from dispatcher.errors import Retryable
from dispatcher.registry import Step
from dispatcher.settings import Settings
from refresh.errors import RestoreFailed
from refresh.request import derive_operation_id
from refresh.target_lock import lock_holder, take_lock
from steps.handle_failure import step as handle_failure
from tests.conftest import STACK_PLACEMENT
from tests.functional.sns_inbox import TOPIC_ARN, Inbox

EXECUTION_ID = "arn:aws:states:us-east-1:123456789012:execution:aurora-restore:run-1"
OPERATION = "op-test002"
TARGET = "new-cluster-id"
TARGET_REGION = "us-west-2"
SECRET = "hunter2-Sup3r"


@pytest.fixture
def settings() -> Settings:
    """The stack's settings with a topic in another region than the clients' default."""
    return Settings(topic_arn=TOPIC_ARN, **STACK_PLACEMENT)


@pytest.fixture
def inbox(clients: Any) -> Inbox:
    """The topic and a queue subscribed to it."""
    return Inbox(clients)


class CleanupSeam:
    """Stands in for steps.handle_failure.cleanup: records its calls, returns or raises what it is told."""

    def __init__(self, lines: list[str] | None = None, error: Exception | None = None) -> None:
        self.lines = lines or []
        self.error = error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, ctx: Any, data: dict[str, Any]) -> list[str]:
        self.calls.append((ctx.operation_id, data))
        if self.error is not None:
            raise self.error
        return list(self.lines)


@pytest.fixture
def cleanup(monkeypatch: pytest.MonkeyPatch) -> CleanupSeam:
    """The clean-up seam, reporting two things removed."""
    seam = CleanupSeam(
        [
            "deleted temporary cluster new-cluster-id-new-abc123 (2 instances)",
            "deleted snapshot copy my-source-snapshot-op-test002",
        ]
    )
    monkeypatch.setattr(handle_failure, "run_cleanup", seam)
    return seam


def lambda_cause(error_type: str, message: str) -> str:
    """The Cause Step Functions passes for an error raised in a Lambda function."""
    return json.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": "5c3c7a1e-0000-4000-8000-000000000000",
            "stackTrace": [
                '  File "/var/task/dispatcher/handler.py", line 97, in handle\n    output = step.run(ctx)\n',
                f'  File "/var/task/steps/restore_snapshot.py", line 88, in run\n    password="{SECRET}"\n',
            ],
        }
    )


def _handle(dispatcher: Any, data: Any, execution_id: str | None = EXECUTION_ID) -> dict[str, Any]:
    event: dict[str, Any] = {"step": "handle_failure", "input": data}
    if execution_id is not None:
        event["execution_id"] = execution_id
    result: dict[str, Any] = dispatcher.handle(event)
    return result


def _validated_run(dispatcher: Any, seed_input: dict[str, Any], store: Any) -> dict[str, Any]:
    """The data of a run that validated its request and took the target lock."""
    request = dispatcher.handle(
        {"step": "validate_request", "input": seed_input, "execution_id": EXECUTION_ID}
    )
    store.step_succeeded(OPERATION, "snapshot_check", {"complete": True}, 640)
    take_lock(store, TARGET_REGION, TARGET, OPERATION)
    return {**seed_input, "request": request}


def _fail_step(store: Any, step: str, error_type: str, message: str) -> None:
    """What the dispatcher records when ``step`` raises (started, then failed)."""
    store.step_started(OPERATION, step, EXECUTION_ID)
    store.audit(OPERATION, "started", step=step)
    store.step_failed(OPERATION, step, {"type": error_type, "message": message}, 1200)
    store.audit(OPERATION, "failed", step=step, error_type=error_type)


def test_a_failed_restore_is_reported_cleaned_up_closed_and_unlocked(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanup: CleanupSeam
) -> None:
    # GIVEN a run whose restore failed, caught into $.error as Step Functions does
    data = _validated_run(dispatcher, seed_input, store)
    message = "cluster new-cluster-id-new-abc123 is incompatible-parameters"
    _fail_step(store, "restore_snapshot", "RestoreFailed", message)
    data["error"] = {"Error": "RestoreFailed", "Cause": lambda_cause("RestoreFailed", message)}

    # WHEN the failure handler runs
    output = _handle(dispatcher, data)

    # THEN one FAILED message went out with the documented subject and attributes
    [delivery] = inbox.deliveries()
    assert delivery.subject == "[aurora-restore] op-test002 FAILED: new-cluster-id"
    assert delivery.attributes == {"status": "FAILED", "operation_id": OPERATION, "target_cluster_id": TARGET}
    sent = delivery.message
    assert sent["status"] == "FAILED"
    assert (sent["operation_id"], sent["execution_id"]) == (OPERATION, EXECUTION_ID)
    assert (sent["target_cluster_id"], sent["target_region"]) == (TARGET, TARGET_REGION)
    assert sent["snapshot_id"] == "rds:my-source-snapshot"
    assert sent["strategy"] == "swap"
    assert sent["failed_step"] == "restore_snapshot"
    assert sent["error"] == {"type": "RestoreFailed", "message": message, "name": "RestoreFailed"}
    assert sent["cleaned_up"] == cleanup.lines
    assert sent["cleanup_error"] is None
    assert sent["lock"] == "released"
    assert sent["request_valid"] is True
    assert sent["step_durations_ms"]["snapshot_check"] == 640
    # ... and no stack trace (nor what it quoted)
    assert "stackTrace" not in delivery.raw_message
    assert "/var/task" not in delivery.raw_message
    assert SECRET not in delivery.raw_message

    # AND the clean-up saw the whole execution data, with the request on the context
    [(operation, seen)] = cleanup.calls
    assert operation == OPERATION
    assert seen["error"]["Error"] == "RestoreFailed"
    # AND the operation is FAILED with the error, its lock free, the notification audited
    item = store.get_operation(OPERATION)
    assert item["status"] == "FAILED"
    assert item["error"]["type"] == "RestoreFailed"
    assert item["error"]["step"] == "restore_snapshot"
    assert lock_holder(store, TARGET_REGION, TARGET) is None
    events = [e["event"] for e in store.audit_trail(OPERATION)]
    assert "failed_notified" in events
    assert "cleaned_up" in events
    assert output["notification"]["message_id"] == delivery.message_id
    assert output["failed_step"] == "restore_snapshot"
    assert output["lock_released"] is True


def test_through_the_dispatcher_the_cause_lambda_reports_is_read_back(
    dispatcher: Any,
    registry: Any,
    seed_input: dict[str, Any],
    store: Any,
    inbox: Inbox,
    cleanup: CleanupSeam,
) -> None:
    # GIVEN a step that raises through the real dispatcher, as Lambda would report it
    class Explode(Step):
        """Fail like a restore that found its cluster broken."""

        def run(self, ctx: Any) -> dict[str, Any]:
            raise RestoreFailed("cluster new-cluster-id-new-abc123 is inaccessible-encryption-credentials")

    registry.register("explode_in_test")(Explode)
    data = _validated_run(dispatcher, seed_input, store)
    with pytest.raises(RestoreFailed) as caught:
        dispatcher.handle(
            {"step": "explode_in_test", "request": data["request"], "execution_id": EXECUTION_ID}
        )
    error = caught.value
    data["error"] = {"Error": type(error).__name__, "Cause": lambda_cause(type(error).__name__, str(error))}
    # WHEN the failure handler runs
    output = _handle(dispatcher, data)
    # THEN it names the step the dispatcher recorded, and the error Lambda reported
    assert output["failed_step"] == "explode_in_test"
    assert output["error_type"] == "RestoreFailed"
    assert "inaccessible-encryption-credentials" in output["error_message"]
    assert inbox.deliveries()[0].message["failed_step"] == "explode_in_test"


def test_a_failure_in_the_very_first_step_is_reported_from_the_raw_seed_input(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanup: CleanupSeam
) -> None:
    # GIVEN the seed's {"body": ...} input that the first step refused
    body = {**seed_input["body"], "target_cluster_id": "bad--name"}
    raw = {"body": body}
    with pytest.raises(Exception) as caught:
        dispatcher.handle({"step": "validate_request", "input": raw, "execution_id": EXECUTION_ID})
    data = {
        **raw,
        "error": {"Error": "ValidationError", "Cause": lambda_cause("ValidationError", str(caught.value))},
    }

    # WHEN the failure handler gets the raw input plus $.error (no $.request)
    output = _handle(dispatcher, data)

    # THEN it reports under the body's operation id, on the same state item the first step made
    [delivery] = inbox.deliveries()
    assert delivery.subject == "[aurora-restore] op-test002 FAILED: bad--name"
    assert delivery.attributes["operation_id"] == OPERATION
    sent = delivery.message
    assert sent["failed_step"] == "validate_request"
    assert sent["failed_state"] == "ValidateRequest"
    assert sent["error"]["type"] == "ValidationError"
    assert "target_cluster_id: 'bad--name' is not valid" in sent["error"]["message"]
    assert sent["request_valid"] is False
    assert sent["source_region"] == "us-east-1"
    # ... nothing can have been created, so no clean-up ran, and no lock was taken
    assert cleanup.calls == []
    assert sent["cleaned_up"] == []
    assert "never validated" in sent["cleanup_skipped"]
    assert output["lock_released"] is False
    item = store.get_operation(OPERATION)
    assert item["status"] == "FAILED"
    assert item["error"]["step"] == "validate_request"
    assert [e["step"] for e in store.audit_trail(OPERATION) if e["event"] == "started"] == [
        "validate_request",
        "handle_failure",
    ]


def test_an_input_without_body_is_read_unwrapped(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanup: CleanupSeam
) -> None:
    # GIVEN the request fields unwrapped, with one the first step refused
    raw = {**seed_input["body"], "strategy": "yolo"}
    data = {**raw, "error": {"Error": "ValidationError", "Cause": "strategy: 'yolo' is not valid"}}
    # WHEN the failure handler runs
    output = _handle(dispatcher, data)
    # THEN the unwrapped operation id and target are used
    [delivery] = inbox.deliveries()
    assert delivery.attributes == {"status": "FAILED", "operation_id": OPERATION, "target_cluster_id": TARGET}
    assert delivery.message["error"]["message"] == "strategy: 'yolo' is not valid"
    assert delivery.message["strategy"] == "yolo"
    assert output["operation_id"] == OPERATION
    assert store.get_operation(OPERATION)["status"] == "FAILED"


@pytest.mark.parametrize(
    "data",
    [
        {"error": {"Error": "States.Runtime"}},
        {"body": "{not json", "error": {"Error": "ValidationError"}},
        {"body": {"operation_id": "has spaces and #", "target_cluster_id": 42}},
        ["not", "an", "object"],
        "a string",
        None,
    ],
    ids=["only-error", "body-not-json", "invalid-values", "list", "string", "null"],
)
def test_garbage_input_is_still_reported_under_an_id_derived_from_the_execution(
    dispatcher: Any, store: Any, inbox: Inbox, cleanup: CleanupSeam, data: Any
) -> None:
    # WHEN the failure handler gets an input it can make nothing of
    output = _handle(dispatcher, data)
    # THEN it reports anyway, under the execution's derived id, and raises nothing
    derived = derive_operation_id(EXECUTION_ID)
    assert output["operation_id"] == derived
    [delivery] = inbox.deliveries()
    assert delivery.attributes == {
        "status": "FAILED",
        "operation_id": derived,
        "target_cluster_id": "unknown",
    }
    assert delivery.subject == f"[aurora-restore] {derived} FAILED: unknown"
    assert delivery.message["error"]["type"]
    assert delivery.message["error"]["message"]
    assert store.get_operation(derived)["status"] == "FAILED"
    assert cleanup.calls == []


def test_a_missing_cause_still_gives_a_type_and_a_message(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanup: CleanupSeam
) -> None:
    # Every other shape of cause is covered by tests/unit/test_notify_text.py (describe_error).
    data = _validated_run(dispatcher, seed_input, store)
    output = _handle(dispatcher, {**data, "error": {"Error": "States.Timeout"}})
    assert output["error_type"] == "States.Timeout"
    assert output["error_message"] == "Step Functions reported States.Timeout with no cause"
    assert inbox.deliveries()[0].message["error"]["type"] == "States.Timeout"


def test_a_timed_out_step_is_found_from_the_audit_trail(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanup: CleanupSeam
) -> None:
    # GIVEN copy_snapshot started and its Lambda timed out: the dispatcher recorded no error
    data = _validated_run(dispatcher, seed_input, store)
    store.step_started(OPERATION, "copy_snapshot", EXECUTION_ID)
    store.audit(OPERATION, "started", step="copy_snapshot")
    data["error"] = {"Error": "States.Timeout", "Cause": "Task timed out after 900.00 seconds"}
    # WHEN the failure handler runs
    output = _handle(dispatcher, data)
    # THEN it names the step that was running
    assert output["failed_step"] == "copy_snapshot"
    assert inbox.deliveries()[0].message["failed_step"] == "copy_snapshot"
    assert output["error_message"] == "Task timed out after 900.00 seconds"


def test_target_locked_does_not_release_the_holders_lock(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanup: CleanupSeam
) -> None:
    # GIVEN another operation holds the target, so this one failed with TargetLocked
    request = dispatcher.handle(
        {"step": "validate_request", "input": seed_input, "execution_id": EXECUTION_ID}
    )
    take_lock(store, TARGET_REGION, TARGET, "op-running")
    message = f"target {TARGET} in {TARGET_REGION} is locked by operation op-running"
    _fail_step(store, "snapshot_check", "TargetLocked", message)
    data = {
        **seed_input,
        "request": request,
        "error": {"Error": "TargetLocked", "Cause": lambda_cause("TargetLocked", message)},
    }
    # WHEN the failure handler runs
    output = _handle(dispatcher, data)
    # THEN the running operation keeps its lock, and the message says so
    assert lock_holder(store, TARGET_REGION, TARGET)["lock_owner"] == "op-running"
    assert output["lock_released"] is False
    sent = inbox.deliveries()[0].message
    assert sent["lock"] == "held by operation op-running; left alone"
    assert sent["error"]["type"] == "TargetLocked"
    assert store.get_operation(OPERATION)["status"] == "FAILED"
    assert store.get_operation("op-running") is None


def test_a_retry_sends_nothing_more_and_cleans_up_nothing_more(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanup: CleanupSeam
) -> None:
    # GIVEN the failure was handled and notified once
    data = _validated_run(dispatcher, seed_input, store)
    _fail_step(store, "restore_snapshot", "RestoreFailed", "boom")
    data["error"] = {"Error": "RestoreFailed", "Cause": lambda_cause("RestoreFailed", "boom")}
    first = _handle(dispatcher, data)
    # WHEN Step Functions runs HandleFailure again with the same input
    second = _handle(dispatcher, data)
    # THEN subscribers got one message, the clean-up ran once, and both runs agree
    assert len(inbox.deliveries()) == 1
    assert len(cleanup.calls) == 1
    assert second["notification"]["already_sent"] is True
    assert second["notification"]["message_id"] == first["notification"]["message_id"]
    assert second["cleaned_up"] == first["cleaned_up"] == cleanup.lines
    assert second["failed_step"] == "restore_snapshot"
    assert len([e for e in store.audit_trail(OPERATION) if e["event"] == "failed_notified"]) == 1


def test_no_secret_reaches_the_message_the_state_item_or_the_output(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanup: CleanupSeam
) -> None:
    # GIVEN error text that quotes secrets in the ways AWS and our own errors do
    data = _validated_run(dispatcher, seed_input, store)
    message = (
        f"Parameter validation failed:\nInvalid type for parameter MasterUserPassword, value: {SECRET}, "
        f"type: <class 'int'>, valid types: <class 'str'>; users.app.password: '{SECRET}' is not valid; "
        f'connect failed for postgresql://admin:{SECRET}@db:5432/app; {{"password": "{SECRET}"}}; '
        f"PGPASSWORD={SECRET} Authorization: Bearer {SECRET}"
    )
    data["error"] = {"Error": "AwsCallFailed", "Cause": lambda_cause("AwsCallFailed", message)}
    cleanup.lines = [f"deleted temporary cluster x (token={SECRET})"]
    # WHEN the failure handler runs
    output = _handle(dispatcher, data)
    # THEN the secret is nowhere we wrote, while the rest of the message still reads
    delivery = inbox.deliveries()[0]
    assert SECRET not in delivery.raw_message
    assert SECRET not in json.dumps(output)
    assert SECRET not in json.dumps(store.get_operation(OPERATION)["error"])
    assert SECRET not in json.dumps(store.get_operation(OPERATION)["executions"])
    assert "Invalid type for parameter MasterUserPassword, value: ***" in delivery.message["error"]["message"]
    assert "postgresql://admin:***@db:5432/app" in delivery.message["error"]["message"]
    assert delivery.message["cleaned_up"] == ["deleted temporary cluster x (token=***)"]


def test_a_failing_clean_up_is_reported_and_the_notification_still_goes_out(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    # GIVEN a clean-up that AWS refuses
    seam = CleanupSeam(
        error=ClientError(
            {"Error": {"Code": "InvalidDBClusterStateFault", "Message": "cluster is renaming"}},
            "DeleteDBCluster",
        )
    )
    monkeypatch.setattr(handle_failure, "run_cleanup", seam)
    data = _validated_run(dispatcher, seed_input, store)
    data["error"] = {"Error": "SwapFailed", "Cause": lambda_cause("SwapFailed", "second rename failed")}
    # WHEN the failure handler runs
    output = _handle(dispatcher, data)
    # THEN the message says what could not be cleaned up, and the operation is still closed
    sent = inbox.deliveries()[0].message
    assert sent["cleaned_up"] == []
    assert "AwsCallFailed" in sent["cleanup_error"]
    assert "DeleteDBCluster failed with InvalidDBClusterStateFault" in sent["cleanup_error"]
    assert output["cleanup_error"] == sent["cleanup_error"]
    assert store.get_operation(OPERATION)["status"] == "FAILED"
    assert lock_holder(store, TARGET_REGION, TARGET) is None
    assert "cleanup_failed" in [e["event"] for e in store.audit_trail(OPERATION)]


def test_a_failed_success_notification_does_not_clean_up_the_finished_refresh(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanup: CleanupSeam
) -> None:
    # GIVEN the refresh completed and only publishing the success message failed
    data = _validated_run(dispatcher, seed_input, store)
    _fail_step(store, "send_notification", "AwsCallFailed", "Publish failed with AuthorizationError")
    data["error"] = {"Error": "AwsCallFailed", "Cause": lambda_cause("AwsCallFailed", "Publish failed")}
    # WHEN the failure handler runs
    output = _handle(dispatcher, data)
    # THEN the restored cluster is left alone, and the message says the refresh had completed
    assert cleanup.calls == []
    assert output["restore_completed"] is True
    sent = inbox.deliveries()[0].message
    assert sent["restore_completed"] is True
    assert "left alone" in sent["cleanup_skipped"]
    assert lock_holder(store, TARGET_REGION, TARGET) is None


def test_without_a_topic_it_says_so_and_still_closes_the_operation(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, cleanup: CleanupSeam
) -> None:
    dispatcher.settings = Settings(topic_arn="", **STACK_PLACEMENT)
    data = _validated_run(dispatcher, seed_input, store)
    data["error"] = {"Error": "CopyFailed", "Cause": lambda_cause("CopyFailed", "copy vanished")}
    output = _handle(dispatcher, data)
    assert output["notification"]["sent"] is False
    assert "no topic configured" in output["notification"]["reason"]
    assert store.get_operation(OPERATION)["status"] == "FAILED"
    assert lock_holder(store, TARGET_REGION, TARGET) is None


def test_a_missing_topic_is_reported_without_raising(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, cleanup: CleanupSeam
) -> None:
    # GIVEN the configured topic does not exist (no inbox fixture: nothing was created)
    data = _validated_run(dispatcher, seed_input, store)
    data["error"] = {"Error": "CopyFailed", "Cause": lambda_cause("CopyFailed", "copy vanished")}
    # WHEN the failure handler runs
    output = _handle(dispatcher, data)
    # THEN the operation is closed anyway, and the output and audit say the message did not go
    assert output["notification"]["sent"] is False
    assert "Publish failed with NotFound" in output["notification"]["error"]
    assert store.get_operation(OPERATION)["status"] == "FAILED"
    assert lock_holder(store, TARGET_REGION, TARGET) is None
    assert "notification_failed" in [e["event"] for e in store.audit_trail(OPERATION)]


def test_throttled_publishing_is_retried_by_the_state_machine_after_closing(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanup: CleanupSeam, clients: Any
) -> None:
    from botocore.awsrequest import AWSResponse

    # GIVEN SNS answers every Publish with Throttling (what outlives botocore's own retries)
    data = _validated_run(dispatcher, seed_input, store)
    data["error"] = {"Error": "CopyFailed", "Cause": lambda_cause("CopyFailed", "copy vanished")}
    throttled = (
        AWSResponse("https://sns.eu-west-1.amazonaws.com/", 400, {}, None),
        {
            "Error": {"Code": "Throttling", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
    )
    clients.add_hook("before-call.sns.Publish", lambda **_: throttled)
    # WHEN the failure handler runs
    with pytest.raises(Retryable, match="Throttling"):
        _handle(dispatcher, data)
    # THEN the state is already FAILED and the lock free, so a retry (or none) leaves nothing hanging
    assert store.get_operation(OPERATION)["status"] == "FAILED"
    assert lock_holder(store, TARGET_REGION, TARGET) is None
    assert inbox.deliveries() == []


def test_the_documented_filter_policy_delivers_failures_only(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, cleanup: CleanupSeam, clients: Any
) -> None:
    from pathlib import Path

    # GIVEN a subscriber with the filter policy docs/notifications.md gives for failures only
    doc = (Path(__file__).parents[2] / "docs" / "notifications.md").read_text()
    policy = json.loads(
        doc.split("<!-- failures-only-filter-policy -->")[1].split("```json")[1].split("```")[0]
    )
    failures_only = inbox.subscribe_queue("failures-only", filter_policy=policy, raw=True)
    data = _validated_run(dispatcher, seed_input, store)
    # WHEN one operation succeeds and another fails
    clients("rds", TARGET_REGION)  # the success step describes the target; it need not exist
    dispatcher.handle({"step": "send_notification", "input": data, "execution_id": EXECUTION_ID})
    other = {"body": {**seed_input["body"], "operation_id": "op-test003"}}
    _handle(dispatcher, {**other, "error": {"Error": "ValidationError", "Cause": "bad"}})
    # THEN the filtered subscriber got only the failure (raw delivery: the JSON message itself)
    received = inbox.receive(failures_only)
    assert [json.loads(m["Body"])["operation_id"] for m in received] == ["op-test003"]
    assert received[0]["MessageAttributes"]["status"]["StringValue"] == "FAILED"
    assert len(inbox.deliveries()) == 2


def test_with_the_real_clean_up_the_temporary_cluster_goes_and_the_target_stays(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, clients: Any
) -> None:
    """No seam: the handler calls steps.handle_failure.cleanup itself (skipped until that module is merged)."""
    pytest.importorskip("steps.handle_failure.cleanup")
    from refresh.request import MANAGED_TAG, OPERATION_TAG
    from steps.lib.names import temporary_cluster_id

    # GIVEN a swap run that restored beside the existing target, then failed before the swap
    rds = clients("rds", TARGET_REGION)
    rds.create_db_cluster(
        DBClusterIdentifier=TARGET,
        Engine="aurora-postgresql",
        MasterUsername="postgres",
        MasterUserPassword="password123",
    )
    temporary = temporary_cluster_id(TARGET, OPERATION)
    rds.create_db_cluster(
        DBClusterIdentifier=temporary,
        Engine="aurora-postgresql",
        MasterUsername="postgres",
        MasterUserPassword="password123",
        Tags=[{"Key": MANAGED_TAG, "Value": "true"}, {"Key": OPERATION_TAG, "Value": OPERATION}],
    )
    data = _validated_run(dispatcher, seed_input, store)
    data["restore"] = {"cluster_id": temporary, "swap_required": True, "complete": False}
    data["error"] = {
        "Error": "RestoreFailed",
        "Cause": lambda_cause("RestoreFailed", "incompatible-parameters"),
    }
    # WHEN the failure handler runs with the real clean-up
    output = _handle(dispatcher, data)
    # THEN the temporary cluster is gone, the target untouched, and the message says what was removed
    remaining = [c["DBClusterIdentifier"] for c in rds.describe_db_clusters()["DBClusters"]]
    assert temporary not in remaining
    assert TARGET in remaining
    assert any(temporary in line for line in output["cleaned_up"])
    assert inbox.deliveries()[0].message["cleaned_up"] == output["cleaned_up"]
