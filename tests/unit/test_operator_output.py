"""What the operator reads: the live line while a refresh waits, watch's lines, tables that fit,
operation ids, the status an execution implies, and AWS errors in one line."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError

from aurora_restore import render
from aurora_restore.history import ExecutionHistory
from dispatcher.settings import Settings
from steps.lib.polling import estimated_finish, poll_fields

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)
DETAILS = {
    "Entered": "stateEnteredEventDetails",
    "Exited": "stateExitedEventDetails",
    "LambdaFunctionScheduled": "lambdaFunctionScheduledEventDetails",
    "LambdaFunctionSucceeded": "lambdaFunctionSucceededEventDetails",
}


def event(event_id: int, kind: str, at: datetime, **details: Any) -> dict[str, Any]:
    """One GetExecutionHistory event."""
    key = next(v for k, v in DETAILS.items() if kind.endswith(k))
    return {"id": event_id, "type": kind, "timestamp": at, key: details}


def polled_then_waiting(output: dict[str, Any], step: str, state: str, wait_state: str) -> ExecutionHistory:
    """An execution that ran one poll task at 02:20:00 and has waited since 02:20:01."""
    polled, waiting = T0 + timedelta(minutes=20), T0 + timedelta(minutes=20, seconds=1)
    history = ExecutionHistory(started_at=T0 - timedelta(minutes=1))
    history.feed(
        [
            event(1, "TaskStateEntered", polled, name=state),
            event(2, "LambdaFunctionScheduled", polled, input=json.dumps({"step": step})),
            event(3, "LambdaFunctionSucceeded", waiting, output=json.dumps(output)),
            event(4, "TaskStateExited", waiting, name=state),
            event(5, "WaitStateEntered", waiting, name=wait_state),
        ]
    )
    return history


def copy_poll() -> dict[str, Any]:
    """check_copy_status's output after two looks: 10 % at 02:00, 50 % at 02:20."""
    settings = Settings(poll_min_seconds=30, poll_max_seconds=900)
    limits: dict[str, Any] = {"max_wait_seconds": 86_400, "settings": settings, "what": "copy"}
    earlier = poll_fields(None, now=T0, complete=False, percent=10, **limits)
    fields = poll_fields(earlier, now=T0 + timedelta(minutes=20), complete=False, percent=50, **limits)
    return {"identifier": "ar-orders-1a2b", "status": "copying", "percent_progress": 50, **fields}


def test_the_live_line_of_a_copy_wait_says_progress_finish_next_check_and_elapsed() -> None:
    poll = {**copy_poll(), "next_poll_seconds": 600}
    history = polled_then_waiting(poll, "check_copy_status", "CheckCopyStatus", "WaitForCopy")
    now = T0 + timedelta(minutes=21)
    # The figure turned to 50 % halfway between the looks (02:10): 39.5 points in 10 min, so the
    # remaining 50 take 12 min 39 s from then: 02:22:39.
    assert estimated_finish(poll) == T0 + timedelta(seconds=1359, microseconds=493671)
    assert render.live_line(history, now) == (
        "02:21:00  WaitForCopy          waiting: copy ar-orders-1a2b copying [##########----------]  50%, "
        "est. finish 02:22 UTC (in 1 min 39 s); next check 02:30:01 (in 9 min 1 s); elapsed 22 min 0 s"
    )


def test_a_queued_copy_has_no_estimate_and_a_finish_on_another_day_shows_the_date() -> None:
    settings = Settings(poll_min_seconds=30, poll_max_seconds=900)
    queued = poll_fields(
        None, now=T0, complete=False, percent=0, max_wait_seconds=86_400, settings=settings, what="x"
    )
    assert estimated_finish({**queued, "percent_progress": 0}) is None
    assert render.poll_text(
        {"identifier": "c", "status": "copying", "percent_progress": 0, **queued}, T0
    ) == ("copy c copying [--------------------]   0%, no estimate until it moves")
    assert render.when(T0 + timedelta(days=1, hours=2), T0) == "2026-11-21 04:00"


def test_the_live_line_of_a_restore_wait_names_the_cluster_and_each_instance() -> None:
    poll = {
        "cluster_id": "orders-dev-new-1a2b",
        "status": "available",
        "instance_statuses": {"orders-dev-1a2b-1": "creating", "orders-dev-1a2b-2": "not-created"},
        "complete": False,
        "next_poll_seconds": 45,
    }
    history = polled_then_waiting(poll, "check_restore_status", "CheckRestoreStatus", "WaitForRestore")
    assert render.live_line(history, T0 + timedelta(minutes=20, seconds=31)) == (
        "02:20:31  WaitForRestore       waiting: cluster orders-dev-new-1a2b available; instances "
        "orders-dev-1a2b-1 creating, orders-dev-1a2b-2 not-created; next check 02:20:46 (in 15 s); "
        "elapsed 21 min 31 s"
    )
    # Past the check time the line says so rather than counting below zero.
    assert "next check 02:20:46 (due now)" in str(render.live_line(history, T0 + timedelta(minutes=25)))


def test_watch_on_a_pipe_repeats_the_live_line_once_a_minute_and_dates_a_new_day() -> None:
    from aurora_restore.commands.watch import Watcher

    # GIVEN a watcher writing to a pipe, its clock moved by the test
    poll = {**copy_poll(), "next_poll_seconds": 600}
    history = polled_then_waiting(poll, "check_copy_status", "CheckCopyStatus", "WaitForCopy")
    now = [T0 + timedelta(minutes=21)]
    out = io.StringIO()
    watcher = Watcher(out, clock=lambda: now[0], live=False, heartbeat=60)
    # WHEN it ticks every 20 s for two minutes
    for _ in range(7):
        watcher.tick(history)
        now[0] += timedelta(seconds=20)
    # THEN the live line was printed at the start and after each full minute, under its date
    lines = out.getvalue().splitlines()
    assert lines[0] == "-- 2026-11-20 (UTC) --"
    assert [line[:8] for line in lines[1:]] == ["02:21:00", "02:22:00", "02:23:00"]
    # AND a stamped line on the next day is preceded by the date
    watcher.print("SUCCEEDED after 1 d 0 h", T0 + timedelta(days=1))
    assert out.getvalue().splitlines()[-2:] == ["-- 2026-11-21 (UTC) --", "02:00:00  SUCCEEDED after 1 d 0 h"]


def test_watch_on_a_terminal_redraws_the_live_line_in_place() -> None:
    from aurora_restore.commands.watch import Watcher

    poll = {**copy_poll(), "next_poll_seconds": 600}
    history = polled_then_waiting(poll, "check_copy_status", "CheckCopyStatus", "WaitForCopy")
    out = io.StringIO()
    watcher = Watcher(out, clock=lambda: T0 + timedelta(minutes=21), live=True)
    watcher.tick(history)
    watcher.tick(history)
    watcher.print("CheckCopyStatus ...", T0 + timedelta(minutes=30))
    text = out.getvalue()
    # Each redraw and the permanent line after them start by wiping the line.
    assert text.count("\r\033[K") == 3
    assert text.endswith("\r\033[K-- 2026-11-20 (UTC) --\n02:30:00  CheckCopyStatus ...\n")


def test_a_table_cuts_its_last_column_to_the_width() -> None:
    rows = [["02:00:01", "copy_snapshot", "succeeded", "x" * 200], ["02:00:02", "swap", "started", "short"]]
    text = render.table(rows, ["TIME", "STEP", "EVENT", "DETAIL"], width=60)
    lines = text.splitlines()
    assert max(map(len, lines)) == 60
    assert lines[1].endswith("x...")
    assert lines[2].endswith("short")
    assert render.table(rows, ["TIME", "STEP", "EVENT", "DETAIL"]).splitlines()[1].endswith("x" * 200)


def test_operation_ids_are_new_each_time_and_valid_execution_names() -> None:
    from aurora_restore.operator import new_operation_id
    from refresh.request import OPERATION_ID_PATTERN

    ids = {new_operation_id(T0) for _ in range(500)}
    assert len(ids) == 500
    for operation_id in ids:
        assert re.fullmatch(r"op-20261120-020000-[0-9a-f]{8}", operation_id)
        # Step Functions: 1-80 characters; a retry appends "-retry-NN".
        assert OPERATION_ID_PATTERN.match(operation_id) and len(operation_id + "-retry-99") <= 80


@pytest.mark.parametrize(
    ("item_status", "execution_status", "shown"),
    [
        ("RUNNING", "ABORTED", "ABORTED"),
        ("RUNNING", "TIMED_OUT", "TIMED_OUT"),
        ("RUNNING", "FAILED", "FAILED"),
        ("SUCCEEDED", "RUNNING", "RUNNING"),  # a retry started; its first step has not run yet
        ("FAILED", "SUCCEEDED", "FAILED"),
        ("SUCCEEDED", "SUCCEEDED", "SUCCEEDED"),
        ("FAILED", None, "FAILED"),  # the execution is gone (kept 90 days)
    ],
)
def test_the_status_shown_is_the_executions_unless_it_cannot_know(
    item_status: str, execution_status: str | None, shown: str
) -> None:
    from aurora_restore.operator import effective_status

    execution = None if execution_status is None else {"status": execution_status}
    assert effective_status({"status": item_status}, execution) == shown


def client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def test_aws_errors_read_as_what_was_refused_and_what_to_do() -> None:
    from aurora_restore.boundary import AwsCall, _last_call, explain

    arn = "arn:aws:states:eu-central-1:123456789012:execution:refresh:op-ops1"
    _last_call.set(AwsCall("states:DescribeExecution", "eu-central-1", arn, "execution"))
    assert explain(
        client_error("ExecutionDoesNotExist", "Execution Does Not Exist", "DescribeExecution")
    ) == (
        "no execution op-ops1 in eu-central-1 on the stack's state machine: check the operation id "
        "(aurora-restore start prints it; notifications carry it as operation_id)",
        2,
    )
    assert explain(
        client_error("ExpiredTokenException", "The security token\n included has expired", "X")
    ) == (
        "AWS did not accept your credentials for states:DescribeExecution (ExpiredTokenException: The "
        "security token included has expired); refresh them (aws sso login, aws configure, new session "
        "keys) or pass --profile",
        2,
    )
    assert explain(client_error("InternalFailure", "", "DescribeExecution")) == (
        "AWS refused states:DescribeExecution on execution op-ops1 in eu-central-1 (InternalFailure)",
        2,
    )
    from botocore.exceptions import EndpointConnectionError

    assert explain(EndpointConnectionError(endpoint_url="https://states.eu-central-1.amazonaws.com/")) == (
        "cannot reach AWS for states:DescribeExecution (Could not connect to the endpoint URL: "
        '"https://states.eu-central-1.amazonaws.com/"); check the network, proxy and --region',
        2,
    )
    # Not an operator's error: a bug keeps its traceback.
    assert explain(KeyError("x")) is None


def test_every_runbook_section_the_commands_point_to_exists() -> None:
    from pathlib import Path

    from aurora_restore.operator import RUNBOOK, RUNBOOK_DEFAULT_SECTION, RUNBOOK_SECTIONS

    headings, fenced = [], False
    for line in (Path(__file__).parents[2] / RUNBOOK).read_text().splitlines():
        fenced = fenced != line.startswith("```")
        if line.startswith("#") and not fenced:
            headings.append(line.lstrip("#").strip())
    # GitHub's anchors: the heading in lower case, punctuation dropped, spaces as hyphens.
    anchors = {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
    for section in {RUNBOOK_DEFAULT_SECTION, *RUNBOOK_SECTIONS.values()}:
        assert section in anchors, f"{RUNBOOK} has no heading for #{section}"


def test_a_finished_restore_poll_names_the_cluster_and_its_instances() -> None:
    poll = {
        "cluster_id": "orders-dev-new-1a2b",
        "status": "available",
        "instance_statuses": {"orders-dev-1a2b-1": "available", "orders-dev-1a2b-2": "creating"},
        "complete": False,
        "next_poll_seconds": 45,
    }
    history = polled_then_waiting(poll, "check_restore_status", "CheckRestoreStatus", "WaitForRestore")
    assert render.state_line(history.states[0]).endswith(
        "cluster orders-dev-new-1a2b available; instances orders-dev-1a2b-1 available, orders-dev-1a2b-2 creating"
    )


def test_status_shows_the_checks_of_the_execution_it_describes_one_line_each() -> None:
    from aurora_restore.commands.status import check_lines

    arn = "arn:aws:states:eu-central-1:123456789012:execution:aurora-restore:op-1-retry-1"
    failed = {"name": "masked", "expected": "no rows", "seen": "at least 1 row", "ok": False, "duration_ms": 3}
    passed = {"name": "masked", "expected": "no rows", "seen": "0 rows", "ok": True, "duration_ms": 2}
    item = {"executions": {"op-1": {"checks": [failed]}, "op-1-retry-1": {"checks": [passed]}}}
    # The retry's execution: its own result, not the first run's
    assert check_lines(item, {"arn": arn}) == ["PASS masked (expected no rows, saw 0 rows; 2 ms)"]
    # No execution known any more: the latest record that ran checks
    assert check_lines(item, {}) == ["PASS masked (expected no rows, saw 0 rows; 2 ms)"]
    assert check_lines({"executions": {"op-1": {"checks": [failed]}}}, {}) == [
        "FAIL masked (expected no rows, saw at least 1 row; 3 ms)"
    ]
    assert check_lines({}, {}) == []
