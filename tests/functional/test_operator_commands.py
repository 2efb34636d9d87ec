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
import os
import re
import urllib.request
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aurora_restore.cli import main
from dispatcher.registry import Registry, Step
from refresh.errors import CopyFailed
from refresh.target_lock import lock_holder, release_lock, take_lock

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
        take_lock(ctx.store, request.target_region, request.target_cluster_id, ctx.operation_id)
        return {"taken": True}


class PollCopy(Step):
    """A copy at 50 % on the first poll and done on the second; fails the first execution if asked.

    The first poll's fields are the product's own poll fields from two looks twenty minutes
    apart (10 %, then 50 %), so a watcher can estimate the finish; the tag ``wait`` sets how long
    the Wait state waits (seconds, compressed by the test's engine).
    """

    reads = ("request", "lock")
    result_key = "copy"
    mutating = False

    def run(self, ctx: Any) -> dict[str, Any]:
        from steps.lib.polling import poll_fields

        request = ctx.require_request()
        trail = ctx.store.audit_trail(ctx.operation_id)
        polls = sum(1 for e in trail if e["step"] == self.name and e["event"] == "started")
        if request.tags.get("fail-first") == "yes" and not any(
            e["event"] == "failed" for e in trail if e["step"] == self.name
        ):
            raise CopyFailed("the copy failed (test)")
        if polls >= 2:
            return {"status": "available", "percent_progress": 100, "complete": True, "next_poll_seconds": 0}
        now = ctx.clock()
        limits = {"max_wait_seconds": 86_400, "settings": ctx.settings, "what": "test copy"}
        earlier = poll_fields(None, now=now - timedelta(minutes=20), complete=False, percent=10, **limits)
        fields = poll_fields(earlier, now=now, complete=False, percent=50, **limits)
        return {
            "identifier": "ar-orders-test",
            "status": "copying",
            "percent_progress": 50,
            **fields,
            "next_poll_seconds": int(request.tags.get("wait", "0")),
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
            "released": release_lock(
                ctx.store, request.target_region, request.target_cluster_id, ctx.operation_id
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
    from aurora_restore.simulate.moto_compat import corrections

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
    with bridge.installed(), compressed_waits(0.001), corrections():
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


def _test_app() -> Any:
    """The dispatcher with the test steps (see the module docstring)."""
    from dispatcher.aws import Clients
    from dispatcher.handler import Dispatcher
    from dispatcher.registry import load_builtin_steps
    from dispatcher.settings import Settings
    from tests.conftest import STACK_PLACEMENT

    registry = Registry()
    registry.register("validate_request")(load_builtin_steps().get("validate_request"))
    registry.register("take_lock")(TakeLock)
    registry.register("poll_copy")(PollCopy)
    registry.register("release_lock")(ReleaseLock)
    return Dispatcher(
        registry=registry,
        settings=Settings(state_table="ops-state", audit_table="ops-audit", **STACK_PLACEMENT),
        clients=Clients(default_region=REGION),
    )


@pytest.fixture(autouse=True)
def dispatcher_logs_apart() -> Iterator[io.StringIO]:
    """The in-process dispatcher logs JSON lines to a sink of its own, never into the CLI's stdout.

    On AWS the dispatcher's lines go to CloudWatch, not to the operator's terminal. Here it serves
    executions on moto's thread while a command's stdout is captured; an earlier test may have left
    structlog rendering for a console, whose lines no filter could tell from the command's own.
    """
    import structlog

    from dispatcher import logs

    before = structlog.get_config()
    sink = io.StringIO()
    logs.configure(json_lines=True, stream=sink)
    yield sink
    structlog.configure(**before)


@pytest.fixture
def stack(fresh_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The test steps' stack (see the module docstring)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with deployed(fresh_server, monkeypatch, REGION, DEFINITION, _test_app()) as found:
        yield found


@pytest.fixture
def timed_stack(fresh_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The same stack with a state machine that times out after one second."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with deployed(
        fresh_server, monkeypatch, REGION, {**DEFINITION, "TimeoutSeconds": 1}, _test_app()
    ) as found:
        yield found


def cli(*args: str) -> tuple[int, str]:
    """Run the command line as a user would; return the exit code and what it printed."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


@dataclass
class Ran:
    """What a person sees after a command: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """stderr, which must be exactly one line."""
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got: {self.err!r}"
        return lines[0]


def run_cli(*args: str) -> Ran:
    """Run the command line (argument errors included) and keep both streams."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's way of refusing a command line
            code = int(exc.code or 0)
    # The dispatcher serves the executions in this process and logs JSON lines to stdout, which
    # a person's terminal would never show: keep only what the command printed.
    printed = "".join(line for line in out.getvalue().splitlines(keepends=True) if not line.startswith('{"'))
    return Ran(code, printed, err.getvalue())


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


#: How long a helper waits for moto's execution thread: generous, because a loaded 2-core machine
#: can stall that thread for seconds; a healthy run returns within a fraction of a second.
WAIT_SECONDS = 60.0


def _wait(sfn: Any, arn: str) -> str:
    import time

    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        status = sfn.describe_execution(executionArn=arn)["status"]
        if status != "RUNNING":
            return str(status)
        time.sleep(0.02)
    raise AssertionError("the execution did not finish")


def _execution_arn(stack: dict, name: str) -> str:
    return str(stack["machine"]).replace(":stateMachine:", ":execution:") + ":" + name


def _wait_for_state(sfn: Any, arn: str, state: str) -> None:
    """Until the execution has entered ``state`` (polls the history, as a person would)."""
    import time

    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        if any(e.get("stateEnteredEventDetails", {}).get("name") == state for e in events):
            return
        time.sleep(0.02)
    raise AssertionError(f"the execution never entered {state}")


STAMP = r"\d\d:\d\d:\d\d"
FLAGS = f"--stack {STACK} --region {REGION}"


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
    assert _execution_arn(stack, "op-ops1") in out
    assert f"follow it:  aurora-restore watch op-ops1 {FLAGS}" in out
    code, watched = cli("watch", "op-ops1", "--stack", STACK, "--region", REGION, "--interval", "0.05")
    # THEN the execution ran to the end, every state is shown with its time, the copy's progress as a bar
    assert code == 0, watched
    assert re.search(rf"^{STAMP}  SUCCEEDED after ", watched, re.MULTILINE), watched
    for state in ("ValidateRequest", "TakeLock", "PollCopy", "WaitForCopy", "ReleaseLock"):
        assert re.search(rf"^{STAMP}  {state} ", watched, re.MULTILINE), state
    assert "[##########----------]  50%" in watched
    assert "[####################] 100%" in watched
    # AND status reads the state item and the execution
    code, status = cli("status", "op-ops1", "--stack", STACK, "--region", REGION)
    assert code == 0
    assert "Operation op-ops1: SUCCEEDED" in status
    assert "execution:     SUCCEEDED" in status
    assert "lock:          free (orders-dev in eu-central-1)" in status
    # AND history shows the audit trail as a table, every step started and succeeded
    code, history = cli("history", "op-ops1", "--stack", STACK, "--region", REGION)
    assert code == 0
    lines = history.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "STEP", "EVENT", "DURATION", "DETAIL"]
    assert sum(1 for line in lines if " poll_copy " in line and " succeeded " in line) == 2
    assert any(" release_lock " in line for line in lines)


def test_a_request_without_an_operation_id_is_a_new_operation_each_time(stack: dict, tmp_path: Any) -> None:
    # GIVEN a request file without an operation id, started and run to the end
    path = _request(tmp_path, operation_id=None)
    first = run_cli("start", "--input", path, "--stack", STACK, "--region", REGION)
    assert first.code == 0, first
    first_id = first.out.split()[1]
    assert _wait(stack["sfn"], _execution_arn(stack, first_id)) == "SUCCEEDED"
    # WHEN the same file is started again (the normal case: refresh the environment again)
    again = run_cli("start", "--input", path, "--stack", STACK, "--region", REGION)
    # THEN it is a second operation with its own id and execution, and it runs
    assert again.code == 0, again
    second_id = again.out.split()[1]
    assert second_id != first_id
    for operation_id in (first_id, second_id):
        # op-<UTC date>-<time>-<random>: a valid execution name, and sortable
        assert re.fullmatch(r"op-\d{8}-\d{6}-[0-9a-f]{8}", operation_id)
    assert _wait(stack["sfn"], _execution_arn(stack, second_id)) == "SUCCEEDED"
    assert len(stack["sfn"].list_executions(stateMachineArn=stack["machine"])["executions"]) == 2


def test_a_named_operation_started_again_while_it_runs_is_the_same_execution(
    stack: dict, tmp_path: Any
) -> None:
    # GIVEN a request with an operation id, running (its copy waits a day)
    path = _request(tmp_path, tags={"wait": "100000"})
    assert run_cli("start", "--input", path, "--stack", STACK, "--region", REGION).code == 0
    # WHEN the same request is started again
    again = run_cli("start", "--input", path, "--stack", STACK, "--region", REGION)
    # THEN the running execution is found, no second one started
    assert again.code == 0, again
    assert again.out.startswith(f"Operation op-ops1 is already running: {_execution_arn(stack, 'op-ops1')}")
    assert len(stack["sfn"].list_executions(stateMachineArn=stack["machine"])["executions"]) == 1
    # AND a different request under the same id is refused while it runs
    other = run_cli(
        "start",
        "--input",
        _request(tmp_path, target_cluster_id="orders-qa"),
        "--stack",
        STACK,
        "--region",
        REGION,
    )
    assert other.code == 2
    assert other.error_line.startswith(
        "aurora-restore start: operation op-ops1 is already running with a different request"
    )
    assert len(stack["sfn"].list_executions(stateMachineArn=stack["machine"])["executions"]) == 1
    # AND its status, while it waits, is RUNNING (exit 0) with the lock it holds until it ends
    _wait_for_state(stack["sfn"], _execution_arn(stack, "op-ops1"), "WaitForCopy")
    status = run_cli("status", "op-ops1", "--stack", STACK, "--region", REGION)
    assert status.code == 0, status
    assert status.out.splitlines()[0] == "Operation op-ops1: RUNNING"
    assert re.search(
        r"^  lock:          held by this operation since \S+ \(released when it ends\)$",
        status.out,
        re.MULTILINE,
    ), status.out
    assert "next:" not in status.out
    stack["sfn"].stop_execution(executionArn=_execution_arn(stack, "op-ops1"))


def test_a_named_operation_that_already_ran_is_refused_with_the_retry_command(
    stack: dict, tmp_path: Any
) -> None:
    # GIVEN an operation with an id of its own that ran to the end
    path = _request(tmp_path)
    assert run_cli("start", "--input", path, "--stack", STACK, "--region", REGION).code == 0
    assert _wait(stack["sfn"], _execution_arn(stack, "op-ops1")) == "SUCCEEDED"
    # WHEN its request is started again
    again = run_cli("start", "--input", path, "--stack", STACK, "--region", REGION)
    # THEN it is refused, one line says why and how to run it again; nothing started
    assert again.code == 2
    assert again.error_line == (
        "aurora-restore start: operation op-ops1 already ran (SUCCEEDED); to run its request again: "
        f"aurora-restore retry op-ops1 {FLAGS}; to start a new refresh, give the request another "
        "operation_id or none"
    )
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
    assert lock_holder(store, REGION, "orders-dev")["lock_owner"] == "op-ops1"
    # WHEN the operator unlocks without --yes and no terminal to confirm on: refused
    code, out = cli("unlock", "orders-dev", "--region", REGION, "--stack", STACK)
    assert code == 2
    assert "held by operation  op-ops1" in out
    assert lock_holder(store, REGION, "orders-dev") is not None
    # WHEN the operator unlocks with --yes
    code, out = cli("unlock", "orders-dev", "--region", REGION, "--stack", STACK, "--yes")
    # THEN the holder was shown, the lock is gone and the release is on the holder's audit trail
    assert code == 0, out
    assert "execution status   FAILED" in out
    assert lock_holder(store, REGION, "orders-dev") is None
    released = [e for e in store.audit_trail("op-ops1") if e["event"] == "lock_force_released"]
    assert len(released) == 1
    assert released[0]["target_cluster_id"] == "orders-dev"
    assert "released_by" in released[0]


def test_unlock_with_no_lock_says_so(stack: dict) -> None:
    code, out = cli("unlock", "orders-dev", "--region", REGION, "--stack", STACK, "--yes")
    assert code == 0
    assert "No lock on orders-dev" in out


def test_unknown_stack_is_a_usage_error(stack: dict) -> None:
    ran = run_cli("status", "op-x", "--stack", "no-such-stack", "--region", REGION)
    assert ran.code == 2
    assert ran.error_line == (
        "aurora-restore status: no stack 'no-such-stack' in eu-central-1; check --stack and --region "
        "(aws cloudformation list-stacks --region eu-central-1)"
    )


def test_a_mistyped_operation_id_gets_one_line_and_the_nearest_ids(stack: dict, tmp_path: Any) -> None:
    # GIVEN an operation op-ops1 that ran
    assert run_cli("start", "--input", _request(tmp_path), "--stack", STACK, "--region", REGION).code == 0
    assert _wait(stack["sfn"], _execution_arn(stack, "op-ops1")) == "SUCCEEDED"
    # WHEN each command is given a near miss
    for command in ("status", "history", "watch", "retry"):
        ran = run_cli(command, "op-osp1", "--stack", STACK, "--region", REGION)
        # THEN one line names the stack it looked in and the id that is close; exit 2
        assert ran.code == 2, (command, ran)
        assert ran.error_line == (
            f"aurora-restore {command}: no operation 'op-osp1' in stack {STACK} ({REGION}); did you mean "
            "op-ops1? (the id is in aurora-restore start's output and in every notification)"
        )
    # AND an id that cannot be one is refused before anything is asked of AWS
    ran = run_cli("status", "op ops1;", "--stack", STACK, "--region", REGION)
    assert ran.code == 2
    assert ran.error_line.startswith(
        "aurora-restore status: argument OP: 'op ops1;' is not an operation id: 1-64 letters, digits"
    )


def test_status_reports_an_aborted_operation_with_its_lock_and_the_command_that_releases_it(
    stack: dict, tmp_path: Any
) -> None:
    # GIVEN a running operation, holding its target's lock, stopped by someone during its wait
    path = _request(tmp_path, tags={"wait": "100000"})
    assert run_cli("start", "--input", path, "--stack", STACK, "--region", REGION).code == 0
    arn = _execution_arn(stack, "op-ops1")
    _wait_for_state(stack["sfn"], arn, "WaitForCopy")
    stack["sfn"].stop_execution(executionArn=arn)
    assert _wait(stack["sfn"], arn) == "ABORTED"
    # WHEN the operator asks for its status
    ran = run_cli("status", "op-ops1", "--stack", STACK, "--region", REGION)
    # THEN it says ABORTED (the state item still says RUNNING), exit 1, the lock and how to free it
    assert ran.code == 1, ran
    lines = ran.out.splitlines()
    assert lines[0] == "Operation op-ops1: ABORTED"
    assert "  execution:     ABORTED  " + arn in lines
    assert "  state item:    says RUNNING: the execution ended ABORTED before a step could record it" in lines
    assert any(
        re.fullmatch(
            r"  lock:          still held by this operation since \S+: no other operation can refresh "
            r"orders-dev",
            line,
        )
        for line in lines
    ), ran.out
    unlock = f"aurora-restore unlock orders-dev --region {REGION} --stack {STACK}"
    assert f"                 or, to give up and free the target for other operations: {unlock}" in lines
    assert (
        f"  next:          to carry on, retry (it adopts what the operation already made): "
        f"aurora-restore retry op-ops1 {FLAGS}" in lines
    )
    assert "                 runbook: docs/runbook.md#releasing-a-stuck-lock" in lines
    # AND the command it printed, run as printed, releases the lock
    released = run_cli(*unlock.split()[1:], "--yes")
    assert released.code == 0, released
    assert lock_holder(stack["app"].store, REGION, "orders-dev") is None


def test_status_reports_a_timed_out_operation(timed_stack: dict, tmp_path: Any) -> None:
    # GIVEN an execution that ran past the state machine's TimeoutSeconds while waiting
    assert (
        run_cli("start", "--input", _request(tmp_path, tags={"wait": "100000"}), "--stack", STACK).code == 0
    )
    assert _wait(timed_stack["sfn"], _execution_arn(timed_stack, "op-ops1")) == "TIMED_OUT"
    # WHEN the operator asks
    ran = run_cli("status", "op-ops1", "--stack", STACK)
    # THEN TIMED_OUT, exit 1, the lock's state and the runbook section for a stuck lock (whether
    # the lock was taken depends on how far the second went; the aborted case shows the release)
    assert ran.code == 1
    assert ran.out.splitlines()[0] == "Operation op-ops1: TIMED_OUT"
    assert re.search(r"^  lock:          (free|still held by this operation)", ran.out, re.MULTILINE), ran.out
    assert "runbook: docs/runbook.md#releasing-a-stuck-lock" in ran.out


def test_status_of_a_failed_operation_exits_1_with_the_error_and_the_next_commands(
    stack: dict, tmp_path: Any
) -> None:
    # GIVEN an operation whose copy failed
    assert (
        run_cli("start", "--input", _request(tmp_path, tags={"fail-first": "yes"}), "--stack", STACK).code
        == 0
    )
    assert _wait(stack["sfn"], _execution_arn(stack, "op-ops1")) == "FAILED"
    # WHEN the operator asks, as text and as JSON
    ran = run_cli("status", "op-ops1", "--stack", STACK, "--region", REGION)
    as_json = run_cli("status", "op-ops1", "--stack", STACK, "--region", REGION, "--json")
    # THEN FAILED with the step's error, the retry command and the errors section; exit 1 both ways
    assert ran.code == 1 and as_json.code == 1
    assert ran.out.splitlines()[0] == "Operation op-ops1: FAILED"
    assert "  error:         CopyFailed in poll_copy: the copy failed (test)" in ran.out
    assert f"aurora-restore retry op-ops1 {FLAGS}" in ran.out
    assert "runbook: docs/runbook.md#errors-and-what-to-do" in ran.out
    document = json.loads(as_json.out)
    assert (document["status"], document["execution"]["status"]) == ("FAILED", "FAILED")
    assert document["lock"]["holder"] == "op-ops1"


def test_watch_shows_a_live_line_while_the_copy_waits(stack: dict, tmp_path: Any) -> None:
    # GIVEN a copy at 50 % that waits twenty minutes before its next check
    assert run_cli("start", "--input", _request(tmp_path, tags={"wait": "1200"}), "--stack", STACK).code == 0
    # WHEN the operator watches it (output to a pipe, as in a log)
    ran = run_cli("watch", "op-ops1", "--stack", STACK, "--region", REGION, "--interval", "0.02")
    # THEN while it waits a line says where the copy is, when it should finish, when the next
    # check is, and how long the operation has run
    assert ran.code == 0, ran
    live = [line for line in ran.out.splitlines() if "  WaitForCopy  " in line and "waiting" in line]
    assert live, ran.out
    assert re.fullmatch(
        rf"{STAMP}  WaitForCopy +waiting: copy ar-orders-test copying \[##########----------\]  50%, "
        r"est\. finish \d\d:\d\d UTC \(in 2 min \d+ s\); next check "
        rf"{STAMP} \(in (19 min \d+ s|20 min 0 s)\); elapsed [\d.]+ s",
        live[0],
    ), live[0]


def test_watch_of_a_failed_operation_ends_with_the_next_commands(stack: dict, tmp_path: Any) -> None:
    assert (
        run_cli("start", "--input", _request(tmp_path, tags={"fail-first": "yes"}), "--stack", STACK).code
        == 0
    )
    ran = run_cli("watch", "op-ops1", "--stack", STACK, "--region", REGION, "--interval", "0.02")
    assert ran.code == 1, ran
    assert re.search(rf"^{STAMP}  FAILED after ", ran.out, re.MULTILINE), ran.out
    assert "  error: CopyFailed in PollCopy (poll_copy): the copy failed (test)" in ran.out
    assert (
        f"  next:  once the cause is fixed, retry (it adopts what the operation already made): "
        f"aurora-restore retry op-ops1 {FLAGS}" in ran.out
    )
    assert f"aurora-restore unlock orders-dev --region {REGION} --stack {STACK}" in ran.out
    assert "         runbook: docs/runbook.md#errors-and-what-to-do" in ran.out.splitlines()


def test_history_fits_the_terminal_and_json_keeps_everything(
    stack: dict, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("start", "--input", _request(tmp_path), "--stack", STACK).code == 0
    assert _wait(stack["sfn"], _execution_arn(stack, "op-ops1")) == "SUCCEEDED"
    # WHEN the terminal is 72 columns wide
    monkeypatch.setenv("COLUMNS", "72")
    table = run_cli("history", "op-ops1", "--stack", STACK)
    full = run_cli("history", "op-ops1", "--stack", STACK, "--json")
    # THEN no line is wider, the cut ones say so; --json holds every item whole
    assert table.code == 0 and full.code == 0
    lines = table.out.splitlines()
    assert max(len(line) for line in lines) <= 72
    assert any(line.endswith("...") for line in lines)
    items = json.loads(full.out)
    assert len(items) == len(lines) - 1
    assert all(item["operation_id"] == "op-ops1" for item in items)


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
    from dispatcher.settings import Settings
    from infra.state_machine import build_definition
    from refresh.request import RestoreRequest

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


SEED_INPUT = Path(__file__).parents[2] / "aurora_restore" / "examples" / "default-input.json"


def test_a_real_refresh_is_started_watched_and_read_back(refresh_stack: dict[str, Any]) -> None:
    region = refresh_stack["region"]
    # WHEN the operator starts the seed's request on the deployed stack and watches it
    code, out = cli("start", "--input", str(SEED_INPUT), "--stack", STACK, "--region", region)
    assert code == 0, out
    code, watched = cli("watch", "op-test002", "--stack", STACK, "--region", region, "--interval", "0.05")
    # THEN every state of the swap ran, the copy's progress shown, and it SUCCEEDED (no RDS event
    # has reached this stack, so its loops polled: CheckSwapStatus)
    assert code == 0, watched
    assert re.search(rf"^{STAMP}  SUCCEEDED after ", watched, re.MULTILINE), watched
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
        "send_notification",
    } <= succeeded


# -- AWS refusing, missing resources, a closed pipe, an input nested too deeply ---------------------
@contextlib.contextmanager
def aws_answers(monkeypatch: pytest.MonkeyPatch, *faults: str) -> Iterator[None]:
    """Every new boto3 session (the command's own too) gets these AWS errors, as AWS sends them.

    botocore installs its built-in handlers into each new session; the rehearsal's fault injector
    answers the named calls at ``before-send`` with the service's own error format.
    """
    import botocore.handlers

    from aurora_restore.simulate.hooks import FaultInjector, parse_fault

    injector = FaultInjector([parse_fault(spec) for spec in faults])
    handlers: list[tuple[str, Any]] = []
    injector.register(lambda event, handler: handlers.append((event, handler)))
    monkeypatch.setattr(
        botocore.handlers, "BUILTIN_HANDLERS", [*botocore.handlers.BUILTIN_HANDLERS, *handlers]
    )
    yield


def _finished_operation(stack: dict, tmp_path: Any) -> None:
    assert run_cli("start", "--input", _request(tmp_path), "--stack", STACK).code == 0
    assert _wait(stack["sfn"], _execution_arn(stack, "op-ops1")) == "SUCCEEDED"


def test_access_denied_is_one_line_naming_the_permission(
    stack: dict, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _finished_operation(stack, tmp_path)
    with aws_answers(monkeypatch, "dynamodb.GetItem=AccessDeniedException"):
        ran = run_cli("status", "op-ops1", "--stack", STACK, "--region", REGION)
    assert ran.code == 2
    assert ran.error_line.startswith(
        "aurora-restore status: AWS denied dynamodb:GetItem on table ops-state (AccessDeniedException: "
    )
    assert ran.error_line.endswith(
        "your AWS identity lacks this permission: use a profile or role allowed to operate the stack (--profile)"
    )


def test_throttling_past_the_retries_is_one_line(
    stack: dict, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _finished_operation(stack, tmp_path)
    with aws_answers(monkeypatch, "stepfunctions.DescribeExecution=ThrottlingException"):
        ran = run_cli("watch", "op-ops1", "--stack", STACK, "--region", REGION)
    assert ran.code == 2
    assert ran.error_line.startswith(
        f"aurora-restore watch: AWS throttled states:DescribeExecution on execution op-ops1 in {REGION} "
        "(ThrottlingException: "
    )
    assert ran.error_line.endswith("past botocore's retries; wait a minute and run it again")


def test_a_missing_table_is_one_line_naming_it(stack: dict, tmp_path: Any) -> None:
    import boto3

    _finished_operation(stack, tmp_path)
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName="ops-audit")
    ran = run_cli("history", "op-ops1", "--stack", STACK, "--region", REGION)
    assert ran.code == 2
    assert ran.error_line.startswith(
        f"aurora-restore history: the table ops-audit does not exist in {REGION} (ResourceNotFoundException"
    )
    assert ran.error_line.endswith(
        "the stack's outputs name it: check --region is the stack's region and the stack is fully deployed"
    )


def test_no_credentials_no_region_or_an_unknown_profile_is_one_line(
    stack: dict, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a machine with no AWS configuration at all
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    no_credentials = run_cli("status", "op-ops1", "--stack", STACK, "--region", REGION)
    assert no_credentials.code == 2
    assert no_credentials.error_line == (
        "aurora-restore status: Unable to locate credentials: configure the AWS CLI (aws configure, "
        "aws sso login) or pass --profile"
    )
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    no_region = run_cli("history", "op-ops1", "--stack", STACK)
    assert no_region.code == 2
    assert no_region.error_line == "aurora-restore history: no AWS region: pass --region or set AWS_REGION"
    no_profile = run_cli("status", "op-ops1", "--stack", STACK, "--profile", "nightshift")
    assert no_profile.code == 2
    assert no_profile.error_line == (
        "aurora-restore status: The config profile (nightshift) could not be found; the profiles are in "
        "~/.aws/config (aws configure list-profiles)"
    )


def test_history_into_a_closed_pipe_ends_quietly(stack: dict, tmp_path: Any, capsys: Any) -> None:
    # GIVEN a reader that went away, as `aurora-restore history OP | head -1` leaves it
    _finished_operation(stack, tmp_path)
    capsys.readouterr()
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w") as pipe, redirect_stdout(pipe):
        code = main(["history", "op-ops1", "--stack", STACK, "--region", REGION])
        # THEN what is still buffered goes nowhere: the interpreter's last flush cannot fail either
        print("late line")
    # AND no traceback, no line on stderr; the shell's code for a closed pipe
    assert code == 141
    assert capsys.readouterr().err == ""


def test_a_request_nested_too_deeply_is_one_line(stack: dict, tmp_path: Any) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"body": ' + "[" * 100_000 + "]" * 100_000 + "}")
    for command in (("start", "--stack", STACK), ("simulate",)):
        ran = run_cli(command[0], "--input", str(deep), *command[1:])
        assert ran.code == 2, (command, ran)
        assert ran.error_line.startswith(f"aurora-restore {command[0]}: --input {deep}: nested too deeply")
    assert stack["sfn"].list_executions(stateMachineArn=stack["machine"])["executions"] == []


def test_watch_can_stop_after_n_reads_and_on_ctrl_c_says_the_operation_goes_on(
    stack: dict, tmp_path: Any, capsys: Any
) -> None:
    from aurora_restore.commands.watch import Watcher, watch_execution
    from aurora_restore.operator import DeployedStack

    # GIVEN an operation waiting a day for its copy
    assert (
        run_cli("start", "--input", _request(tmp_path, tags={"wait": "100000"}), "--stack", STACK).code == 0
    )
    arn = _execution_arn(stack, "op-ops1")
    _wait_for_state(stack["sfn"], arn, "WaitForCopy")

    # WHEN it is watched for two reads only (no real sleeping), it is still running: exit 0
    shown = io.StringIO()
    deployed_stack = DeployedStack.connect(STACK, region=REGION)
    code = watch_execution(
        deployed_stack, "op-ops1", arn, watcher=Watcher(shown), sleep=lambda _: None, max_rounds=2
    )
    assert code == 0
    assert "  WaitForCopy          waiting: copy ar-orders-test copying" in shown.getvalue()

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    # WHEN the operator presses Ctrl-C while watching
    code = watch_execution(
        DeployedStack.connect(STACK, region=REGION),
        "op-ops1",
        arn,
        watcher=Watcher(io.StringIO()),
        sleep=interrupted,
    )
    # THEN the watch ends with 130 and one line that the operation itself goes on
    assert code == 130
    assert capsys.readouterr().err == (
        f"aurora-restore watch: stopped watching; the operation goes on (aurora-restore watch op-ops1 {FLAGS})\n"
    )
    assert stack["sfn"].describe_execution(executionArn=arn)["status"] == "RUNNING"
    stack["sfn"].stop_execution(executionArn=arn)


def test_the_commands_call_only_the_actions_the_operator_policy_lists(
    stack: dict, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import botocore.handlers

    from aurora_restore.operator import OPERATOR_ACTIONS

    # GIVEN a record of every AWS action the commands (this thread; the Lambda runs on the
    # engine's threads) ask for, through botocore's handlers that every new session installs
    called: set[str] = set()
    main_thread = threading.current_thread()

    def note(model: Any, **_: Any) -> None:
        if threading.current_thread() is main_thread:
            called.add(f"{model.service_model.signing_name}:{model.name}")

    monkeypatch.setattr(
        botocore.handlers,
        "BUILTIN_HANDLERS",
        [*botocore.handlers.BUILTIN_HANDLERS, ("before-parameter-build", note)],
    )
    # WHEN an operator runs every command, the failing paths included
    assert (
        run_cli("start", "--input", _request(tmp_path, tags={"fail-first": "yes"}), "--stack", STACK).code
        == 0
    )
    assert run_cli("watch", "op-ops1", "--stack", STACK, "--interval", "0.02").code == 1
    assert run_cli("status", "op-ops1", "--stack", STACK).code == 1
    assert run_cli("history", "op-ops1", "--stack", STACK).code == 0
    assert run_cli("status", "op-osp1", "--stack", STACK).code == 2
    assert run_cli("unlock", "orders-dev", "--region", REGION, "--stack", STACK, "--yes").code == 0
    assert run_cli("retry", "op-ops1", "--stack", STACK).code == 0
    assert _wait(stack["sfn"], _execution_arn(stack, "op-ops1-retry-1")) == "SUCCEEDED"
    assert run_cli("start", "--input", _request(tmp_path), "--stack", STACK).code == 2
    # THEN every action they called is in the list the operator policy is made from, and each
    # listed action was called (the list is not padded)
    listed = {action for actions in OPERATOR_ACTIONS.values() for action in actions}
    assert called == listed
