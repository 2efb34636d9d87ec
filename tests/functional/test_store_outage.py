"""A state table that throttles or refuses: the refresh retries or fails, and the failure is still reported.

Found by the fault matrix (tests/e2e/fault_matrix.py): the dispatcher's own records around a step
raised botocore's ``ClientError``, which the state machine does not retry, so one throttle past
botocore's retries failed a whole refresh; and a table refusing writes stopped the failure
handler before it could notify anyone.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from dispatcher.errors import AwsCallFailed, Retryable
from dispatcher.handler import Dispatcher
from dispatcher.settings import Settings
from refresh.target_lock import take_lock
from tests.conftest import STACK_PLACEMENT
from tests.functional.snapshot_world import request
from tests.functional.sns_inbox import TOPIC_ARN, Inbox

EXECUTION = "arn:aws:states:us-west-2:123456789012:execution:aurora-restore:op-outage"
OPERATION = "op-outage"


def refuse(clients: Any, operations: tuple[str, ...], code: str, status: int = 400) -> list[str]:
    """Answer these DynamoDB operations with ``code`` from now on; returns the refused calls."""
    refused: list[str] = []

    def answer(model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        refused.append(model.name)
        error = {"Error": {"Code": code, "Message": f"injected {code}"}}
        return AWSResponse("https://dynamodb", status, {}, None), {
            **error,
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    for operation in operations:
        clients.add_hook(f"before-call.dynamodb.{operation}", answer)
    return refused


@pytest.fixture
def app(registry: Any, clients: Any, store: Any) -> Dispatcher:
    """A dispatcher whose stack has a notification topic."""
    dispatcher = Dispatcher(registry=registry, settings=Settings(topic_arn=TOPIC_ARN, **STACK_PLACEMENT), clients=clients)
    dispatcher._store = store
    return dispatcher


def validate(app: Dispatcher) -> dict[str, Any]:
    raw = {"body": request(operation_id=OPERATION).to_dict()}
    return app.handle({"step": "validate_request", "execution_id": EXECUTION, "input": raw})


@pytest.mark.parametrize(
    ("code", "status", "raised"),
    [("ThrottlingException", 400, Retryable), ("AccessDeniedException", 400, AwsCallFailed)],
    ids=["throttled", "denied"],
)
def test_a_record_the_table_refuses_fails_the_step_in_the_projects_terms(
    app: Dispatcher, clients: Any, code: str, status: int, raised: type[Exception]
) -> None:
    # GIVEN a table that refuses updates (throttled past botocore's retries, or denied)
    refuse(clients, ("UpdateItem",), code, status)
    # WHEN a step runs; THEN the error is the project's: Retryable is retried by the state machine
    with pytest.raises(raised, match="UpdateItem"):
        validate(app)


def test_the_failure_is_reported_even_when_the_table_refuses_everything(
    app: Dispatcher, clients: Any, store: Any
) -> None:
    # GIVEN a validated request that took the target's lock, then a table refusing every call
    inbox = Inbox(clients)
    data: dict[str, Any] = {"body": request(operation_id=OPERATION).to_dict()}
    data["request"] = validate(app)
    take_lock(store, data["request"]["target_region"], data["request"]["target_cluster_id"], OPERATION)
    refused = refuse(
        clients, ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"), "AccessDeniedException"
    )
    cause = {"errorMessage": "the restored cluster is failed", "errorType": "RestoreFailed"}
    data["error"] = {"Error": "RestoreFailed", "Cause": json.dumps(cause)}
    # WHEN the failure handler runs
    output = app.handle({"step": "handle_failure", "execution_id": EXECUTION, "input": data})
    # THEN the operators are told, with what the table refused and how to free the lock
    messages = inbox.receive()
    assert len(messages) == 1
    message = json.loads(json.loads(messages[0]["Body"])["Message"])
    assert message["status"] == "FAILED"
    assert message["error"]["type"] == "RestoreFailed"
    assert message["store_errors"] and all("AccessDenied" in line for line in message["store_errors"])
    assert "aurora-restore unlock orders-dev --region us-west-2" in message["lock"]
    assert output["notification"]["sent"] is True
    assert {"GetItem", "UpdateItem", "DeleteItem"} <= set(refused)


def test_a_table_throttled_without_end_still_gets_the_failure_reported_once(
    app: Dispatcher, clients: Any
) -> None:
    # GIVEN a validated request, then a state and audit table that throttle every call (past
    # botocore's retries, without end: the state's Retry would only meet it again)
    inbox = Inbox(clients)
    data: dict[str, Any] = {"body": request(operation_id=OPERATION).to_dict()}
    data["request"] = validate(app)
    data["error"] = {"Error": "RestoreFailed", "Cause": "{}"}
    refuse(clients, ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"), "ThrottlingException")
    # WHEN the failure handler runs
    output = app.handle({"step": "handle_failure", "execution_id": EXECUTION, "input": data})
    # THEN it does not raise into a Retry that ends with nobody told: one FAILED message goes out,
    # saying the table throttled and how to free the lock
    messages = inbox.receive()
    assert len(messages) == 1
    message = json.loads(json.loads(messages[0]["Body"])["Message"])
    assert message["status"] == "FAILED"
    assert message["store_errors"] and all("Throttling" in line for line in message["store_errors"])
    assert "aurora-restore unlock orders-dev --region us-west-2" in message["lock"]
    assert output["notification"]["sent"] is True
