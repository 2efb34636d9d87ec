"""Operator commands against a "deployed stack" in moto's server mode, as a user's AWS CLI would reach it.

The stack: tables, topic and a state machine in a ThreadedMotoServer on 127.0.0.1 (random port),
its outputs in a CloudFormation stack, reached through ``AWS_ENDPOINT_URL``. Executions really run
(moto's engine), and the Lambda they invoke is the dispatcher, served in this process, talking to
the server over HTTP. Its steps are test steps in a registry of the test's own (the product's
steps have their own tests): they take the target lock, poll a fake copy and fail on demand.
"""

from __future__ import annotations

import contextlib
import io
import json
import urllib.request
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from aurora_restore.cli import main
from dispatcher.errors import CopyFailed
from dispatcher.registry import Registry, Step

STACK = "aurora-restore-ops"
REGION = "eu-central-1"
FN = "${DispatcherFunctionArn}"


class TakeLock(Step):
    """Take the target's lock (as snapshot_check does)."""

    reads = ("request",)
    result_key = "lock"
    mutating = True

    def run(self, ctx: Any) -> dict[str, Any]:
        request = ctx.require_request()
        ctx.store.acquire_lock(request.target_region, request.target_cluster_id, ctx.operation_id)
        return {"taken": True}


class PollCopy(Step):
    """A copy at 50 % on the first poll and done on the second; fails the first execution if asked."""

    reads = ("request", "lock")
    result_key = "copy"
    mutating = False

    def run(self, ctx: Any) -> dict[str, Any]:
        request = ctx.require_request()
        trail = ctx.store.audit_trail(ctx.operation_id)
        polls = sum(1 for e in trail if e["step"] == self.name and e["event"] == "started")
        if request.tags.get("fail-first") == "yes" and not any(
            e["event"] == "failed" for e in trail if e["step"] == self.name
        ):
            raise CopyFailed("the copy failed (test)")
        done = polls >= 2
        return {
            "status": "available" if done else "copying",
            "percent_progress": 100 if done else 50,
            "complete": done,
            "next_poll_seconds": 0,
        }


class ReleaseLock(Step):
    """Release the lock (as the notification step does)."""

    reads = ("request",)
    result_key = "released"
    mutating = True

    def run(self, ctx: Any) -> dict[str, Any]:
        request = ctx.require_request()
        ctx.store.finish(ctx.operation_id, "SUCCEEDED")
        return {
            "released": ctx.store.release_lock(
                request.target_region, request.target_cluster_id, ctx.operation_id
            )
        }


def _task(step: str, reads: dict[str, str], result: str, nxt: str) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": FN,
        "Parameters": {"step": step, "execution_id.$": "$$.Execution.Id", **reads},
        "ResultPath": f"$.{result}",
        "Next": nxt,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}],
    }


DEFINITION: dict[str, Any] = {
    "StartAt": "ValidateRequest",
    "States": {
        "ValidateRequest": _task("validate_request", {"input.$": "$"}, "request", "TakeLock"),
        "TakeLock": _task("take_lock", {"request.$": "$.request"}, "lock", "PollCopy"),
        "PollCopy": _task(
            "poll_copy", {"request.$": "$.request", "lock.$": "$.lock"}, "copy", "IsCopyComplete"
        ),
        "IsCopyComplete": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.copy.complete", "BooleanEquals": True, "Next": "ReleaseLock"}],
            "Default": "WaitForCopy",
        },
        "WaitForCopy": {"Type": "Wait", "SecondsPath": "$.copy.next_poll_seconds", "Next": "PollCopy"},
        "ReleaseLock": _task("release_lock", {"request.$": "$.request"}, "released", "Done"),
        "Done": {"Type": "Succeed"},
        "Failed": {"Type": "Fail", "Error": "RefreshFailed"},
    },
}

OUTPUTS_TEMPLATE = {
    "Parameters": {"StateMachineArn": {"Type": "String"}},
    "Resources": {
        "StateTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "TableName": "ops-state",
                "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": [{"AttributeName": "operation_id", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "operation_id", "AttributeType": "S"}],
            },
        },
        "AuditTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "TableName": "ops-audit",
                "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": [
                    {"AttributeName": "operation_id", "KeyType": "HASH"},
                    {"AttributeName": "event_id", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": "operation_id", "AttributeType": "S"},
                    {"AttributeName": "event_id", "AttributeType": "S"},
                ],
            },
        },
    },
    "Outputs": {
        "StateMachineArn": {"Value": {"Ref": "StateMachineArn"}},
        "StateTableName": {"Value": {"Ref": "StateTable"}},
        "AuditTableName": {"Value": {"Ref": "AuditTable"}},
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """One moto server for the module, on a random local port."""
    from moto.server import ThreadedMotoServer

    moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto_server.start()
    host, port = moto_server.get_host_and_port()
    yield f"http://{host}:{port}"
    moto_server.stop()


def _post(url: str, body: dict[str, Any] | None = None) -> None:
    request = urllib.request.Request(url, data=json.dumps(body or {}).encode(), method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


@contextlib.contextmanager
def deployed(
    server: str, monkeypatch: pytest.MonkeyPatch, region: str, definition: dict[str, Any], app: Any
) -> Iterator[dict[str, Any]]:
    """A fresh deployed stack in ``region`` whose executions run, served by ``app`` in this process."""
    import boto3

    from aurora_restore.simulate.engine import InProcessLambda, compressed_waits, function_arn
    from aurora_restore.simulate.moto_compat import upstream_fixes

    sfn = boto3.client("stepfunctions", region_name=region)
    arn = function_arn(region, "123456789012")
    machine = sfn.create_state_machine(
        name="ops-refresh",
        definition=json.dumps(definition).replace(FN, arn),
        roleArn="arn:aws:iam::123456789012:role/states",
    )["stateMachineArn"]
    boto3.client("cloudformation", region_name=region).create_stack(
        StackName=STACK,
        TemplateBody=json.dumps(OUTPUTS_TEMPLATE),
        Parameters=[{"ParameterKey": "StateMachineArn", "ParameterValue": machine}],
    )
    bridge = InProcessLambda(arn, handler=app.handle)
    # A retry is a second execution of the state machine: moto needs its upstream fix for that.
    with bridge.installed(), compressed_waits(0.001), upstream_fixes():
        yield {"machine": machine, "sfn": sfn, "app": app}
        # Executions run on the engine's threads: let them end before the next test resets the world.
        for execution in sfn.list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"]:
            _wait(sfn, execution["executionArn"])


@pytest.fixture
def fresh_server(server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The module's server, emptied, executing state machines, and where boto3 goes."""
    from moto.core.config import default_user_config

    _post(f"{server}/moto-api/reset")
    # The server runs in this process: its configuration is this process's, restored afterwards
    # (a later test's mock_aws must not find executions switched on).
    monkeypatch.setitem(default_user_config["stepfunctions"], "execute_state_machine", True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server)
    return server


@pytest.fixture
def stack(fresh_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The test steps' stack (see the module docstring)."""
    from dispatcher.aws import Clients
    from dispatcher.handler import Dispatcher
    from dispatcher.registry import load_builtin_steps
    from dispatcher.settings import Settings

    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    registry = Registry()
    registry.register("validate_request")(load_builtin_steps().get("validate_request"))
    registry.register("take_lock")(TakeLock)
    registry.register("poll_copy")(PollCopy)
    registry.register("release_lock")(ReleaseLock)
    app = Dispatcher(
        registry=registry,
        settings=Settings(state_table="ops-state", audit_table="ops-audit"),
        clients=Clients(default_region=REGION),
    )
    with deployed(fresh_server, monkeypatch, REGION, DEFINITION, app) as found:
        yield found


def cli(*args: str) -> tuple[int, str]:
    """Run the command line as a user would; return the exit code and what it printed."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


def _request(tmp_path: Any, **fields: Any) -> str:
    body = {
        "operation_id": "op-ops1",
        "snapshot_id": "rds:orders-2026-11-20-02-00",
        "source_region": "eu-west-1",
        "target_region": REGION,
        "target_cluster_id": "orders-dev",
        **fields,
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"body": {k: v for k, v in body.items() if v is not None}}))
    return str(path)


def _wait(sfn: Any, arn: str) -> str:
    import time

    for _ in range(400):
        status = sfn.describe_execution(executionArn=arn)["status"]
        if status != "RUNNING":
            return str(status)
        time.sleep(0.02)
    raise AssertionError("the execution did not finish")


def test_start_validates_locally_and_starts_nothing_for_a_bad_request(
    stack: dict, tmp_path: Any, capsys: Any
) -> None:
    code, _ = cli(
        "start",
        "--input",
        _request(tmp_path, target_cluster_id="bad--id"),
        "--stack",
        STACK,
        "--region",
        REGION,
    )
    assert code == 2
    assert "target_cluster_id: 'bad--id' is not valid" in capsys.readouterr().err
    assert stack["sfn"].list_executions(stateMachineArn=stack["machine"])["executions"] == []


def test_start_refuses_a_200_kib_request_before_calling_aws(stack: dict, tmp_path: Any, capsys: Any) -> None:
    # GIVEN a request of 200 KiB (one big inline script): more than every state can carry
    big_sql = "select 1;\n" * (200 * 1024 // 10)
    path = _request(tmp_path, users={"scripts": [{"name": "big", "sql": big_sql}]})
    # WHEN it is started on a stack that does not exist (any AWS call would say so)
    code, _ = cli("start", "--input", path, "--stack", "no-such-stack", "--region", REGION)
    # THEN start refuses it by its size, before looking for the stack: nothing was started
    assert code == 2
    err = capsys.readouterr().err
    assert "nothing was started" in err and "at most 131072 bytes" in err
    assert "no-such-stack" not in err
    assert big_sql[:40] not in err
    # AND on the real stack too, no execution exists
    code, _ = cli("start", "--input", path, "--stack", STACK, "--region", REGION)
    assert code == 2
    assert stack["sfn"].list_executions(stateMachineArn=stack["machine"])["executions"] == []


def test_start_names_the_execution_after_the_operation_and_watch_follows_it(
    stack: dict, tmp_path: Any
) -> None:
    # WHEN the operator starts a refresh and watches it
    code, out = cli("start", "--input", _request(tmp_path), "--stack", STACK, "--region", REGION)
    assert code == 0, out
    arn = f"{stack['machine'].replace(':stateMachine:', ':execution:')}:op-ops1"
    assert arn in out
    code, watched = cli("watch", "op-ops1", "--stack", STACK, "--region", REGION, "--interval", "0.05")
    # THEN the execution ran to the end, every state is shown, the copy's progress as a bar
    assert code == 0, watched
    assert "SUCCEEDED" in watched
    for state in ("ValidateRequest", "TakeLock", "PollCopy", "WaitForCopy", "ReleaseLock"):
        assert state in watched
    assert "[##########----------]  50%" in watched
    assert "[####################] 100%" in watched
    # AND status reads the state item and the execution
    code, status = cli("status", "op-ops1", "--stack", STACK, "--region", REGION)
    assert code == 0
    assert "Operation op-ops1: SUCCEEDED" in status
    assert "execution:     SUCCEEDED" in status
    # AND history shows the audit trail as a table, every step started and succeeded
    code, history = cli("history", "op-ops1", "--stack", STACK, "--region", REGION)
    assert code == 0
    lines = history.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "STEP", "EVENT", "DURATION", "DETAIL"]
    assert sum(1 for line in lines if " poll_copy " in line and " succeeded " in line) == 2
    assert any(" release_lock " in line for line in lines)


def test_a_repeated_start_is_idempotent(stack: dict, tmp_path: Any) -> None:
    # GIVEN a request without an operation id, started once
    path = _request(tmp_path, operation_id=None)
    code, first = cli("start", "--input", path, "--stack", STACK, "--region", REGION)
    assert code == 0
    operation_id = first.split()[1]
    assert operation_id.startswith("op-")
    _wait(stack["sfn"], stack["machine"].replace(":stateMachine:", ":execution:") + ":" + operation_id)
    # WHEN it is started again
    code, _ = cli("start", "--input", path, "--stack", STACK, "--region", REGION)
    # THEN the same operation is found, not a second refresh started
    assert code == 1
    assert len(stack["sfn"].list_executions(stateMachineArn=stack["machine"])["executions"]) == 1


def test_retry_runs_the_same_request_under_the_same_operation_with_a_new_execution(
    stack: dict, tmp_path: Any
) -> None:
    # GIVEN an operation whose copy failed
    cli(
        "start",
        "--input",
        _request(tmp_path, tags={"fail-first": "yes"}),
        "--stack",
        STACK,
        "--region",
        REGION,
    )
    first = stack["sfn"].list_executions(stateMachineArn=stack["machine"])["executions"][0]["executionArn"]
    assert _wait(stack["sfn"], first) == "FAILED"
    # WHEN the operator retries it
    code, out = cli("retry", "op-ops1", "--stack", STACK, "--region", REGION)
    assert code == 0, out
    # THEN a new execution op-ops1-retry-1 runs the same request to success, same operation id
    retried = stack["machine"].replace(":stateMachine:", ":execution:") + ":op-ops1-retry-1"
    assert retried in out
    assert _wait(stack["sfn"], retried) == "SUCCEEDED"
    body = json.loads(stack["sfn"].describe_execution(executionArn=retried)["input"])["body"]
    assert body["operation_id"] == "op-ops1"
    assert body["tags"] == {"fail-first": "yes"}
    assert stack["app"].store.get_operation("op-ops1")["execution_id"] == retried


def test_unlock_shows_the_holder_then_releases_and_audits(stack: dict, tmp_path: Any) -> None:
    # GIVEN a dead operation that left its lock (it failed after taking it, with no clean-up)
    cli(
        "start",
        "--input",
        _request(tmp_path, tags={"fail-first": "yes"}),
        "--stack",
        STACK,
        "--region",
        REGION,
    )
    arn = stack["sfn"].list_executions(stateMachineArn=stack["machine"])["executions"][0]["executionArn"]
    assert _wait(stack["sfn"], arn) == "FAILED"
    store = stack["app"].store
    assert store.lock_holder(REGION, "orders-dev")["lock_owner"] == "op-ops1"
    # WHEN the operator unlocks without --yes and no terminal to confirm on: refused
    code, out = cli("unlock", "orders-dev", "--region", REGION, "--stack", STACK)
    assert code == 2
    assert "held by operation  op-ops1" in out
    assert store.lock_holder(REGION, "orders-dev") is not None
    # WHEN the operator unlocks with --yes
    code, out = cli("unlock", "orders-dev", "--region", REGION, "--stack", STACK, "--yes")
    # THEN the holder was shown, the lock is gone and the release is on the holder's audit trail
    assert code == 0, out
    assert "execution status   FAILED" in out
    assert store.lock_holder(REGION, "orders-dev") is None
    released = [e for e in store.audit_trail("op-ops1") if e["event"] == "lock_force_released"]
    assert len(released) == 1
    assert released[0]["target_cluster_id"] == "orders-dev"
    assert "released_by" in released[0]


def test_unlock_with_no_lock_says_so(stack: dict) -> None:
    code, out = cli("unlock", "orders-dev", "--region", REGION, "--stack", STACK, "--yes")
    assert code == 0
    assert "No lock on orders-dev" in out


def test_unknown_stack_is_a_usage_error(stack: dict, capsys: Any) -> None:
    code, _ = cli("status", "op-x", "--stack", "no-such-stack", "--region", REGION)
    assert code == 2
    assert "stack 'no-such-stack' not found" in capsys.readouterr().err


def test_unknown_operation_says_which_stack_was_asked(stack: dict, capsys: Any) -> None:
    code, _ = cli("history", "op-nothing", "--stack", STACK, "--region", REGION)
    assert code == 1
    assert "no audit events for 'op-nothing' in stack aurora-restore-ops" in capsys.readouterr().err


@pytest.fixture
def refresh_stack(
    fresh_server: str, monkeypatch: pytest.MonkeyPatch, postgres_server: Any
) -> Iterator[dict[str, Any]]:
    """The real thing: the generated definition and the built-in steps, over the seed's world."""
    import boto3

    from aurora_restore.simulate.database import rehearsal_database
    from aurora_restore.simulate.world import default_world, seed
    from dispatcher.aws import Clients
    from dispatcher.handler import Dispatcher
    from dispatcher.request import RestoreRequest
    from dispatcher.settings import Settings
    from infra.state_machine import build_definition

    request = RestoreRequest.from_event(json.loads(SEED_INPUT.read_text()))
    region = request.target_region
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    world = default_world(request)
    own = Clients(default_region=region)
    seeded = seed(world, own)
    topic = boto3.client("sns", region_name=region).create_topic(Name="ops-topic")["TopicArn"]
    with rehearsal_database(server=postgres_server, world=world, request=request) as database:
        environment = {
            "AURORA_RESTORE_STATE_TABLE": "ops-state",
            "AURORA_RESTORE_AUDIT_TABLE": "ops-audit",
            "AURORA_RESTORE_TOPIC_ARN": topic,
            "AURORA_RESTORE_DEFAULT_KMS_KEY_ID": seeded.key_arn(
                region, str(world.stack["default_kms_key_id"])
            ),
            "AURORA_RESTORE_POLL_MIN_SECONDS": "0",
            "AURORA_RESTORE_POLL_MAX_SECONDS": "0",
            **database.environment,
        }
        app = Dispatcher(settings=Settings.from_env(environment), clients=Clients(default_region=region))
        database.install_emulation(app.clients.add_hook, own)
        with deployed(fresh_server, monkeypatch, region, build_definition(), app) as found:
            yield {**found, "region": region}
    for row in postgres_server.fetch("SELECT rolname FROM pg_roles WHERE rolname = 'postgres'"):
        postgres_server.execute(f"DROP OWNED BY {row['rolname']}; DROP ROLE {row['rolname']}")


SEED_INPUT = Path(__file__).parents[2] / "aurora_restore" / "examples" / "seed-input.json"


def test_a_real_refresh_is_started_watched_and_read_back(refresh_stack: dict[str, Any]) -> None:
    region = refresh_stack["region"]
    # WHEN the operator starts the seed's request on the deployed stack and watches it
    code, out = cli("start", "--input", str(SEED_INPUT), "--stack", STACK, "--region", region)
    assert code == 0, out
    code, watched = cli("watch", "op-test002", "--stack", STACK, "--region", region, "--interval", "0.05")
    # THEN every state of the swap ran, the copy's progress shown, and it SUCCEEDED
    assert code == 0, watched
    assert "\nSUCCEEDED\n" in watched
    for state in ("SnapshotCheck", "CopySnapshot", "SetupDBUsers", "CheckSwapStatus", "SendNotification"):
        assert f"  {state} " in watched
    assert "available [####################] 100%" in watched
    # AND status and history read the operation back from the stack's tables
    code, status = cli("status", "op-test002", "--stack", STACK, "--region", region)
    assert code == 0
    assert "Operation op-test002: SUCCEEDED" in status
    assert "target:        new-cluster-id (us-west-2)" in status
    code, history = cli("history", "op-test002", "--stack", STACK, "--region", region)
    succeeded = {line.split()[2] for line in history.splitlines()[1:] if line.split()[3:4] == ["succeeded"]}
    assert {
        "validate_request",
        "copy_snapshot",
        "setup_db_users",
        "swap_clusters",
        "sns_notification",
    } <= succeeded
