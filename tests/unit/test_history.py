"""Reading an execution history as states, steps and progress (what simulate and watch print)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from aurora_restore import render
from aurora_restore.history import ExecutionHistory

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)


def event(event_id: int, kind: str, seconds: float, **details: Any) -> dict[str, Any]:
    """One history event as GetExecutionHistory returns it."""
    key = {
        "TaskStateEntered": "stateEnteredEventDetails",
        "ChoiceStateEntered": "stateEnteredEventDetails",
        "FailStateEntered": "stateEnteredEventDetails",
        "TaskStateExited": "stateExitedEventDetails",
        "ChoiceStateExited": "stateExitedEventDetails",
        "LambdaFunctionScheduled": "lambdaFunctionScheduledEventDetails",
        "LambdaFunctionSucceeded": "lambdaFunctionSucceededEventDetails",
        "LambdaFunctionFailed": "lambdaFunctionFailedEventDetails",
        "ExecutionFailed": "executionFailedEventDetails",
    }[kind]
    return {"id": event_id, "type": kind, "timestamp": T0 + timedelta(seconds=seconds), key: details}


def copy_task(
    first_id: int, start: float, outcome: dict[str, Any] | None, error: str | None = None
) -> list[dict]:
    """A CheckCopyStatus task: scheduled, then succeeded with ``outcome`` or failed with ``error``."""
    events = [
        event(first_id, "TaskStateEntered", start, name="CheckCopyStatus"),
        event(
            first_id + 1, "LambdaFunctionScheduled", start, input=json.dumps({"step": "check_copy_status"})
        ),
    ]
    if error:
        cause = json.dumps({"errorType": error, "errorMessage": "copy x is failed", "stackTrace": []})
        events.append(event(first_id + 2, "LambdaFunctionFailed", start + 1, error=error, cause=cause))
    else:
        events.append(event(first_id + 2, "LambdaFunctionSucceeded", start + 1, output=json.dumps(outcome)))
    events.append(event(first_id + 3, "TaskStateExited", start + 1.5, name="CheckCopyStatus"))
    return events


def test_a_task_is_one_state_with_its_step_output_and_duration() -> None:
    history = ExecutionHistory()
    changes = history.feed(copy_task(1, 0, {"status": "copying", "percent_progress": 40, "complete": False}))
    assert [(change, run.name) for change, run in changes] == [
        ("entered", "CheckCopyStatus"),
        ("exited", "CheckCopyStatus"),
    ]
    run = history.states[0]
    assert (run.step, run.status, run.duration, run.percent, run.attempts) == (
        "check_copy_status",
        "succeeded",
        1.5,
        40,
        1,
    )
    assert "copying [########------------]  40%" in render.state_line(run)


def test_events_already_seen_are_not_applied_twice() -> None:
    history = ExecutionHistory()
    events = copy_task(1, 0, {"complete": True, "percent_progress": 100})
    history.feed(events[:2])
    assert history.feed(events) == [("exited", history.states[0])]
    assert len(history.states) == 1


def test_a_retried_task_counts_attempts_and_the_first_failed_task_is_the_failure() -> None:
    # GIVEN a task that failed once (retried), then failed for good and went to the Fail state
    events = copy_task(1, 0, None, error="Retryable")[:3]
    events.append(event(4, "LambdaFunctionScheduled", 2, input=json.dumps({"step": "check_copy_status"})))
    cause = json.dumps({"errorType": "CopyFailed", "errorMessage": "copy x is failed", "stackTrace": []})
    events.append(event(5, "LambdaFunctionFailed", 3, error="CopyFailed", cause=cause))
    events.append(event(6, "TaskStateExited", 3, name="CheckCopyStatus"))
    events.append(event(7, "FailStateEntered", 4, name="RefreshFailed"))
    events.append(event(8, "ExecutionFailed", 4, error="RefreshFailed"))
    history = ExecutionHistory()
    history.feed(events)
    # THEN the task shows both attempts and the error that ended it
    task = history.states[0]
    assert (task.attempts, task.status, task.error) == (2, "failed", "CopyFailed")
    assert history.status == "FAILED"
    assert history.failure() == {
        "type": "CopyFailed",
        "message": "copy x is failed",
        "state": "CheckCopyStatus",
        "step": "check_copy_status",
    }
    assert history.entered_states() == {"CheckCopyStatus", "RefreshFailed"}
    assert render.state_line(task).endswith("2 attempts, FAILED CopyFailed")


def test_durations_read_the_way_an_operator_reads_them() -> None:
    assert [render.seconds(v) for v in (0.123, 42, 185, 7500)] == ["0.12 s", "42 s", "3 min 5 s", "2 h 5 min"]
    assert render.progress_bar(0) == "[--------------------]   0%"
    assert render.progress_bar(150) == "[####################] 100%"


def test_call_parameters_lose_secrets_but_keep_switches() -> None:
    from aurora_restore.simulate.hooks import redact_params

    params = {
        "DBClusterIdentifier": "orders-dev",
        "ManageMasterUserPassword": True,
        "MasterUserPassword": "hunter2",
        "Tags": [{"Key": "dsn", "Value": "postgresql://app:hunter2@db:5432/orders"}],
    }
    assert redact_params(params) == {
        "DBClusterIdentifier": "orders-dev",
        "ManageMasterUserPassword": True,
        "MasterUserPassword": "***",
        "Tags": [{"Key": "dsn", "Value": "postgresql://app:***@db:5432/orders"}],
    }
