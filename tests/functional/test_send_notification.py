"""send_notification: the success message subscribers receive, the final state, the lock, retries."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from dispatcher.errors import AwsCallFailed, ValidationError
from dispatcher.settings import Settings
from dispatcher.store import execution_record
from refresh.target_lock import lock_holder, release_lock, take_lock
from tests.conftest import STACK_PLACEMENT
from tests.functional.sns_inbox import TOPIC_ARN, Inbox

EXECUTION_ID = "arn:aws:states:us-east-1:123456789012:execution:aurora-restore:run-1"
OPERATION = "op-test002"
TARGET = "new-cluster-id"
TARGET_REGION = "us-west-2"


@pytest.fixture
def settings() -> Settings:
    """The stack's settings with a topic in another region than the clients' default."""
    return Settings(topic_arn=TOPIC_ARN, **STACK_PLACEMENT)


@pytest.fixture
def inbox(clients: Any) -> Inbox:
    """The topic and a queue subscribed to it."""
    return Inbox(clients)


def _target_cluster(clients: Any) -> dict[str, Any]:
    """The target as it stands after the swap: the restored cluster under the target's name."""
    return clients("rds", TARGET_REGION).create_db_cluster(
        DBClusterIdentifier=TARGET,
        Engine="aurora-postgresql",
        MasterUsername="postgres",
        MasterUserPassword="password123",
    )["DBCluster"]


def _execution_data(dispatcher: Any, seed_input: dict[str, Any], store: Any) -> dict[str, Any]:
    """The whole execution data as it reaches SendNotification after a swap run.

    The request comes from the real first step; the other outputs have the shapes
    docs/architecture.md gives them, and the dispatcher's per-step durations are on the state item.
    """
    request = dispatcher.handle(
        {"step": "validate_request", "input": seed_input, "execution_id": EXECUTION_ID}
    )
    for step, ms in (("snapshot_check", 812), ("copy_snapshot", 1500), ("restore_snapshot", 2300)):
        store.step_succeeded(OPERATION, step, {"complete": True}, ms)
    take_lock(store, TARGET_REGION, TARGET, OPERATION)
    return {
        **seed_input,
        "request": request,
        "snapshot": {
            "arn": "arn:aws:rds:us-east-1:123456789012:cluster-snapshot:rds:my-source-snapshot",
            "identifier": "rds:my-source-snapshot",
            "engine": "aurora-postgresql",
            "engine_version": "15.4",
            "encrypted": True,
            "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/source",
            "size_gb": 20,
            "source_cluster_id": "prod-cluster",
            "snapshot_type": "automated",
            "target": {"exists": True, "managed": True, "status": "available"},
        },
        "copy": {
            "identifier": "my-source-snapshot-op-test002",
            "arn": "arn:aws:rds:us-west-2:123456789012:cluster-snapshot:my-source-snapshot-op-test002",
            "region": TARGET_REGION,
            "copied": True,
            "reused_from": None,
            "status": "available",
            "complete": True,
            "next_poll_seconds": 0,
        },
        "restore": {
            "cluster_id": "new-cluster-id-new-abc123",
            "swap_required": True,
            # Before the swap: the temporary cluster's endpoint, stale once it is renamed.
            "endpoint": "new-cluster-id-new-abc123.cluster-xyz.us-west-2.rds.amazonaws.com",
            "complete": True,
            "next_poll_seconds": 0,
        },
        "users": {"master_password_reset": True, "roles_created": ["app"]},
        "swap": {
            "phase": "done",
            "old_cluster_id": "new-cluster-id-old-abc123",
            "final_snapshot_id": "new-cluster-id-old-abc123-final-op-test002",
            "complete": True,
        },
        "archive": {
            "kept": ["my-source-snapshot-op-test002", "my-source-snapshot-op-test001"],
            "deleted": ["my-source-snapshot-op-test000"],
            "export_task": {"id": "export-op-test002", "session_token": "hunter2-token"},
        },
    }


def _notify(dispatcher: Any, data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = dispatcher.handle(
        {"step": "send_notification", "input": data, "execution_id": EXECUTION_ID}
    )
    return result


def test_success_message_subject_attributes_state_and_lock(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, clients: Any
) -> None:
    # GIVEN a run that restored and swapped new-cluster-id, holding the target's lock
    cluster = _target_cluster(clients)
    data = _execution_data(dispatcher, seed_input, store)

    # WHEN the success notification step runs
    output = _notify(dispatcher, data)

    # THEN exactly one message went out, with the documented subject and attributes
    [delivery] = inbox.deliveries()
    assert delivery.subject == "[aurora-restore] op-test002 SUCCEEDED: new-cluster-id"
    assert delivery.attributes == {
        "status": "SUCCEEDED",
        "operation_id": OPERATION,
        "target_cluster_id": TARGET,
    }
    message = delivery.message
    assert message["status"] == "SUCCEEDED"
    assert message["operation_id"] == OPERATION
    assert message["execution_id"] == EXECUTION_ID
    assert (message["target_cluster_id"], message["target_region"]) == (TARGET, TARGET_REGION)
    assert message["source_region"] == "us-east-1"
    assert message["strategy"] == "swap"
    assert message["snapshot"]["requested"] == "rds:my-source-snapshot"
    assert message["snapshot"]["restored_from"] == "my-source-snapshot-op-test002"
    assert message["snapshot"]["copied"] is True
    # The endpoint is the target's as RDS reports it now, not the temporary cluster's.
    assert message["endpoint"] == cluster["Endpoint"]
    assert message["replaced_cluster_id"] == "new-cluster-id-old-abc123"
    assert message["replaced_final_snapshot_id"] == "new-cluster-id-old-abc123-final-op-test002"
    assert message["archive"]["kept"] == ["my-source-snapshot-op-test002", "my-source-snapshot-op-test001"]
    assert message["archive"]["retired"] == ["my-source-snapshot-op-test000"]
    durations = message["step_durations_ms"]
    assert durations["snapshot_check"] == 812
    assert durations["copy_snapshot"] == 1500
    assert durations["restore_snapshot"] == 2300
    assert "validate_request" in durations
    assert message["started_at"] == store.get_operation(OPERATION)["started_at"]
    assert isinstance(message["elapsed_seconds"], int)
    # ... nothing secret in it
    assert "hunter2" not in delivery.raw_message
    assert message["archive"]["export_task"]["session_token"] == "***"

    # AND the operation is closed: SUCCEEDED, lock free, notification audited and recorded
    item = store.get_operation(OPERATION)
    assert item["status"] == "SUCCEEDED"
    assert item["finished_at"]
    assert (
        execution_record(item, EXECUTION_ID)["notifications"]["SUCCEEDED"]["message_id"]
        == delivery.message_id
    )
    assert item["results"]["send_notification"]["message_id"] == delivery.message_id
    assert lock_holder(store, TARGET_REGION, TARGET) is None
    notified = [e for e in store.audit_trail(OPERATION) if e["event"] == "notified"]
    assert [e["message_id"] for e in notified] == [delivery.message_id]
    assert output["sent"] is True
    assert output["message_id"] == delivery.message_id
    assert output["lock_released"] is True


def test_a_retried_invocation_does_not_send_a_second_message(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, clients: Any
) -> None:
    # GIVEN a success notification already sent for the operation
    _target_cluster(clients)
    data = _execution_data(dispatcher, seed_input, store)
    first = _notify(dispatcher, data)
    # WHEN Step Functions runs the state again with the same input
    second = _notify(dispatcher, data)
    # THEN subscribers got one message, and the retry reports that one
    assert len(inbox.deliveries()) == 1
    assert second["already_sent"] is True
    assert second["message_id"] == first["message_id"]
    assert second["endpoint"] == first["endpoint"]
    assert store.get_operation(OPERATION)["status"] == "SUCCEEDED"
    assert len([e for e in store.audit_trail(OPERATION) if e["event"] == "notified"]) == 1


def test_without_a_topic_it_says_so_and_still_closes_the_operation(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, clients: Any
) -> None:
    # GIVEN a stack without a topic
    dispatcher.settings = Settings(topic_arn="", **STACK_PLACEMENT)
    _target_cluster(clients)
    data = _execution_data(dispatcher, seed_input, store)
    published: list[str] = []
    clients.add_hook("before-call.sns", lambda model, **_: published.append(model.name))
    # WHEN the success step runs
    with capture_logs() as logs:
        output = _notify(dispatcher, data)
    # THEN nothing is published, the output and the log say why, and the operation is closed
    assert published == []
    assert output["sent"] is False
    assert "no topic configured" in output["reason"]
    assert any(
        entry["event"] == "success notification not sent" and "no topic configured" in entry["reason"]
        for entry in logs
    )
    assert store.get_operation(OPERATION)["status"] == "SUCCEEDED"
    assert lock_holder(store, TARGET_REGION, TARGET) is None
    assert "notification_skipped" in [e["event"] for e in store.audit_trail(OPERATION)]


def test_a_lock_held_by_another_operation_is_left_alone(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox, clients: Any
) -> None:
    # GIVEN the target's lock belongs to another operation (released and retaken meanwhile)
    _target_cluster(clients)
    data = _execution_data(dispatcher, seed_input, store)
    release_lock(store, TARGET_REGION, TARGET, OPERATION)
    take_lock(store, TARGET_REGION, TARGET, "op-other")
    # WHEN the success step runs
    output = _notify(dispatcher, data)
    # THEN the other operation keeps its lock
    assert lock_holder(store, TARGET_REGION, TARGET)["lock_owner"] == "op-other"
    assert output["lock_released"] is False
    assert "op-other" in output["lock"]
    assert len(inbox.deliveries()) == 1


def test_a_publishing_failure_leaves_the_operation_open_for_the_failure_handler(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, clients: Any
) -> None:
    # GIVEN the configured topic does not exist (deleted, or the wrong account)
    _target_cluster(clients)
    data = _execution_data(dispatcher, seed_input, store)
    # WHEN the success step runs
    with pytest.raises(AwsCallFailed, match="Publish"):
        _notify(dispatcher, data)
    # THEN it is not marked SUCCEEDED and the lock stays, for HandleFailure to report and release
    item = store.get_operation(OPERATION)
    assert item["status"] == "RUNNING"
    assert item["last_error"]["step"] == "send_notification"
    assert lock_holder(store, TARGET_REGION, TARGET)["lock_owner"] == OPERATION


def test_a_malformed_topic_arn_is_named(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, clients: Any
) -> None:
    dispatcher.settings = Settings(topic_arn="aurora-restore-notifications", **STACK_PLACEMENT)
    data = _execution_data(dispatcher, seed_input, store)
    with pytest.raises(ValidationError) as caught:
        _notify(dispatcher, data)
    assert "AURORA_RESTORE_TOPIC_ARN" in str(caught.value)
    assert "'aurora-restore-notifications'" in str(caught.value)
    assert store.get_operation(OPERATION)["status"] == "RUNNING"


def test_long_identifiers_keep_the_subject_within_sns_limits(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, inbox: Inbox
) -> None:
    # GIVEN an operation id and a target id at their maximum lengths
    operation = "op-" + "x" * 61
    target = "t" + "-long" * 11 + "-tgt"
    body = {**seed_input["body"], "operation_id": operation, "target_cluster_id": target}
    request = dispatcher.handle({"step": "validate_request", "input": {"body": body}})
    # WHEN the success step publishes (no target cluster to describe: the endpoint is then unknown)
    _notify(dispatcher, {"body": body, "request": request})
    # THEN SNS accepted a subject under 100 characters that still says what happened
    [delivery] = inbox.deliveries()
    assert len(delivery.subject) < 100
    assert delivery.subject.startswith("[aurora-restore] op-xxx")
    assert " SUCCEEDED: t-long" in delivery.subject
    # ... while the attributes carry the ids whole, for filters
    assert delivery.attributes["operation_id"] == operation
    assert delivery.attributes["target_cluster_id"] == target
    assert delivery.message["endpoint"] is None


def test_without_the_request_it_refuses_clearly(dispatcher: Any, seed_input: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"\$\.request"):
        _notify(dispatcher, seed_input)
