"""What the notifications say, without AWS: subjects, scrubbing, reading errors and broken inputs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.errors import ValidationError
from refresh.request import derive_operation_id
from steps.handle_failure.step import describe_error, describe_target, resolve_operation_id
from steps.lib import notify

EXECUTION_ID = "arn:aws:states:us-east-1:123456789012:execution:aurora-restore:run-1"


# -- subjects ------------------------------------------------------------------------------------
def test_a_short_subject_is_exactly_the_documented_one() -> None:
    assert notify.subject("op-1", "FAILED", "staging-db") == "[aurora-restore] op-1 FAILED: staging-db"


@given(
    operation=st.text(max_size=300),
    target=st.text(max_size=300),
    status=st.sampled_from(["SUCCEEDED", "FAILED"]),
)
def test_any_subject_is_one_printable_ascii_line_under_100_characters(
    operation: str, target: str, status: str
) -> None:
    subject = notify.subject(operation, status, target)
    assert len(subject) < 100
    assert subject.isascii() and subject.isprintable()
    assert subject.startswith("[aurora-restore] ")
    assert f" {status}: " in subject


def test_when_both_ids_are_long_both_keep_their_beginning() -> None:
    operation = "op-" + "a" * 61
    target = "staging-" + "b" * 55
    subject = notify.subject(operation, "SUCCEEDED", target)
    assert len(subject) == 99
    assert "[aurora-restore] op-aaaa" in subject
    assert " SUCCEEDED: staging-bbbb" in subject
    assert subject.count("...") == 2


def test_a_short_operation_leaves_room_for_the_whole_target() -> None:
    target = "t" * 63
    assert notify.subject("op-1", "FAILED", target).endswith(": " + target)


def test_line_breaks_and_non_ascii_cannot_reach_the_subject() -> None:
    assert (
        notify.subject("op-1", "FAILED", "db\nBcc: x@example.com")
        == "[aurora-restore] op-1 FAILED: db?Bcc: x@example.com"
    )
    assert notify.subject("op-1", "FAILED", "bäd") == "[aurora-restore] op-1 FAILED: b?d"
    assert notify.subject("", "FAILED", "") == "[aurora-restore] unknown FAILED: unknown"


def test_attributes_are_strings_and_never_empty() -> None:
    attributes = notify.message_attributes("FAILED", "op-1", "")
    assert attributes == {
        "status": {"DataType": "String", "StringValue": "FAILED"},
        "operation_id": {"DataType": "String", "StringValue": "op-1"},
        "target_cluster_id": {"DataType": "String", "StringValue": "unknown"},
    }


@pytest.mark.parametrize(
    ("arn", "region"),
    [
        ("arn:aws:sns:eu-west-1:123456789012:aurora-restore", "eu-west-1"),
        ("arn:aws-us-gov:sns:us-gov-west-1:123456789012:t", "us-gov-west-1"),
        ("arn:aws:sns:us-east-1:123456789012:alerts.fifo", "us-east-1"),
    ],
)
def test_the_topic_region_comes_from_its_arn(arn: str, region: str) -> None:
    assert notify.topic_region(arn) == region


@pytest.mark.parametrize(
    "arn", ["aurora-restore", "arn:aws:sqs:eu-west-1:123456789012:q", "arn:aws:sns:eu-west-1:1:t"]
)
def test_a_bad_topic_arn_names_the_setting(arn: str) -> None:
    with pytest.raises(ValidationError) as caught:
        notify.topic_region(arn)
    assert "AURORA_RESTORE_TOPIC_ARN" in str(caught.value)
    assert repr(arn) in str(caught.value)


# -- secrets in free text ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=hunter2 user=app", "password=*** user=app"),
        ("PGPASSWORD=hunter2", "PGPASSWORD=***"),
        ('{"password": "hunter 2", "user": "app"}', '{"password": "***", "user": "app"}'),
        ("{'MasterUserPassword': 'hunter2'}", "{'MasterUserPassword': '***'}"),
        ("users.app.password: 'hunter2' is not valid", "users.app.password: '***' is not valid"),
        (
            "Invalid type for parameter MasterUserPassword, value: 12345678, type: <class 'int'>",
            "Invalid type for parameter MasterUserPassword, value: ***, type: <class 'int'>",
        ),
        ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: Bearer ***"),
        ("X-Amz-Security-Token=IQoJb3JpZ2lu&X-Amz-Date=1", "X-Amz-Security-Token=***&X-Amz-Date=1"),
        (
            "could not connect to postgresql://admin:hunter2@db:5432/app",
            "could not connect to postgresql://admin:***@db:5432/app",
        ),
    ],
)
def test_secret_values_in_free_text_are_masked(text: str, expected: str) -> None:
    assert notify.scrub_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "secret_arn: arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf",
        "master_password_storage: rds-managed",
        "Invalid type for parameter DBClusterIdentifier, value: 12, type: <class 'int'>",
        "cluster new-cluster-id is incompatible-parameters",
        "target_cluster_id: 'bad--name' is not valid",
    ],
)
def test_references_to_secrets_and_ordinary_text_are_left_readable(text: str) -> None:
    assert notify.scrub_text(text) == text


def test_clean_redacts_keys_and_scrubs_text_deep_inside() -> None:
    cleaned = notify.clean({"export": {"session_token": "abc", "notes": ["token=abc ok"]}, "n": 1})
    assert cleaned == {"export": {"session_token": "***", "notes": ["token=*** ok"]}, "n": 1}


# -- reading the caught error --------------------------------------------------------------------
def _cause(**fields: Any) -> str:
    return json.dumps(fields)


@pytest.mark.parametrize(
    ("error", "expected_type", "expected_message"),
    [
        (
            {
                "Error": "RestoreFailed",
                "Cause": _cause(errorType="RestoreFailed", errorMessage="broken", stackTrace=["x"]),
            },
            "RestoreFailed",
            "broken",
        ),
        (
            {"Error": "States.Timeout"},
            "States.Timeout",
            "Step Functions reported States.Timeout with no cause",
        ),
        (
            {
                "Error": "Lambda.Unknown",
                "Cause": "The cause could not be determined because Lambda did not return an error type.",
            },
            "Lambda.Unknown",
            "The cause could not be determined because Lambda did not return an error type.",
        ),
        ({"Error": "States.TaskFailed", "Cause": "{broken json"}, "States.TaskFailed", "{broken json"),
        (
            {"Error": "X", "Cause": _cause(stackTrace=["secret place"], detail="odd")},
            "X",
            '{"detail": "odd"}',
        ),
        (
            {
                "Error": "States.TaskFailed",
                "Cause": "Traceback (most recent call last):\n  File \"x.py\"\nKeyError: 'body'",
            },
            "States.TaskFailed",
            "KeyError: 'body'",
        ),
        ({"Cause": json.dumps("a JSON string")}, "UnknownError", "a JSON string"),
        ({"Error": 7, "Cause": 8}, "UnknownError", "8"),
        ("not an object", "UnknownError", "Step Functions reported an error with no cause"),
        (None, "UnknownError", "Step Functions reported an error with no cause"),
    ],
    ids=[
        "lambda",
        "no-cause",
        "lambda-unknown",
        "broken-json",
        "json-without-message",
        "traceback",
        "json-string",
        "numbers",
        "not-object",
        "absent",
    ],
)
def test_any_cause_gives_a_type_and_a_message_without_stack_trace(
    error: Any, expected_type: str, expected_message: str
) -> None:
    described = describe_error(error, {})
    assert (described["type"], described["message"]) == (expected_type, expected_message)
    assert "secret place" not in json.dumps(described)


def test_without_a_cause_the_dispatchers_record_tells() -> None:
    item = {"last_error": {"type": "CopyFailed", "message": "copy vanished", "step": "check_copy_status"}}
    assert describe_error({}, item) == {"type": "CopyFailed", "message": "copy vanished", "name": None}


def test_a_huge_error_message_is_cut() -> None:
    described = describe_error({"Error": "X", "Cause": _cause(errorType="X", errorMessage="y" * 10_000)}, {})
    assert len(described["message"]) == notify.ERROR_MESSAGE_MAX


# -- finding the operation in a possibly broken input -------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"body": {"operation_id": "op-a"}, "request": {"operation_id": "op-b"}}, "op-b"),
        (
            {
                "body": {"operation_id": "op-a", "target_cluster_id": "bad--"},
                "error": {"Error": "ValidationError"},
            },
            "op-a",
        ),
        ({"body": json.dumps({"operation_id": "op-a"}), "error": {}}, "op-a"),
        ({"operation_id": "op-a", "error": {}}, "op-a"),
        ({"operation_id": "not valid #", "error": {}}, None),
        ({"body": "{not json", "error": {}}, None),
        ({"error": {}}, None),
        ([1, 2], None),
        (None, None),
    ],
)
def test_the_operation_id_is_the_requests_the_raw_inputs_or_derived(data: Any, expected: str | None) -> None:
    assert resolve_operation_id(data, EXECUTION_ID) == (expected or derive_operation_id(EXECUTION_ID))


def test_the_target_is_read_from_the_raw_body_when_there_is_no_request() -> None:
    data = {"body": {"target_cluster_id": "db\n1", "target_region": 5}, "error": {}}
    target = describe_target(data, None)
    assert target["target_cluster_id"] == "db?1"
    assert target["target_region"] is None
    assert describe_target({}, None)["target_cluster_id"] == "unknown"


def test_elapsed_seconds_are_counted_from_the_state_items_start() -> None:
    from datetime import datetime, timezone

    now = datetime(2026, 11, 25, 12, 0, 30, tzinfo=timezone.utc)
    assert notify.seconds_since("2026-11-25T10:00:00.000000Z", now) == 7230
    assert notify.seconds_since("not a time", now) is None
    assert notify.seconds_since(None, now) is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_inputs = _json | st.fixed_dictionaries(
    {},
    optional={
        "body": _json | st.dictionaries(st.sampled_from(["operation_id", "target_cluster_id", "x"]), _json),
        "request": _json,
        "error": _json,
        "operation_id": _json,
        "target_cluster_id": _json,
    },
)


@given(data=_inputs)
def test_no_input_makes_the_failure_readers_raise(data: Any) -> None:
    from steps.handle_failure.step import valid_request

    operation_id = resolve_operation_id(data, EXECUTION_ID)
    assert operation_id
    mapping = data if isinstance(data, dict) else {}
    target = describe_target(mapping, valid_request(mapping, EXECUTION_ID))
    assert target["target_cluster_id"]
    described = describe_error(mapping.get("error"), {})
    assert described["type"] and described["message"]
    assert notify.subject(operation_id, "FAILED", str(target["target_cluster_id"])).isascii()
