"""Operating a deployed stack: start, status, history, watch, retry, unlock.

Everything goes through boto3 with the region and profile the operator gives, as the AWS CLI
would; the stack's outputs name the state machine and the tables, so the operator only ever
names the stack. The command modules (``aurora_restore.commands.start`` ...) print; this module
does the work and returns data.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aurora_restore.history import ExecutionHistory, StateRun, read_new_events
from dispatcher.request import RestoreRequest, unwrap

#: Stack outputs the commands read, with the other spellings a template might use.
OUTPUT_KEYS: dict[str, tuple[str, ...]] = {
    "state_machine_arn": ("StateMachineArn", "StateMachine"),
    "state_table": ("StateTableName", "StateTable"),
    "audit_table": ("AuditTableName", "AuditTable"),
    "topic_arn": ("TopicArn", "NotificationTopicArn", "Topic"),
    "function_name": ("DispatcherFunctionName", "FunctionName", "DispatcherFunction"),
}
#: How many retries of one operation the names ``<op>-retry-<n>`` allow.
MAX_RETRIES = 99


class OperatorError(Exception):
    """Something the operator must fix (no such stack, operation or lock); the message says what."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def session(region: str | None, profile: str | None) -> Any:
    """A boto3 session the way the AWS CLI makes one (profile, then region, then the environment)."""
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        return boto3.session.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as exc:
        raise OperatorError(f"--profile {profile}: {exc}", exit_code=2) from None


def _aws_errors(action: str) -> Any:
    """Turn credential / endpoint trouble into an OperatorError naming the action."""
    import contextlib

    from botocore.exceptions import BotoCoreError, NoCredentialsError, NoRegionError

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except NoRegionError:
            raise OperatorError(
                f"{action}: no region; pass --region or set AWS_REGION", exit_code=2
            ) from None
        except NoCredentialsError:
            raise OperatorError(
                f"{action}: no AWS credentials; pass --profile or configure the AWS CLI", exit_code=2
            ) from None
        except BotoCoreError as exc:
            raise OperatorError(f"{action}: {exc}") from None

    return guard()


@dataclass
class DeployedStack:
    """The deployed stack, found by name: its outputs and clients."""

    name: str
    session: Any
    outputs: dict[str, str]
    _clients: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def connect(cls, name: str, *, region: str | None = None, profile: str | None = None) -> DeployedStack:
        """Read the stack's outputs; OperatorError when it does not exist or lacks them."""
        from botocore.exceptions import ClientError

        boto = session(region, profile)
        with _aws_errors(f"reading stack {name}"):
            try:
                stacks = boto.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
            except ClientError as exc:
                message = exc.response.get("Error", {}).get("Message", str(exc))
                raise OperatorError(
                    f"stack {name!r} not found in {boto.region_name} ({message}); check --stack and --region",
                    exit_code=2,
                ) from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        return cls(name=name, session=boto, outputs=outputs)

    def output(self, what: str) -> str:
        """The output for ``what`` (a key of OUTPUT_KEYS)."""
        for key in OUTPUT_KEYS[what]:
            if key in self.outputs:
                return self.outputs[key]
        wanted = " or ".join(OUTPUT_KEYS[what])
        raise OperatorError(
            f"stack {self.name} has no output {wanted}; "
            f"outputs: {', '.join(sorted(self.outputs)) or '(none)'}",
            exit_code=2,
        )

    def client(self, service: str) -> Any:
        """A client in the stack's region."""
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    @property
    def state_machine_arn(self) -> str:
        """The refresh state machine."""
        return self.output("state_machine_arn")

    @property
    def store(self) -> Any:
        """The stack's state and audit tables."""
        from dispatcher.store import Store

        return Store(self.client("dynamodb"), self.output("state_table"), self.output("audit_table"))

    def execution_arn(self, name: str) -> str:
        """The ARN of the execution called ``name`` on the stack's state machine."""
        machine = self.state_machine_arn
        return machine.replace(":stateMachine:", ":execution:", 1) + ":" + name


# -- start ---------------------------------------------------------------------------------------
def operation_id_for(raw_input: dict[str, Any]) -> str:
    """The input's operation id, or one derived from its content (a repeated start finds it again)."""
    fields = unwrap(raw_input)
    if isinstance(fields.get("operation_id"), str):
        return str(fields["operation_id"])
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return "op-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_operation_id(raw_input: dict[str, Any], operation_id: str) -> dict[str, Any]:
    """The input, same shape, with ``operation_id`` set (the execution then never derives its own)."""
    if "body" in raw_input and isinstance(raw_input["body"], dict):
        return {**raw_input, "body": {**raw_input["body"], "operation_id": operation_id}}
    return {**raw_input, "operation_id": operation_id}


@dataclass
class Started:
    """What ``start`` / ``retry`` did."""

    operation_id: str
    execution_arn: str
    already_running: bool = False
    request: RestoreRequest | None = None


def start(stack: DeployedStack, raw_input: dict[str, Any]) -> Started:
    """Validate locally, then start the execution named after the operation id (idempotent)."""
    request = RestoreRequest.from_event(raw_input)  # ValidationError: nothing is started
    operation_id = operation_id_for(raw_input)
    document = with_operation_id(raw_input, operation_id)
    request = RestoreRequest.from_event(document)
    return _start_execution(stack, operation_id, operation_id, document, request, repeat_ok=True)


def _start_execution(
    stack: DeployedStack,
    operation_id: str,
    name: str,
    document: dict[str, Any],
    request: RestoreRequest | None,
    *,
    repeat_ok: bool,
) -> Started:
    sfn = stack.client("stepfunctions")
    text = json.dumps(document)
    with _aws_errors(f"starting {name}"):
        try:
            arn = sfn.start_execution(stateMachineArn=stack.state_machine_arn, name=name, input=text)[
                "executionArn"
            ]
            return Started(operation_id, arn, request=request)
        except sfn.exceptions.ExecutionAlreadyExists:
            if not repeat_ok:
                raise
            arn = stack.execution_arn(name)
            existing = sfn.describe_execution(executionArn=arn)
            if existing["status"] == "RUNNING" and json.loads(existing.get("input") or "null") == document:
                return Started(operation_id, arn, already_running=True, request=request)
            raise OperatorError(
                f"operation {operation_id} already ran (execution {name}: {existing['status']}); "
                f"to run the same request again: aurora-restore retry {operation_id} --stack {stack.name}"
            ) from None


# -- status / history ----------------------------------------------------------------------------
def operation(stack: DeployedStack, operation_id: str) -> dict[str, Any]:
    """The state item; OperatorError when the stack never saw the operation."""
    with _aws_errors(f"reading operation {operation_id}"):
        item = stack.store.get_operation(operation_id)
    if item is None:
        raise OperatorError(
            f"no operation {operation_id!r} in stack {stack.name} (table {stack.output('state_table')})"
        )
    return dict(item)


def latest_execution_arn(stack: DeployedStack, operation_id: str, item: dict[str, Any] | None = None) -> str:
    """The operation's most recent execution: the one that last ran a step, else the one named after it."""
    if item is None:
        with _aws_errors(f"reading operation {operation_id}"):
            item = stack.store.get_operation(operation_id)
    recorded = (item or {}).get("execution_id")
    if isinstance(recorded, str) and recorded.startswith("arn:"):
        return recorded
    return stack.execution_arn(operation_id)


def status(stack: DeployedStack, operation_id: str) -> dict[str, Any]:
    """State item and the latest execution's status."""
    item = operation(stack, operation_id)
    arn = latest_execution_arn(stack, operation_id, item)
    sfn = stack.client("stepfunctions")
    try:
        described = sfn.describe_execution(executionArn=arn)
        execution = {
            "arn": arn,
            "name": described.get("name"),
            "status": described["status"],
            "started": str(described.get("startDate", "")),
            "stopped": str(described.get("stopDate", "") or ""),
        }
    except sfn.exceptions.ExecutionDoesNotExist:
        execution = {"arn": arn, "status": "UNKNOWN (execution not found)"}
    return {"operation": item, "execution": execution}


def history(stack: DeployedStack, operation_id: str) -> list[dict[str, Any]]:
    """The audit trail, oldest first; OperatorError when there is none."""
    with _aws_errors(f"reading the audit trail of {operation_id}"):
        trail = stack.store.audit_trail(operation_id)
    if not trail:
        raise OperatorError(f"no audit events for {operation_id!r} in stack {stack.name}")
    return list(trail)


# -- watch ---------------------------------------------------------------------------------------
def follow(
    sfn: Any,
    execution_arn: str,
    on_change: Callable[[str, StateRun], None],
    *,
    interval: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ExecutionHistory:
    """Read the execution's history as it grows, calling ``on_change``, until it ends."""
    history_so_far = ExecutionHistory()
    while True:
        running = sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING"
        for change, run in history_so_far.feed(
            read_new_events(sfn, execution_arn, history_so_far.last_event_id)
        ):
            on_change(change, run)
        if not running:
            described = sfn.describe_execution(executionArn=execution_arn)
            history_so_far.status = described["status"]
            history_so_far.error = history_so_far.error or described.get("error")
            history_so_far.cause = history_so_far.cause or described.get("cause")
            return history_so_far
        sleep(interval)


# -- retry ---------------------------------------------------------------------------------------
def retry(stack: DeployedStack, operation_id: str) -> Started:
    """Start the operation's request again, same operation id, under a new execution name."""
    sfn = stack.client("stepfunctions")
    item = operation(stack, operation_id)
    previous_arn = latest_execution_arn(stack, operation_id, item)
    with _aws_errors(f"reading execution {previous_arn}"):
        try:
            previous = sfn.describe_execution(executionArn=previous_arn)
        except sfn.exceptions.ExecutionDoesNotExist:
            raise OperatorError(
                f"the execution of {operation_id} ({previous_arn}) no longer exists"
            ) from None
    if previous["status"] == "RUNNING":
        raise OperatorError(
            f"operation {operation_id} is still running ({previous_arn}); watch it with "
            f"aurora-restore watch {operation_id} --stack {stack.name}, or stop it first"
        )
    document = with_operation_id(json.loads(previous.get("input") or "{}"), operation_id)
    request = RestoreRequest.from_event(document)
    for attempt in range(1, MAX_RETRIES + 1):
        name = f"{operation_id}-retry-{attempt}"
        try:
            return _start_execution(stack, operation_id, name, document, request, repeat_ok=False)
        except sfn.exceptions.ExecutionAlreadyExists:
            continue
    raise OperatorError(
        f"operation {operation_id} has been retried {MAX_RETRIES} times; start a new operation"
    )


# -- unlock --------------------------------------------------------------------------------------
@dataclass
class LockInfo:
    """Who holds a target's lock, and how that operation is doing."""

    holder: dict[str, Any] | None
    operation: dict[str, Any] | None = None
    execution_status: str | None = None


def lock_info(stack: DeployedStack, target_cluster_id: str, region: str) -> LockInfo:
    """The lock item and its holder's operation and execution."""
    store = stack.store
    with _aws_errors(f"reading the lock on {target_cluster_id}"):
        holder = store.lock_holder(region, target_cluster_id)
    if holder is None:
        return LockInfo(None)
    owner = str(holder.get("lock_owner", ""))
    item = store.get_operation(owner) if owner else None
    execution_status = None
    if item is not None:
        sfn = stack.client("stepfunctions")
        try:
            execution_status = sfn.describe_execution(executionArn=latest_execution_arn(stack, owner, item))[
                "status"
            ]
        except sfn.exceptions.ExecutionDoesNotExist:
            execution_status = None
    return LockInfo(holder, item, execution_status)


def caller(stack: DeployedStack) -> str:
    """Who is acting (the caller's ARN), for the audit trail."""
    try:
        return str(stack.client("sts").get_caller_identity()["Arn"])
    except Exception:
        return "unknown caller"


def unlock(stack: DeployedStack, target_cluster_id: str, region: str, *, reason: str) -> str | None:
    """Release the lock (audited on the holder's trail); returns the operation that held it."""
    with _aws_errors(f"releasing the lock on {target_cluster_id}"):
        released: str | None = stack.store.force_release_lock(
            region, target_cluster_id, released_by=caller(stack), reason=reason
        )
    return released
