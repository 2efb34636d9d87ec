"""The generated state machine: each rule that the seed's hand-written sketch broke."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from dispatcher.errors import retryable_error_names
from infra.pipeline import MAX_WAIT_LIMITS_SECONDS, TASK_TIMEOUT_SECONDS
from infra.state_machine import (
    DISPATCHER_ARN_PLACEHOLDER,
    LAMBDA_TRANSIENT_ERRORS,
    WAIT_FOR_TASK_TOKEN_RESOURCE,
    build_definition,
    to_mermaid,
    transitions,
)
from tests.contract import contract_registry, contract_steps

pytestmark = pytest.mark.template

SEED_STATES = (
    "SnapshotCheck",
    "CopySnapshot",
    "CheckCopyStatus",
    "IsCopyComplete",
    "WaitForCopy",
    "DeleteTarget",
    "RestoreSnapshot",
    "CheckRestoreStatus",
    "IsRestoreComplete",
    "WaitForRestore",
    "SetupDBUsers",
    "ArchiveSnapshot",
    "SendNotification",
    "HandleFailure",
)


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return build_definition(contract_registry())


def tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in definition["States"].items() if s["Type"] == "Task"}


def test_keeps_the_seed_state_names_and_adds_the_contracts(definition: dict[str, Any]) -> None:
    names = set(definition["States"])
    assert set(SEED_STATES) <= names
    assert {step.state_name for step in contract_steps()} <= names
    assert {"ChooseStrategy", "NeedsSwap", "IsDeleteComplete", "WaitForSwap", "RefreshSucceeded"} <= names


def test_first_state_normalises_the_raw_input(definition: dict[str, Any]) -> None:
    first = definition["States"][definition["StartAt"]]
    assert definition["StartAt"] == "ValidateRequest"
    assert first["Parameters"] == {
        "step": "validate_request",
        "execution_id.$": "$$.Execution.Id",
        "input.$": "$",
    }
    # The output is the validated request alone: the raw input is dropped, not carried twice.
    assert first["ResultSelector"] == {"request.$": "$"}
    assert first["ResultPath"] == "$"


def test_every_task_invokes_the_dispatcher_with_its_step_and_what_it_reads(
    definition: dict[str, Any],
) -> None:
    by_state = {step.state_name: step for step in contract_steps()}
    for name, state in tasks(definition).items():
        row = by_state[name]
        expected = {"step": row.name, "execution_id.$": "$$.Execution.Id"}
        for key in row.reads:
            expected.update({"input.$": "$"} if key == "$" else {f"{key}.$": f"$.{key}"})
        if state["Resource"] == WAIT_FOR_TASK_TOKEN_RESOURCE:
            # A waiting Task invokes the same function through the integration, with its token.
            assert name.startswith("WaitFor"), name
            assert state["Parameters"] == {
                "FunctionName": DISPATCHER_ARN_PLACEHOLDER,
                "Payload": {**expected, "task_token.$": "$$.Task.Token"},
            }, name
        else:
            assert state["Resource"] == DISPATCHER_ARN_PLACEHOLDER, name
            assert state["Parameters"] == expected, name
        if name == definition["StartAt"]:
            assert (state["ResultPath"], state["ResultSelector"]) == ("$", {f"{row.result_key}.$": "$"})
        else:
            assert state["ResultPath"] == f"$.{row.result_key}", name


def test_no_state_overwrites_the_request_or_the_whole_data(definition: dict[str, Any]) -> None:
    # Only the first state replaces the whole data: with {"request": <validated request>}.
    replacing = [n for n, s in tasks(definition).items() if s.get("ResultPath") in (None, "$")]
    assert replacing == ["ValidateRequest"]
    assert tasks(definition)["ValidateRequest"]["ResultSelector"] == {"request.$": "$"}
    writers = [n for n, s in tasks(definition).items() if s["ResultPath"] == "$.request"]
    assert writers == []


def test_choice_states_read_the_fields_the_steps_return(definition: dict[str, Any]) -> None:
    states = definition["States"]
    for choice, key, done in (
        ("IsSourceShareComplete", "snapshot", "NeedsCopy"),
        ("IsCopyComplete", "copy", "SharedFromSourceAccount"),
        ("IsDeleteComplete", "delete", "RestoreSnapshot"),
        ("IsRestoreComplete", "restore", "SetupDBUsers"),
        ("IsSwapComplete", "swap", "NeedsArchive"),
    ):
        assert states[choice]["Choices"][0] == {
            "Variable": f"$.{key}.complete",
            "BooleanEquals": True,
            "Next": done,
        }
        if key != "snapshot":  # the share inside another account only polls: its events go there
            wait = states[choice]["Choices"][1]
            assert wait["Variable"] == f"$.{key}.wait_for_events" and wait["Next"].startswith("WaitFor")
    # Another account's snapshot is shared out of it before the copy and retired after it.
    for choice, step_state, after in (
        ("NeedsSourceShare", "ShareSourceSnapshot", "NeedsCopy"),
        ("SharedFromSourceAccount", "RetireSourceShare", "ChooseStrategy"),
    ):
        assert states[choice]["Choices"] == [
            {"Variable": "$.snapshot.source_share_required", "BooleanEquals": True, "Next": step_state}
        ]
        assert states[choice]["Default"] == after
    strategy = states["ChooseStrategy"]
    assert strategy["Choices"][0]["And"] == [
        {"Variable": "$.request.strategy", "StringEquals": "delete-first"},
        {"Variable": "$.snapshot.target.exists", "BooleanEquals": True},
    ]
    assert strategy["Choices"][0]["Next"] == "DeleteTarget"
    assert strategy["Default"] == "RestoreSnapshot"
    swap = states["NeedsSwap"]
    assert swap["Choices"] == [
        {"Variable": "$.restore.swap_required", "BooleanEquals": True, "Next": "SwapClusters"}
    ]
    assert swap["Default"] == "NeedsArchive"


def test_a_live_cluster_source_takes_the_short_path_past_the_copy_and_the_archive(
    definition: dict[str, Any],
) -> None:
    # GIVEN the generated definition
    states = definition["States"]
    from_snapshot = {"Variable": "$.snapshot.source_kind", "StringEquals": "snapshot"}
    # THEN only a snapshot source enters the copy loop; a live cluster passes it with $.copy written
    assert states["SnapshotCheck"]["Next"] == "NeedsSourceShare"
    assert states["NeedsSourceShare"]["Default"] == "NeedsCopy"  # a live cluster is never shared
    assert states["NeedsCopy"]["Choices"] == [{**from_snapshot, "Next": "CopySnapshot"}]
    assert states["NeedsCopy"]["Default"] == "NoCopyNeeded"
    skipped = states["NoCopyNeeded"]
    assert skipped["Type"] == "Pass" and skipped["ResultPath"] == "$.copy"
    assert skipped["Result"]["copied"] is False and skipped["Result"]["complete"] is True
    assert skipped["Next"] == "SharedFromSourceAccount"
    assert states["SharedFromSourceAccount"]["Default"] == "ChooseStrategy"
    # AND the restore reads $.copy, which both paths wrote
    assert states["RestoreSnapshot"]["Parameters"]["copy.$"] == "$.copy"
    # AND only a snapshot source is archived; a live cluster goes straight to the notification
    assert states["NeedsArchive"]["Choices"] == [{**from_snapshot, "Next": "ArchiveSnapshot"}]
    assert states["NeedsArchive"]["Default"] == "SendNotification"


def test_every_poll_loop_waits_as_long_as_the_step_says(definition: dict[str, Any]) -> None:
    states = definition["States"]
    for wait, key, check in (
        ("WaitForCopy", "copy", "CheckCopyStatus"),
        ("WaitForDelete", "delete", "CheckDeleteStatus"),
        ("WaitForRestore", "restore", "CheckRestoreStatus"),
        ("WaitForSwap", "swap", "CheckSwapStatus"),
    ):
        # The wait ends on the token (an event, or its own check) or after its fallback, when the
        # timeout runs the waiting half again (its check is the fallback poll).
        state = states[wait]
        assert (state["Type"], state["Resource"]) == ("Task", WAIT_FOR_TASK_TOKEN_RESOURCE)
        assert state["TimeoutSecondsPath"] == f"$.{key}.fallback_seconds"
        assert "TimeoutSeconds" not in state
        assert state["Catch"][0] == {
            "ErrorEquals": ["States.Timeout"],
            "ResultPath": f"$.{key}.fallback",
            "Next": wait,
        }
        assert state["ResultPath"] == f"$.{key}"
        assert state["Next"] == states[check]["Next"]
        # While events are not trusted the loop polls through a Wait state on the policy's schedule
        choice = state["Next"]
        assert states[choice]["Default"] == f"WaitToCheck{wait[len('WaitFor') :]}"
        assert states[states[choice]["Default"]] == {
            "Type": "Wait",
            "SecondsPath": f"$.{key}.next_poll_seconds",
            "Next": check,
        }


def test_retries_lambda_errors_as_aws_recommends_and_retryable_with_jitter(
    definition: dict[str, Any],
) -> None:
    for name, state in tasks(definition).items():
        lambda_rule, retryable_rule = state["Retry"][0], state["Retry"][1]
        assert lambda_rule["ErrorEquals"] == list(LAMBDA_TRANSIENT_ERRORS), name
        assert (lambda_rule["IntervalSeconds"], lambda_rule["MaxAttempts"], lambda_rule["BackoffRate"]) == (
            2,
            6,
            2,
        )
        assert retryable_rule["ErrorEquals"] == retryable_error_names()
        assert {"Retryable", "ResourceBusy"} <= set(retryable_rule["ErrorEquals"])
        for rule in state["Retry"]:
            assert rule["JitterStrategy"] == "FULL"
            assert rule["MaxDelaySeconds"] >= rule["IntervalSeconds"]


def test_every_task_but_the_handler_is_caught_into_it_with_the_error_beside_the_data(
    definition: dict[str, Any],
) -> None:
    for name, state in tasks(definition).items():
        if name == "HandleFailure":
            continue
        assert state["Catch"][-1:] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "HandleFailure"}
        ]
        # Only a waiting Task catches something first: its own timeout, into its loop's check.
        assert len(state["Catch"]) == (2 if name.startswith("WaitFor") else 1), name


def test_a_failed_refresh_ends_failed_even_when_the_handler_fails(definition: dict[str, Any]) -> None:
    handler = definition["States"]["HandleFailure"]
    assert handler["Parameters"] == {
        "step": "handle_failure",
        "execution_id.$": "$$.Execution.Id",
        "input.$": "$",
    }
    assert "Catch" not in handler  # never caught into itself: its own failure fails the execution
    assert handler["Retry"][-1]["ErrorEquals"] == ["States.ALL"]
    assert handler["Next"] == "RefreshFailed"
    assert definition["States"]["RefreshFailed"]["Type"] == "Fail"
    assert definition["States"]["SendNotification"]["Next"] == "RefreshSucceeded"
    assert definition["States"]["RefreshSucceeded"] == {"Type": "Succeed"}
    assert not [n for n, s in definition["States"].items() if s.get("End")]


def test_everything_has_a_timeout(definition: dict[str, Any]) -> None:
    for name, state in tasks(definition).items():
        if name.startswith("WaitFor"):
            assert "TimeoutSecondsPath" in state, name  # the poll policy's interval
        else:
            assert state["TimeoutSeconds"] == TASK_TIMEOUT_SECONDS, name
    # Longer than every bounded wait together: the steps' PollTimeout (reported) comes first.
    waits = (
        MAX_WAIT_LIMITS_SECONDS["copy_max_wait_seconds"]
        + 3 * MAX_WAIT_LIMITS_SECONDS["restore_max_wait_seconds"]
    )
    assert definition["TimeoutSeconds"] > waits
    assert definition["TimeoutSeconds"] <= 365 * 24 * 3600  # Step Functions' own limit


def test_every_transition_lands_on_a_state_and_every_state_is_reachable(definition: dict[str, Any]) -> None:
    states = definition["States"]
    edges = list(transitions(definition))
    assert all(target in states for _, target, _ in edges)
    seen, queue = {definition["StartAt"]}, deque([definition["StartAt"]])
    while queue:
        current = queue.popleft()
        for source, target, _ in edges:
            if source == current and target not in seen:
                seen.add(target)
                queue.append(target)
    assert seen == set(states)


def test_the_builtin_pipeline_is_derived_from_where_each_step_says_it_runs() -> None:
    assert contract_steps()[-1].name == "handle_failure"
    assert [step.name for step in contract_steps() if step.name != "handle_failure"] == [
        "validate_request",
        "snapshot_check",
        "share_source_snapshot",
        "check_source_share_status",
        "copy_snapshot",
        "await_copy",
        "check_copy_status",
        "retire_source_share",
        "delete_target",
        "await_delete",
        "check_delete_status",
        "restore_snapshot",
        "await_restore",
        "check_restore_status",
        "setup_db_users",
        "run_checks",
        "swap_clusters",
        "await_swap",
        "check_swap_status",
        "archive_snapshot",
        "send_notification",
    ]


def test_the_diagram_shows_every_state_and_the_branches(definition: dict[str, Any]) -> None:
    diagram = to_mermaid(definition)
    assert diagram.startswith("flowchart TD\n")
    for name in definition["States"]:
        assert f"    {name}" in diagram
    assert (
        'ChooseStrategy -->|"request.strategy = delete-first and snapshot.target.exists"| DeleteTarget'
        in diagram
    )
    assert 'NeedsSwap -->|"restore.swap_required"| SwapClusters' in diagram
    assert "CopySnapshot -.-> HandleFailure" in diagram
    assert "HandleFailure --> RefreshFailed" in diagram
