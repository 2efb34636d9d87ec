"""Hypothesis over the request model and the handler: only our own errors, nothing mutated."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.errors import AuroraRestoreError, ValidationError
from refresh.request import FIELDS, parse_request, peek_operation_id

GOOD = {
    "snapshot_id": "rds:orders-2026-11-20-02-00",
    "source_region": "eu-west-1",
    "target_region": "eu-central-1",
    "target_cluster_id": "orders-dev",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
#: A good request with one field replaced by anything, or an unknown field added.
mutated_requests = st.one_of(
    st.tuples(st.sampled_from(sorted(FIELDS)), json_values).map(lambda kv: {**GOOD, kv[0]: kv[1]}),
    st.tuples(st.text(min_size=1, max_size=20).filter(lambda k: k not in FIELDS), json_values).map(
        lambda kv: {**GOOD, kv[0]: kv[1]}
    ),
    st.dictionaries(st.sampled_from(sorted(FIELDS)), json_values, max_size=6),
)
raw_inputs = st.one_of(
    json_values,
    mutated_requests,
    mutated_requests.map(lambda body: {"body": body}),
    mutated_requests.map(lambda body: {"body": json.dumps(body)}),
)


@settings(max_examples=400, deadline=None)
@given(raw=raw_inputs)
def test_the_request_model_raises_only_validation_errors(raw: Any) -> None:
    try:
        request = parse_request(raw)
    except ValidationError as error:
        assert error.field, "every refusal names a field"
        assert str(error).startswith(error.field + ":")
        return
    # Whatever is accepted survives the trip between states unchanged.
    assert parse_request(request.to_dict()) == request


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=raw_inputs)
def test_the_handler_refuses_bad_input_in_the_first_step_without_touching_aws(
    raw: Any, dispatcher: Any, clients: Any
) -> None:
    calls: list[str] = []
    clients.add_hook(
        "before-call", lambda model, **_: calls.append(f"{model.service_model.service_name}.{model.name}")
    )
    try:
        dispatcher.handle({"step": "validate_request", "input": raw, "execution_id": "exec-fuzz"})
    except AuroraRestoreError as error:
        assert isinstance(error, ValidationError), f"{type(error).__name__}: {error}"
    # Only the dispatcher's own bookkeeping (the state and audit tables) may have been written; the
    # one other call is the read of the target a valid request gets (is it new, and placed?).
    touched = [c for c in calls if not c.startswith("dynamodb.") and c != "rds.DescribeDBClusters"]
    assert touched == []
    assert calls.count("rds.DescribeDBClusters") <= 1


_PASSWORD = "Tr0ub4dor&3-Horse"
#: (case, body, field named, secret that must appear nowhere or None).
REFUSED_THROUGH_THE_HANDLER: list[tuple[str, dict[str, Any], str, str | None]] = [
    (
        "target with a trailing newline",
        {**GOOD, "target_cluster_id": "orders-dev\n"},
        "target_cluster_id",
        None,
    ),
    ("operation id with a trailing newline", {**GOOD, "operation_id": "op-1\n"}, "operation_id", None),
    ("database of 64 bytes", {**GOOD, "database": "d" * 64}, "database", None),
    ("database with NUL", {**GOOD, "database": "app\x00"}, "database", None),
    (
        "parameter group with a double hyphen",
        {**GOOD, "db_cluster_parameter_group": "pg--15"},
        "db_cluster_parameter_group",
        None,
    ),
    ("unknown field pwd holding a password", {**GOOD, "pwd": _PASSWORD}, "pwd", _PASSWORD),
    (
        "password pasted into password_secret_arn",
        {**GOOD, "users": {"roles": [{"name": "app", "login": True, "password_secret_arn": _PASSWORD}]}},
        "users.roles[0].password_secret_arn",
        _PASSWORD,
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "field", "secret"),
    REFUSED_THROUGH_THE_HANDLER,
    ids=[c[0] for c in REFUSED_THROUGH_THE_HANDLER],
)
def test_refused_in_the_first_step_naming_the_field_and_never_the_secret(
    case: str,
    body: dict[str, Any],
    field: str,
    secret: str | None,
    dispatcher: Any,
    clients: Any,
    store: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[str] = []
    clients.add_hook(
        "before-call", lambda model, **_: calls.append(f"{model.service_model.service_name}.{model.name}")
    )
    with pytest.raises(ValidationError) as caught:
        dispatcher.handle({"step": "validate_request", "input": {"body": body}, "execution_id": "exec-bad"})
    assert caught.value.field == field, case
    # Nothing but the dispatcher's own bookkeeping was written.
    assert [c for c in calls if not c.startswith("dynamodb.")] == []
    if secret is not None:
        operation_id = peek_operation_id({"body": body}, "exec-bad")
        recorded = json.dumps(
            [store.get_operation(operation_id), store.audit_trail(operation_id)], default=str
        )
        printed = capsys.readouterr()
        for text in (
            str(caught.value),
            json.dumps(caught.value.to_dict()),
            recorded,
            printed.out,
            printed.err,
        ):
            assert secret not in text, case
