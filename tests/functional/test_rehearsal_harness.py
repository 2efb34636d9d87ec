"""The rehearsal's own machinery, with a small definition and test steps of the test's own.

What is proven here holds for any definition: Lambda errors reach Retry and Catch under their
class names, Retry waits are compressed, ``--polls`` / ``--outcome`` drive a poll loop, ``--fault``
goes through botocore's retry handling, every call is recorded with secrets redacted, and a bad
world or flag is a usage error. The product's own definition runs end to end in tests/e2e/.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from aurora_restore.simulate.hooks import ScenarioError, parse_fault, parse_outcome, parse_polls
from aurora_restore.simulate.rehearsal import Options, Rehearsal
from aurora_restore.simulate.world import WorldError, default_world, parse_world, seed
from dispatcher.aws import Clients
from dispatcher.errors import ResourceBusy
from dispatcher.registry import Registry, Step, load_builtin_steps
from refresh.errors import CopyFailed
from refresh.request import RestoreRequest

FN = "${DispatcherFunctionArn}"
CATCH_ALL = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RefreshFailed"}]


def task(
    step: str, result: str, nxt: str | None, reads: tuple[str, ...] = ("request",), **extra: Any
) -> dict:
    """A Task state as the contract shapes them."""
    params: dict[str, Any] = {"step": step, "execution_id.$": "$$.Execution.Id"}
    for key in reads:
        params["input.$" if key == "$" else f"{key}.$"] = "$" if key == "$" else f"$.{key}"
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": FN,
        "Parameters": params,
        "ResultPath": f"$.{result}",
    }
    state.update({"Next": nxt} if nxt else {"End": True})
    state.update(extra)
    return state


class CopyStep(Step):
    """Copies the request's snapshot into the target region, like copy_snapshot."""

    reads = ("request",)
    result_key = "copy"

    def run(self, ctx: Any) -> dict[str, Any]:
        request = ctx.require_request()
        rds = ctx.aws("rds", request.target_region)
        source = f"arn:aws:rds:{request.source_region}:123456789012:cluster-snapshot:{request.snapshot_id}"
        copy = rds.copy_db_cluster_snapshot(
            SourceDBClusterSnapshotIdentifier=source,
            TargetDBClusterSnapshotIdentifier="rehearsal-copy",
            KmsKeyId=ctx.settings.default_kms_key_id,
            SourceRegion=request.source_region,
        )["DBClusterSnapshot"]
        return _copy_state(copy)


class CheckCopyStep(Step):
    """Describes the copy, like check_copy_status."""

    reads = ("request", "copy")
    result_key = "copy"
    mutating = False

    def run(self, ctx: Any) -> dict[str, Any]:
        request = ctx.require_request()
        rds = ctx.aws("rds", request.target_region)
        copy = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier="rehearsal-copy")[
            "DBClusterSnapshots"
        ][0]
        if copy["Status"] == "failed":
            raise CopyFailed(f"copy rehearsal-copy is {copy['Status']}")
        return _copy_state(copy)


def _copy_state(copy: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": copy["Status"],
        "percent_progress": copy.get("PercentProgress", 100),
        "complete": copy["Status"] == "available",
        "next_poll_seconds": 0,
    }


class FlakyStep(Step):
    """Busy twice, then fine: the state machine's Retry must carry it."""

    reads = ("request",)
    result_key = "flaky"
    calls = 0

    def run(self, ctx: Any) -> dict[str, Any]:
        FlakyStep.calls += 1
        if FlakyStep.calls <= 2:
            raise ResourceBusy("the cluster is modifying (test)")
        return {"calls": FlakyStep.calls}


class DescribeStep(Step):
    """One RDS call and one secret written: for faults and redaction."""

    reads = ("request",)
    result_key = "described"

    def run(self, ctx: Any) -> dict[str, Any]:
        request = ctx.require_request()
        ctx.aws("secretsmanager", request.target_region).create_secret(
            Name="rehearsal/app", SecretString=json.dumps({"password": "hunter2-not-for-logs"})
        )
        # DescribeDBInstances: a call validate_request (which describes the target) does not make.
        instances = ctx.aws("rds", request.target_region).describe_db_instances()["DBInstances"]
        return {"instances": len(instances)}


class FailingCopyStep(Step):
    """Always fails the way a failed copy does."""

    reads = ("request",)
    result_key = "boom"

    def run(self, ctx: Any) -> dict[str, Any]:
        raise CopyFailed("copy ar-x is failed (test)")


def make_registry(*steps: tuple[str, type[Step]]) -> Registry:
    """validate_request plus the given test steps."""
    registry = Registry()
    registry.register("validate_request", state_name="ValidateRequest")(
        load_builtin_steps().get("validate_request")
    )
    for name, cls in steps:
        registry.register(name)(cls)
    return registry


def definition(states: dict[str, Any], first: str) -> dict[str, Any]:
    """ValidateRequest first, the given states, RefreshFailed as the Fail state."""
    return {
        "StartAt": "ValidateRequest",
        "States": {
            "ValidateRequest": task("validate_request", "request", first, reads=("$",), Catch=CATCH_ALL),
            **states,
            "RefreshFailed": {"Type": "Fail", "Error": "RefreshFailed"},
        },
    }


COPY_LOOP = {
    "CopySnapshot": task("copy_snapshot", "copy", "IsCopyComplete", Catch=CATCH_ALL),
    "IsCopyComplete": {
        "Type": "Choice",
        "Choices": [{"Variable": "$.copy.complete", "BooleanEquals": True, "Next": "Done"}],
        "Default": "WaitForCopy",
    },
    "WaitForCopy": {"Type": "Wait", "SecondsPath": "$.copy.next_poll_seconds", "Next": "CheckCopyStatus"},
    "CheckCopyStatus": task(
        "check_copy_status", "copy", "IsCopyComplete", reads=("request", "copy"), Catch=CATCH_ALL
    ),
    "Done": {"Type": "Succeed"},
}


def rehearse(seed_input: dict[str, Any], registry: Registry, states: dict, first: str, **options: Any) -> Any:
    """Run the rehearsal with a test definition; no database is needed by these steps.

    The test loops poll through Wait states (no waiting Task), so no RDS events are delivered and
    ``--polls N`` counts their checks, as without events.
    """
    options.setdefault("event_delay_seconds", None)
    return Rehearsal(
        Options(input=seed_input, definition=definition(states, first), registry=registry, **options)
    ).run()


def test_lambda_errors_reach_retry_and_catch_under_their_class_names(seed_input: dict[str, Any]) -> None:
    # GIVEN a step busy twice (Retry on ResourceBusy, 5 s real interval) and a step whose copy failed
    FlakyStep.calls = 0
    registry = make_registry(("flaky", FlakyStep), ("boom", FailingCopyStep))
    states = {
        "Flaky": task(
            "flaky",
            "flaky",
            "Boom",
            Retry=[
                {"ErrorEquals": ["ResourceBusy"], "IntervalSeconds": 5, "MaxAttempts": 3, "BackoffRate": 2}
            ],
            Catch=CATCH_ALL,
        ),
        "Boom": task(
            "boom",
            "boom",
            "Unreachable",
            Catch=[
                {"ErrorEquals": ["CopyFailed"], "ResultPath": "$.error", "Next": "CaughtCopyFailed"},
                *CATCH_ALL,
            ],
        ),
        "Unreachable": {"Type": "Succeed"},
        "CaughtCopyFailed": {"Type": "Pass", "Next": "RefreshFailed"},
    }
    # WHEN the rehearsal runs it
    report = rehearse(seed_input, registry, states, "Flaky")
    # THEN Retry matched ResourceBusy by name, Catch matched CopyFailed by name, quickly
    runs = {run.name: run for run in report.states}
    assert runs["Flaky"].attempts == 3
    assert runs["Flaky"].status == "succeeded"
    assert runs["Boom"].error == "CopyFailed"
    assert "CaughtCopyFailed" in runs and "Unreachable" not in runs
    assert report.status == "FAILED"
    assert report.duration < 10, "Retry waits of 5 s + 10 s must be compressed"
    # AND the cause is Lambda's error payload
    cause = runs["Boom"].cause
    assert cause["errorType"] == "CopyFailed"
    assert cause["errorMessage"] == "copy ar-x is failed (test)"
    assert isinstance(cause["stackTrace"], list) and cause["stackTrace"]
    assert report.error == {
        "type": "CopyFailed",
        "message": "copy ar-x is failed (test)",
        "state": "Boom",
        "step": "boom",
    }


def test_polls_keep_the_copy_in_progress_then_let_it_finish(seed_input: dict[str, Any]) -> None:
    registry = make_registry(("copy_snapshot", CopyStep), ("check_copy_status", CheckCopyStep))
    # WHEN the copy is told to take two polls
    report = rehearse(seed_input, registry, COPY_LOOP, "CopySnapshot", copy_polls=2)
    # THEN the loop really ran: copying 0 %, 33 %, 66 %, then available; the execution SUCCEEDED
    assert report.status == "SUCCEEDED", report.error
    progress = [
        (r.name, r.output["status"], r.percent)
        for r in report.states
        if r.step in ("copy_snapshot", "check_copy_status")
    ]
    assert progress == [
        ("CopySnapshot", "copying", 0),
        ("CheckCopyStatus", "copying", 33),
        ("CheckCopyStatus", "copying", 66),
        ("CheckCopyStatus", "available", 100),
    ]
    assert sum(1 for r in report.states if r.name == "WaitForCopy") == 3
    # AND the copy really exists in the target region (moto made it)
    copies = [s for s in report.world_after["snapshots"] if s["id"] == "rehearsal-copy"]
    assert [(c["region"], c["status"]) for c in copies] == [("us-west-2", "available")]


def test_outcome_failed_ends_the_copy_badly_after_its_polls(seed_input: dict[str, Any]) -> None:
    registry = make_registry(("copy_snapshot", CopyStep), ("check_copy_status", CheckCopyStep))
    report = rehearse(seed_input, registry, COPY_LOOP, "CopySnapshot", copy_polls=1, copy_outcome="failed")
    assert report.status == "FAILED"
    assert report.error["type"] == "CopyFailed"
    assert report.error["state"] == "CheckCopyStatus"
    assert [r.output["status"] for r in report.states if r.name == "CheckCopyStatus" and r.output] == [
        "copying"
    ]


def test_a_throttled_call_is_retried_by_botocore_and_recorded_once(seed_input: dict[str, Any]) -> None:
    registry = make_registry(("describe", DescribeStep))
    states = {"Describe": task("describe", "described", None, Catch=CATCH_ALL)}
    report = rehearse(
        seed_input, registry, states, "Describe", faults=[parse_fault("rds.DescribeDBInstances=Throttling*1")]
    )
    assert report.status == "SUCCEEDED", report.error
    assert report.faults == [{"fault": "rds.DescribeDBInstances=Throttling*1", "injected": 1}]
    describes = [c for c in report.aws_calls if c["operation"] == "DescribeDBInstances"]
    assert len(describes) == 1 and describes[0]["error"] is None
    assert describes[0]["step"] == "describe" and describes[0]["region"] == "us-west-2"


def test_a_permanent_fault_fails_the_step_as_aws_call_failed(seed_input: dict[str, Any]) -> None:
    registry = make_registry(("describe", DescribeStep))
    states = {"Describe": task("describe", "described", None, Catch=CATCH_ALL)}
    report = rehearse(
        seed_input, registry, states, "Describe", faults=[parse_fault("rds.DescribeDBInstances=AccessDenied")]
    )
    assert report.status == "FAILED"
    assert report.error["type"] == "AwsCallFailed"
    assert "AccessDenied" in report.error["message"]
    assert [c["error"] for c in report.aws_calls if c["operation"] == "DescribeDBInstances"] == [
        "AccessDenied"
    ]


def test_recorded_calls_and_logs_carry_no_secret(seed_input: dict[str, Any]) -> None:
    registry = make_registry(("describe", DescribeStep))
    states = {"Describe": task("describe", "described", None, Catch=CATCH_ALL)}
    report = rehearse(seed_input, registry, states, "Describe")
    created = next(c for c in report.aws_calls if c["operation"] == "CreateSecret")
    assert created["params"]["SecretString"] == "***"
    assert created["params"]["Name"] == "rehearsal/app"
    everything = json.dumps(report.to_dict(), default=str) + "\n".join(report.lambda_logs)
    assert "hunter2-not-for-logs" not in everything
    assert report.lambda_logs, "the Lambda's log lines are kept"


def test_default_world_holds_source_snapshot_keys_and_a_managed_target(seed_input: dict[str, Any]) -> None:
    world = default_world(RestoreRequest.from_event(seed_input))
    assert [(c.id, c.region, c.tags.get("aurora-restore:managed")) for c in world.clusters] == [
        ("my-source", "us-east-1", None),
        ("new-cluster-id", "us-west-2", "true"),
    ]
    assert [(s.id, s.type, s.cluster) for s in world.snapshots] == [
        ("rds:my-source-snapshot", "automated", "my-source")
    ]
    assert {k.region for k in world.kms_keys} == {"us-east-1", "us-west-2"}
    # Each cluster in its own subnet group and security group, in its own region.
    assert [(c.subnet_group, c.security_groups) for c in world.clusters] == [
        ("my-source-subnets", ("my-source-db",)),
        ("new-cluster-id-subnets", ("new-cluster-id-db",)),
    ]
    assert {(g.region, g.name) for g in world.security_groups} == {
        ("us-east-1", "my-source-db"),
        ("us-west-2", "new-cluster-id-db"),
    }


def test_seeding_places_clusters_and_turns_stack_group_names_into_ids(aws: None) -> None:
    # GIVEN a world whose cluster and stack name security groups of the world
    world = parse_world(
        {
            "subnet_groups": [{"region": "eu-west-1", "name": "dev-private"}],
            "security_groups": [
                {"region": "eu-west-1", "name": "db"},
                {"region": "eu-west-1", "name": "dba"},
            ],
            "clusters": [
                {
                    "id": "dev",
                    "region": "eu-west-1",
                    "subnet_group": "dev-private",
                    "security_groups": ["db", "dba"],
                    "port": 5433,
                    "instances": ["dev-1", {"id": "dev-2", "tags": {}}],
                    "tags": {"aurora-restore:managed": "true"},
                }
            ],
            "stack": {"default_security_group_ids": ["dba"]},
        }
    )
    # WHEN it is seeded into moto
    clients = Clients(default_region="eu-west-1")
    seeded = seed(world, clients)
    # THEN the cluster sits in its subnet group, security groups and port, as RDS describes it
    cluster = clients("rds", "eu-west-1").describe_db_clusters(DBClusterIdentifier="dev")["DBClusters"][0]
    ids = [seeded.security_group_ids[("eu-west-1", name)] for name in ("db", "dba")]
    assert cluster["DBSubnetGroup"] == "dev-private"
    assert [g["VpcSecurityGroupId"] for g in cluster["VpcSecurityGroups"]] == ids
    assert cluster["Port"] == 5433
    # AND the stack's default groups are ids, as the stack parameter holds them
    assert seeded.world.stack["default_security_group_ids"] == ids[1:]
    # AND an instance given its own tags carries only those
    tags = {
        i["DBInstanceIdentifier"]: {t["Key"] for t in i.get("TagList", [])}
        for i in clients("rds", "eu-west-1").describe_db_instances()["DBInstances"]
    }
    assert tags == {"dev-1": {"aurora-restore:managed"}, "dev-2": set()}


@pytest.mark.parametrize(
    ("world", "words"),
    [
        ({"clusters": [{"id": "a--b", "region": "eu-west-1"}]}, ["clusters[0].id", "'a--b'"]),
        ({"clusters": [{"id": "a", "region": "europe"}]}, ["clusters[0].region", "'europe'"]),
        (
            {"snapshots": [{"id": "s", "region": "eu-west-1", "cluster": "gone"}]},
            ["snapshots[0].cluster", "'gone'"],
        ),
        (
            {"clusters": [{"id": "a", "region": "eu-west-1", "colour": "red"}]},
            ["clusters[0].colour", "is not known"],
        ),
        ({"planets": []}, ["world.planets", "is not known"]),
        ({"kms_keys": [{"region": "eu-west-1", "alias": "dev"}]}, ["kms_keys[0].alias", "alias/<name>"]),
        (
            {"clusters": [{"id": "a", "region": "eu-west-1", "subnet_group": "dev-private"}]},
            ["clusters[0].subnet_group", "'dev-private'", "subnet_groups"],
        ),
        (
            {
                "security_groups": [{"region": "eu-west-2", "name": "db"}],
                "clusters": [{"id": "a", "region": "eu-west-1", "security_groups": ["db"]}],
            },
            ["clusters[0].security_groups[0]", "'db'", "eu-west-1"],
        ),
        ({"subnet_groups": [{"region": "eu-west-1"}]}, ["subnet_groups[0].name", "is required"]),
        (
            {"clusters": [{"id": "a", "region": "eu-west-1", "instances": [{"id": "a-1", "colour": "red"}]}]},
            ["clusters[0].instances[0].colour", "is not known"],
        ),
        (
            {"clusters": [{"id": "a", "region": "eu-west-1", "backup_retention_days": 36}]},
            ["clusters[0].backup_retention_days", "36", "from 1 to 35"],
        ),
        (
            {"clusters": [{"id": "a", "region": "eu-west-1", "account": "12"}]},
            ["clusters[0].account", "12-digit"],
        ),
        (
            # A snapshot is of a cluster in its own account.
            {
                "clusters": [{"id": "a", "region": "eu-west-1", "account": "111111111111"}],
                "snapshots": [{"id": "s", "region": "eu-west-1", "cluster": "a"}],
            },
            ["snapshots[0].cluster", "'a'"],
        ),
        (
            {"source_account_stacks": [{"account": "123456789012", "region": "eu-west-1"}]},
            ["source_account_stacks[0].account", "the stack's own account"],
        ),
    ],
)
def test_a_bad_world_names_the_field_and_value(world: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(WorldError) as caught:
        parse_world(world)
    for word in words:
        assert word in str(caught.value)


def test_a_world_in_two_accounts_keeps_them_apart() -> None:
    world = parse_world(
        {
            "clusters": [
                {
                    "id": "orders",
                    "region": "eu-west-1",
                    "account": "111111111111",
                    "storage_encrypted": True,
                    "kms_key": "alias/aws/rds",
                },
                {"id": "orders", "region": "eu-west-1"},
            ],
            "snapshots": [{"id": "s", "region": "eu-west-1", "cluster": "orders", "account": "111111111111"}],
            "source_account_stacks": [{"account": "111111111111", "region": "eu-west-1"}],
        }
    )
    assert world.accounts == ["123456789012", "111111111111"]
    assert [c.account for c in world.clusters] == ["111111111111", "123456789012"]
    assert world.snapshots[0].account == "111111111111"
    assert world.source_account_stacks[0].key_grants_target is True


@pytest.mark.parametrize(
    ("parse", "text", "words"),
    [
        (parse_fault, "rds.CopyDBClusterSnapshots=Throttling", ["no operation 'CopyDBClusterSnapshots'"]),
        (parse_fault, "rdss.CopyDBClusterSnapshot=Throttling", ["'rdss' is not an AWS service"]),
        (parse_fault, "rds.CopyDBClusterSnapshot", ["SERVICE.Operation=ErrorCode"]),
        (parse_fault, "rds.CopyDBClusterSnapshot=Throttling*0", ["*N must be at least 1"]),
        (parse_polls, "copy=two", ["copy=N,restore=N"]),
        (parse_outcome, "copy=late", ["copy=(available|failed)"]),
    ],
)
def test_bad_scenario_flags_are_refused(parse: Any, text: str, words: list[str]) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse(text)
    for word in words:
        assert word in str(caught.value)


def test_simulate_command_misuse_exits_2_with_a_clear_message(tmp_path: Any, capsys: Any) -> None:
    from aurora_restore.cli import main

    bad_world = tmp_path / "world.json"
    bad_world.write_text(json.dumps({"clusters": [{"id": "orders", "region": "mars-1"}]}))
    assert main(["simulate", "--world", str(bad_world)]) == 2
    assert "clusters[0].region: 'mars-1' is not valid" in capsys.readouterr().err
    not_json = tmp_path / "input.json"
    not_json.write_text("{body: ")
    assert main(["simulate", "--input", str(not_json)]) == 2
    assert f"--input {not_json}: not valid JSON" in capsys.readouterr().err
    assert main(["simulate", "--input", str(tmp_path / "missing.json")]) == 2
    assert "cannot read it" in capsys.readouterr().err
    assert main(["simulate", "--fault", "rds.Nope=Throttling"]) == 2
    assert "rds has no operation 'Nope'" in capsys.readouterr().err
    # Only the retry's own scenario may follow --retry; its values are checked like the first run's.
    assert main(["simulate", "--retry", "--json"]) == 2
    assert "after --retry only --fault, --polls and --outcome may follow" in capsys.readouterr().err
    assert main(["simulate", "--retry", "--outcome", "restore=melted"]) == 2
    assert "--outcome 'restore=melted'" in capsys.readouterr().err
    # A retry needs a request aurora-restore retry would accept.
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"body": {"target_cluster_id": "orders-dev"}}))
    assert main(["simulate", "--input", str(invalid), "--retry"]) == 2
    assert "--retry needs a valid request" in capsys.readouterr().err


class CreateStep(Step):
    """Creates one cluster: a throttled create must not create it twice."""

    reads = ("request",)
    result_key = "created"

    def run(self, ctx: Any) -> dict[str, Any]:
        request = ctx.require_request()
        ctx.aws("rds", request.target_region).create_db_cluster(
            DBClusterIdentifier="made-once",
            Engine="aurora-postgresql",
            MasterUsername="m",
            MasterUserPassword="password1",
        )
        return {"created": True}


def test_a_throttled_request_never_reaches_moto(seed_input: dict[str, Any]) -> None:
    # GIVEN a step that creates a cluster, and its create call throttled once
    registry = make_registry(("create", CreateStep))
    states = {"Create": task("create", "created", None, Catch=CATCH_ALL)}
    # WHEN botocore retries the throttled create
    report = rehearse(
        seed_input,
        registry,
        states,
        "Create",
        faults=[parse_fault("rds.CreateDBCluster=ThrottlingException*1")],
    )
    # THEN the cluster was created once (an AlreadyExists on the retry would fail the step)
    assert report.status == "SUCCEEDED", report.error
    assert [c["id"] for c in report.world_after["clusters"] if c["id"] == "made-once"] == ["made-once"]
    assert report.faults == [{"fault": "rds.CreateDBCluster=ThrottlingException*1", "injected": 1}]
