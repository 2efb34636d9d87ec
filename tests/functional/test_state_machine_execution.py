"""The generated definition, run by moto's Step Functions engine with scripted step outputs.

The steps here are stand-ins that return what docs/architecture.md says each step returns (the
real steps are exercised end to end by the rehearsal); what is under test is the definition:
its paths, Choices, Waits, Catches and ends. moto's Lambda needs Docker to run code, so each
invocation of the dispatcher is answered in process by ``ScriptedSteps``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from infra.state_machine import build_definition, substitute
from tests.contract import contract_registry

pytestmark = pytest.mark.template

ROLE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
SEED_INPUT = {
    "body": {
        "operation_id": "op-test002",
        "snapshot_id": "rds:my-source-snapshot",
        "source_region": "us-east-1",
        "target_region": "us-west-2",
        "target_cluster_id": "new-cluster-id",
    }
}


class StepFailed(Exception):
    """Raised by a scripted step: becomes a Lambda error with ``error_type`` as its errorType."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class ScriptedSteps:
    """Answers the dispatcher's invocations: one callable per step, every event kept."""

    def __init__(self, script: dict[str, Callable[[dict[str, Any], int], dict[str, Any]]]) -> None:
        self.script = script
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> tuple[str, bool, str]:
        self.events.append(event)
        step = event["step"]
        calls = sum(1 for e in self.events if e["step"] == step)
        try:
            output = self.script[step](event, calls)
        except StepFailed as exc:
            return json.dumps({"errorType": exc.error_type, "errorMessage": str(exc)}), True, ""
        return json.dumps(output), False, ""

    def steps(self) -> list[str]:
        return [e["step"] for e in self.events]

    def event(self, step: str) -> dict[str, Any]:
        return next(e for e in self.events if e["step"] == step)


def polled(
    key_fields: dict[str, Any], *, rounds: int, events: bool = True
) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    """A poll-loop step that reports complete on its ``rounds``-th call (next poll, or the waiting
    Task's timeout: 1 s); until then it waits for events when ``events`` (they are trusted)."""

    def answer(event: dict[str, Any], calls: int) -> dict[str, Any]:
        complete = calls >= rounds
        return {
            **key_fields,
            "complete": complete,
            "next_poll_seconds": 1,
            "fallback_seconds": 1,
            "wait_for_events": events and not complete,
            "polls": calls,
        }

    return answer


def _send_success(event: dict[str, Any], output: dict[str, Any]) -> None:
    boto3.client("stepfunctions", region_name="us-east-1").send_task_success(
        taskToken=event["task_token"], output=json.dumps(output)
    )


def answered(check: Callable[[dict[str, Any], int], dict[str, Any]]) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    """A waiting half whose wait is answered at once with ``check``'s output, as an event would."""

    def answer(event: dict[str, Any], calls: int) -> dict[str, Any]:
        output = check(event, calls)
        _send_success(event, output)
        return output

    return answer


def unanswered(check: Callable[[dict[str, Any], int], dict[str, Any]]) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    """A waiting half no event answers (every event lost): its Task times out and runs again, and
    it ends its own wait when its check finds the work complete or events no longer trusted (as
    the real waiting half does)."""

    def answer(event: dict[str, Any], calls: int) -> dict[str, Any]:
        output = check(event, calls)
        if output["complete"] or not output["wait_for_events"]:
            _send_success(event, output)
        return output

    return answer


def refresh_script(*, strategy: str = "swap", target_exists: bool = True) -> dict[str, Any]:
    """Contract-shaped outputs for a refresh of an existing managed target."""

    def validate(event: dict[str, Any], calls: int) -> dict[str, Any]:
        return {**event["input"]["body"], "strategy": strategy}

    swap_required = strategy == "swap" and target_exists
    return {
        "validate_request": validate,
        "snapshot_check": lambda e, n: {
            "identifier": "rds:my-source-snapshot",
            "source_kind": "snapshot",
            "target": {"exists": target_exists},
        },
        "copy_snapshot": polled({"identifier": "ar-my-source-snapshot-1"}, rounds=99),
        # The copy's wait is answered (an event), the second time with the copy complete.
        "await_copy": answered(polled({"identifier": "ar-my-source-snapshot-1"}, rounds=2)),
        "check_copy_status": polled({"identifier": "ar-my-source-snapshot-1"}, rounds=2),
        "delete_target": polled({"cluster_id": "new-cluster-id"}, rounds=99),
        "await_delete": answered(polled({"cluster_id": "new-cluster-id"}, rounds=1)),
        "check_delete_status": polled({"cluster_id": "new-cluster-id"}, rounds=1),
        "restore_snapshot": polled({"cluster_id": "tmp", "swap_required": swap_required}, rounds=99),
        # The restore's event is lost: the waiting Task times out, and its second run (the
        # fallback poll) finds the restore done.
        "await_restore": unanswered(polled({"cluster_id": "tmp", "swap_required": swap_required}, rounds=2)),
        "check_restore_status": polled({"cluster_id": "tmp", "swap_required": swap_required}, rounds=1),
        "setup_db_users": lambda e, n: {"roles_created": ["app"]},
        "run_checks": lambda e, n: {"ok": True, "results": [], "counts": {"total": 0, "ok": 0, "failed": 0}},
        "swap_clusters": polled({"phase": "renamed-old"}, rounds=1),
        "await_swap": answered(polled({"phase": "done"}, rounds=1)),
        "check_swap_status": polled({"phase": "done"}, rounds=1),
        "archive_snapshot": lambda e, n: {"copies_deleted": []},
        "send_notification": lambda e, n: {"message_id": "m-1", "subject": "SUCCEEDED"},
        "handle_failure": lambda e, n: {"notification_sent": True, "lock_released": True},
    }


@pytest.fixture
def stepfunctions_world(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[ScriptedSteps], str]]:
    """A moto world running state machines; yields ``deploy(steps) -> state machine ARN``."""
    from moto import mock_aws
    from moto.awslambda.models import LambdaFunction

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        region = "us-east-1"
        role = boto3.client("iam", region_name=region).create_role(
            RoleName="dispatcher", AssumeRolePolicyDocument=json.dumps(ROLE_TRUST)
        )["Role"]["Arn"]

        def deploy(steps: ScriptedSteps) -> str:
            monkeypatch.setattr(LambdaFunction, "_invoke_lambda", lambda self, event=None: steps(event))
            function = boto3.client("lambda", region_name=region).create_function(
                FunctionName="aurora-restore-dispatcher-test",
                Runtime="python3.12",
                Role=role,
                Handler="dispatcher.handler.lambda_handler",
                Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
            )["FunctionArn"]
            definition = substitute(build_definition(contract_registry()), function)
            return boto3.client("stepfunctions", region_name=region).create_state_machine(
                name="aurora-restore-pipeline-test", definition=json.dumps(definition), roleArn=role
            )["stateMachineArn"]

        yield deploy


def run(state_machine_arn: str, execution_input: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Start an execution, wait for its end; return its description and the states entered."""
    client = boto3.client("stepfunctions", region_name="us-east-1")
    execution_arn = client.start_execution(
        stateMachineArn=state_machine_arn, input=json.dumps(execution_input)
    )["executionArn"]
    deadline = time.monotonic() + 60
    while True:
        described = client.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    history = client.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    return described, entered


def test_swap_refresh_waits_for_the_copy_then_swaps_and_succeeds(stepfunctions_world: Any) -> None:
    # GIVEN a target that exists and the default swap strategy; the copy needs two checks
    steps = ScriptedSteps(refresh_script(strategy="swap"))
    arn = stepfunctions_world(steps)

    # WHEN the seed's own input starts a refresh
    described, entered = run(arn, SEED_INPUT)

    # THEN moto accepted the definition, and the refresh succeeds through the copy loop, the
    # restore, the users, the checks and the swap
    assert described["status"] == "SUCCEEDED", described
    assert steps.steps() == [
        "validate_request",
        "snapshot_check",
        "copy_snapshot",
        "await_copy",
        "await_copy",
        "restore_snapshot",
        "await_restore",
        "await_restore",
        "setup_db_users",
        "run_checks",
        "swap_clusters",
        "archive_snapshot",
        "send_notification",
    ]
    # The copy's waits ended on their tokens; the restore's wait timed out into its fallback poll
    # (the waiting Task again), and no loop polled through its Wait state.
    assert entered.count("WaitForCopy") == 2 and "CheckCopyStatus" not in entered
    assert entered.count("WaitForRestore") == 2 and "CheckRestoreStatus" not in entered
    assert not [state for state in entered if state.startswith("WaitToCheck")]
    assert "DeleteTarget" not in entered and entered[-1] == "RefreshSucceeded"
    # Each step got exactly what it reads, and the request was never overwritten.
    assert set(steps.event("restore_snapshot")) == {"step", "execution_id", "request", "snapshot", "copy"}
    assert steps.event("restore_snapshot")["request"]["target_cluster_id"] == "new-cluster-id"
    notified = steps.event("send_notification")["input"]
    assert {"request", "snapshot", "copy", "restore", "users", "checks", "swap", "archive"} <= set(notified)
    # The raw input was dropped after validation: the request travels once.
    assert "body" not in notified
    assert notified["request"]["operation_id"] == "op-test002"
    assert json.loads(described["output"])["notification"]["message_id"] == "m-1"


def test_delete_first_deletes_the_target_before_restoring_and_does_not_swap(stepfunctions_world: Any) -> None:
    steps = ScriptedSteps(refresh_script(strategy="delete-first"))
    arn = stepfunctions_world(steps)

    described, entered = run(arn, SEED_INPUT)

    assert described["status"] == "SUCCEEDED", described
    assert entered.index("DeleteTarget") < entered.index("RestoreSnapshot")
    assert "WaitForDelete" in entered and "SwapClusters" not in entered


def test_delete_first_with_no_target_restores_straight_away(stepfunctions_world: Any) -> None:
    steps = ScriptedSteps(refresh_script(strategy="delete-first", target_exists=False))
    arn = stepfunctions_world(steps)

    described, entered = run(arn, SEED_INPUT)

    assert described["status"] == "SUCCEEDED", described
    assert "DeleteTarget" not in entered and "SwapClusters" not in entered


def test_while_events_are_not_trusted_the_loops_poll_through_their_wait_states(
    stepfunctions_world: Any,
) -> None:
    # GIVEN events not trusted (a fallback poll found work done that no event reported): every
    # loop half says so
    script = refresh_script()
    script["copy_snapshot"] = polled({"identifier": "ar-my-source-snapshot-1"}, rounds=99, events=False)
    script["check_copy_status"] = polled({"identifier": "ar-my-source-snapshot-1"}, rounds=2, events=False)
    script["restore_snapshot"] = polled({"cluster_id": "tmp", "swap_required": True}, rounds=99, events=False)
    script["check_restore_status"] = polled({"cluster_id": "tmp", "swap_required": True}, rounds=1, events=False)
    steps = ScriptedSteps(script)
    arn = stepfunctions_world(steps)

    # WHEN the refresh runs
    described, entered = run(arn, SEED_INPUT)

    # THEN the copy and restore loops poll as before there were events: Wait, then check
    assert described["status"] == "SUCCEEDED", described
    assert "await_copy" not in steps.steps() and "await_restore" not in steps.steps()
    assert entered.count("WaitToCheckCopy") == 2 and entered.count("CheckCopyStatus") == 2
    assert entered.count("WaitToCheckRestore") == 1 and entered.count("CheckRestoreStatus") == 1
    assert "WaitForCopy" not in entered and "WaitForRestore" not in entered


def test_a_failed_restore_is_reported_and_ends_the_execution_failed(stepfunctions_world: Any) -> None:
    # GIVEN a restore whose cluster ends in a failed state: the waiting half's own check says so
    # and fails the invocation, which fails the waiting Task with the check's error
    script = refresh_script()

    def failed(event: dict[str, Any], calls: int) -> dict[str, Any]:
        raise StepFailed("RestoreFailed", "cluster tmp is incompatible-parameters")

    script["await_restore"] = failed
    steps = ScriptedSteps(script)
    arn = stepfunctions_world(steps)

    # WHEN the refresh runs
    described, entered = run(arn, SEED_INPUT)

    # THEN the handler gets everything so far plus the error, and the execution FAILS
    assert described["status"] == "FAILED"
    assert described["error"] == "RefreshFailed"
    assert entered[-2:] == ["HandleFailure", "RefreshFailed"]
    assert "SetupDBUsers" not in entered and "SendNotification" not in entered
    handed = steps.event("handle_failure")["input"]
    assert handed["error"]["Error"] == "RestoreFailed"
    assert "incompatible-parameters" in handed["error"]["Cause"]
    assert handed["request"]["operation_id"] == "op-test002" and "copy" in handed


def test_a_bad_request_in_the_first_state_is_still_reported(stepfunctions_world: Any) -> None:
    script = refresh_script()

    def refuse(event: dict[str, Any], calls: int) -> dict[str, Any]:
        raise StepFailed("ValidationError", "target_cluster_id: '' is not valid")

    script["validate_request"] = refuse
    steps = ScriptedSteps(script)
    arn = stepfunctions_world(steps)

    described, _ = run(arn, {"snapshot_id": "x"})

    assert described["status"] == "FAILED"
    assert steps.steps() == ["validate_request", "handle_failure"]
    # The handler is given the raw input and the error; no request exists to read.
    handed = steps.event("handle_failure")["input"]
    assert set(handed) == {"snapshot_id", "error"}
    assert handed["error"]["Error"] == "ValidationError"
    assert json.loads(handed["error"]["Cause"])["errorMessage"] == "target_cluster_id: '' is not valid"


@pytest.mark.slow
def test_when_the_failure_handler_itself_fails_the_execution_still_fails(stepfunctions_world: Any) -> None:
    script = refresh_script()

    def refuse(event: dict[str, Any], calls: int) -> dict[str, Any]:
        raise StepFailed("ValidationError", "bad request")

    def broken(event: dict[str, Any], calls: int) -> dict[str, Any]:
        raise StepFailed("AwsCallFailed", "sns:Publish denied")

    script["validate_request"], script["handle_failure"] = refuse, broken
    steps = ScriptedSteps(script)
    arn = stepfunctions_world(steps)

    described, entered = run(arn, SEED_INPUT)

    assert described["status"] == "FAILED"
    assert described["error"] == "AwsCallFailed"
    assert steps.steps().count("handle_failure") == 3  # first try + its own two retries
    assert "RefreshSucceeded" not in entered
