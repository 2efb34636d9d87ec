"""The dispatcher: routing, records around each step, errors in the state machine's terms."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.errors import AwsCallFailed, Retryable, StepOutputIncomplete, UnknownStep, ValidationError
from dispatcher.registry import Step


def _rds_snapshot(clients: Any) -> dict[str, Any]:
    """Everything RDS holds in the two regions of the seed input, for no-change assertions."""
    world = {}
    for region in ("us-east-1", "us-west-2"):
        rds = clients("rds", region)
        clusters = [
            # LatestRestorableTime moves with the clock, not with anything we do.
            {k: v for k, v in c.items() if k != "LatestRestorableTime"}
            for c in rds.describe_db_clusters()["DBClusters"]
        ]
        world[region] = (clusters, rds.describe_db_cluster_snapshots()["DBClusterSnapshots"])
    return world


def test_unknown_step_names_it_and_the_known_ones_before_any_aws_call(
    dispatcher: Any, seed_input: dict[str, Any], clients: Any
) -> None:
    calls: list[str] = []
    clients.add_hook("before-call", lambda model, **_: calls.append(model.name))
    with pytest.raises(UnknownStep) as caught:
        dispatcher.handle({**seed_input, "step": "copy_snapshots"})
    assert "'copy_snapshots'" in str(caught.value)
    assert "validate_request" in str(caught.value)
    assert calls == []


def test_validate_request_records_the_operation(
    dispatcher: Any, seed_input: dict[str, Any], store: Any
) -> None:
    output = dispatcher.handle({"step": "validate_request", "input": seed_input, "execution_id": "exec-1"})
    assert output["operation_id"] == "op-test002"
    assert output["target_cluster_id"] == "new-cluster-id"
    item = store.get_operation("op-test002")
    assert item["status"] == "RUNNING"
    assert item["current_step"] == "validate_request"
    assert item["request"]["snapshot_id"] == "rds:my-source-snapshot"
    events = [(i["step"], i["event"]) for i in store.audit_trail("op-test002")]
    assert events == [("validate_request", "started"), ("validate_request", "succeeded")]
    assert isinstance(store.audit_trail("op-test002")[-1]["duration_ms"], int)


def test_bad_request_fails_in_the_first_step_and_changes_nothing(
    dispatcher: Any, seed_input: dict[str, Any], store: Any, clients: Any
) -> None:
    # GIVEN a world with a cluster, and a request with a bad target id
    clients("rds", "us-west-2").create_db_cluster(
        DBClusterIdentifier="existing",
        Engine="aurora-postgresql",
        MasterUsername="postgres",
        MasterUserPassword="password123",
    )
    before = _rds_snapshot(clients)
    mutating: list[str] = []
    clients.add_hook(
        "before-call.rds",
        lambda model, **_: mutating.append(model.name) if not model.name.startswith("Describe") else None,
    )
    bad = {"body": {**seed_input["body"], "target_cluster_id": "bad--name"}}
    # WHEN the first step runs
    with pytest.raises(ValidationError) as caught:
        dispatcher.handle({"step": "validate_request", "input": bad, "execution_id": "exec-1"})
    # THEN the error names the field and value, the failure is audited, and RDS is untouched
    assert "target_cluster_id: 'bad--name' is not valid" in str(caught.value)
    trail = store.audit_trail("op-test002")
    assert [i["event"] for i in trail] == ["started", "failed"]
    assert trail[-1]["error_type"] == "ValidationError"
    assert mutating == []
    assert _rds_snapshot(clients) == before


class _Boom(Step):
    """Raise whatever the test puts in the event."""

    def run(self, ctx: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        code = ctx.event["code"]
        status = ctx.event.get("status", 400)
        raise ClientError(
            {"Error": {"Code": code, "Message": "nope"}, "ResponseMetadata": {"HTTPStatusCode": status}},
            "CopyDBClusterSnapshot",
        )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ThrottlingException", 400, Retryable),
        ("Throttling", 400, Retryable),
        ("InternalFailure", 500, Retryable),
        ("ServiceUnavailable", 503, Retryable),
        ("AccessDenied", 403, AwsCallFailed),
        ("InvalidDBClusterStateFault", 400, AwsCallFailed),
    ],
)
def test_aws_errors_become_retryable_or_permanent(
    dispatcher: Any,
    registry: Any,
    seed_input: dict[str, Any],
    store: Any,
    code: str,
    status: int,
    expected: type,
) -> None:
    registry.register("boom")(_Boom)
    request = dispatcher.handle({"step": "validate_request", "input": seed_input})
    with pytest.raises(expected) as caught:
        dispatcher.handle({"step": "boom", "request": request, "code": code, "status": status})
    assert code in str(caught.value)
    assert type(caught.value).__name__ == expected.__name__
    item = store.get_operation("op-test002")
    assert item["last_error"]["type"] == expected.__name__
    assert item["last_error"]["step"] == "boom"


def test_output_is_json_safe(dispatcher: Any, registry: Any, seed_input: dict[str, Any]) -> None:
    from datetime import datetime, timezone

    @registry.register("clock")
    class Clock(Step):
        """Return a datetime."""

        def run(self, ctx: Any) -> dict[str, Any]:
            return {"at": datetime(2026, 11, 25, tzinfo=timezone.utc)}

    request = dispatcher.handle({"step": "validate_request", "input": seed_input})
    assert dispatcher.handle({"step": "clock", "request": request}) == {"at": "2026-11-25 00:00:00+00:00"}


def test_an_output_without_a_declared_field_is_refused_and_recorded(
    dispatcher: Any, registry: Any, store: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN a poll step that declares the fields its loop reads, and forgets one
    @registry.register("forgetful_poll")
    class ForgetfulPoll(Step):
        """Return no next_poll_seconds."""

        outputs = ("complete", "next_poll_seconds", "target.exists")

        def run(self, ctx: Any) -> dict[str, Any]:
            return {"complete": False, "target": {}}

    request = dispatcher.handle({"step": "validate_request", "input": seed_input})
    # WHEN it runs, THEN the dispatcher fails it naming the missing fields (a catchable error,
    # where AWS would end the whole execution with States.Runtime at the Wait)
    with pytest.raises(StepOutputIncomplete) as caught:
        dispatcher.handle({"step": "forgetful_poll", "request": request})
    assert "next_poll_seconds, target.exists" in str(caught.value)
    trail = store.audit_trail("op-test002")
    assert (trail[-1]["step"], trail[-1]["event"], trail[-1]["error_type"]) == (
        "forgetful_poll",
        "failed",
        "StepOutputIncomplete",
    )


def test_lambda_handler_entry_point_reports_unknown_step(
    seed_input: dict[str, Any], monkeypatch: Any
) -> None:
    from dispatcher import handler

    handler.reset()
    try:
        with pytest.raises(UnknownStep, match="known steps"):
            handler.lambda_handler({**seed_input, "step": "nope"}, None)
    finally:
        handler.reset()
