"""Operating a deployed stack: start, status, history, watch, retry, unlock.

Everything goes through boto3 with the region and profile the operator gives, as the AWS CLI
would; the stack's outputs name the state machine and the tables, so the operator only ever
names the stack. The command modules (``aurora_restore.commands.start`` ...) print; this module
does the work and returns data. AWS's own errors are left to rise: ``aurora_restore.boundary``
explains them, in one place, for every command.
"""

from __future__ import annotations

import difflib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aurora_restore.boundary import OperatorError, remember_calls
from aurora_restore.history import ExecutionHistory, StateRun, read_new_events
from refresh.request import RestoreRequest, unwrap
from refresh.target_lock import force_release_lock, lock_holder

#: Stack outputs the commands read, with the other spellings a template might use.
OUTPUT_KEYS: dict[str, tuple[str, ...]] = {
    "state_machine_arn": ("StateMachineArn", "StateMachine"),
    "state_table": ("StateTableName", "StateTable"),
    "audit_table": ("AuditTableName", "AuditTable"),
    "topic_arn": ("TopicArn", "NotificationTopicArn", "Topic"),
    "function_name": ("DispatcherFunctionName", "FunctionName", "DispatcherFunction"),
}
#: Every AWS action the operator commands call, by what they act on: what an operator's policy
#: must allow (with ``kms:Decrypt`` on the stack's key, which encrypts the tables). A test runs
#: every command and checks they call nothing else. ``states:ListExecutions`` only suggests the
#: nearest ids for a mistyped one, ``sts:GetCallerIdentity`` only names who released a lock.
OPERATOR_ACTIONS: dict[str, tuple[str, ...]] = {
    "stack": ("cloudformation:DescribeStacks",),
    "state machine": ("states:StartExecution", "states:ListExecutions"),
    "executions": ("states:DescribeExecution", "states:GetExecutionHistory"),
    "state table": ("dynamodb:GetItem", "dynamodb:DeleteItem"),
    "audit table": ("dynamodb:Query", "dynamodb:PutItem"),
    "caller": ("sts:GetCallerIdentity",),
}
#: How many retries of one operation the names ``<op>-retry-<n>`` allow.
MAX_RETRIES = 99
#: Execution statuses that mean the operation is over without success.
STOPPED_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
#: Execution statuses that mean it still goes on (a redriven execution is about to run again).
GOING_STATUSES = ("RUNNING", "PENDING_REDRIVE")
_RETRY_SUFFIX = re.compile(r"-retry-\d+$")
#: Runbook sections the next-step hints point to, by what went wrong.
RUNBOOK = "docs/runbook.md"
RUNBOOK_SECTIONS = {
    "SwapFailed": "cleaning-up-after-a-failed-swap",
    "ChecksFailed": "when-checks-fail",
    "ABORTED": "releasing-a-stuck-lock",
    "TIMED_OUT": "releasing-a-stuck-lock",
}
RUNBOOK_DEFAULT_SECTION = "errors-and-what-to-do"
#: Errors a retry repeats: the same request fails the same way, so start a corrected one.
NOT_RETRYABLE = ("ValidationError", "SnapshotNotFound")


def session(region: str | None, profile: str | None) -> Any:
    """A boto3 session the way the AWS CLI makes one (profile, then region, then the environment)."""
    import boto3

    boto = boto3.session.Session(profile_name=profile, region_name=region)
    remember_calls(boto)
    return boto


@dataclass
class DeployedStack:
    """The deployed stack, found by name: its outputs and clients."""

    name: str
    session: Any
    outputs: dict[str, str]
    profile: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def connect(cls, name: str, *, region: str | None = None, profile: str | None = None) -> DeployedStack:
        """Read the stack's outputs; OperatorError when it does not exist."""
        from botocore.exceptions import ClientError

        boto = session(region, profile)
        cloudformation = boto.client("cloudformation")
        try:
            stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            # CloudFormation answers a missing stack with a ValidationError "... does not exist".
            if error.get("Code") != "ValidationError" or "does not exist" not in str(error.get("Message")):
                raise
            raise OperatorError(
                f"no stack {name!r} in {boto.region_name}; check --stack and --region "
                f"(aws cloudformation list-stacks --region {boto.region_name})"
            ) from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        return cls(name=name, session=boto, outputs=outputs, profile=profile)

    @property
    def region(self) -> str:
        """The stack's region."""
        return str(self.session.region_name)

    def output(self, what: str) -> str:
        """The output for ``what`` (a key of OUTPUT_KEYS)."""
        for key in OUTPUT_KEYS[what]:
            if key in self.outputs:
                return self.outputs[key]
        wanted = " or ".join(OUTPUT_KEYS[what])
        raise OperatorError(
            f"stack {self.name} has no output {wanted}; "
            f"outputs: {', '.join(sorted(self.outputs)) or '(none)'}; is it an aurora-restore stack?"
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

    def flags(self) -> str:
        """``--stack NAME --region REGION [--profile P]``: how the commands it suggests reach it."""
        return f"--stack {self.name} --region {self.region}" + (
            f" --profile {self.profile}" if self.profile else ""
        )

    def unlock_command(self, target_cluster_id: str, target_region: str) -> str:
        """The exact command that releases the lock on a target."""
        stack_region = f" --stack-region {self.region}" if self.region != target_region else ""
        profile = f" --profile {self.profile}" if self.profile else ""
        return (
            f"aurora-restore unlock {target_cluster_id} --region {target_region} --stack {self.name}"
            f"{stack_region}{profile}"
        )


# -- start ---------------------------------------------------------------------------------------
def new_operation_id(now: datetime | None = None) -> str:
    """A fresh operation id: ``op-<UTC time>-<random>``, sortable, and a valid execution name."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    # 32 random bits: two starts within the same second collide about once in four billion.
    return f"op-{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def requested_operation_id(raw_input: dict[str, Any]) -> str | None:
    """The operation id the request names, or None (then every start is a new operation)."""
    fields = unwrap(raw_input)
    value = fields.get("operation_id")
    return str(value) if isinstance(value, str) else None


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
    """Validate locally, then start the execution named after the operation id.

    A request without ``operation_id`` is a new operation every time. A request with one is
    started at most once: Step Functions keeps execution names for 90 days, and a start with
    the name and input of a running execution returns that execution.
    """
    RestoreRequest.from_event(raw_input)  # ValidationError: nothing is started
    named = requested_operation_id(raw_input)
    operation_id = named or new_operation_id()
    document = with_operation_id(raw_input, operation_id)
    request = RestoreRequest.from_event(document)
    if named is not None:
        running = _existing_execution(stack, operation_id, document)
        if running is not None:
            return Started(operation_id, running, already_running=True, request=request)
    return _start_execution(stack, operation_id, operation_id, document, request)


def _existing_execution(stack: DeployedStack, operation_id: str, document: dict[str, Any]) -> str | None:
    """The running execution of this very request, None when there is none; refuses any other."""
    sfn = stack.client("stepfunctions")
    arn = stack.execution_arn(operation_id)
    try:
        existing = sfn.describe_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        return None
    same_input = json.loads(existing.get("input") or "null") == document
    if existing["status"] in GOING_STATUSES and same_input:
        return arn
    if existing["status"] in GOING_STATUSES:
        raise OperatorError(
            f"operation {operation_id} is already running with a different request ({arn}); follow it "
            f"with aurora-restore watch {operation_id} {stack.flags()}, or give this request another "
            "operation_id (or none: then every start is a new operation)"
        )
    raise OperatorError(
        f"operation {operation_id} already ran ({existing['status']}); to run its request again: "
        f"aurora-restore retry {operation_id} {stack.flags()}; to start a new refresh, give the request "
        "another operation_id or none"
    )


def _start_execution(
    stack: DeployedStack,
    operation_id: str,
    name: str,
    document: dict[str, Any],
    request: RestoreRequest | None,
) -> Started:
    sfn = stack.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=stack.state_machine_arn, name=name, input=json.dumps(document))[
        "executionArn"
    ]
    return Started(operation_id, arn, request=request)


# -- status / history ----------------------------------------------------------------------------
def _execution(stack: DeployedStack, arn: str) -> dict[str, Any] | None:
    """DescribeExecution's answer, None when there is no such execution."""
    sfn = stack.client("stepfunctions")
    try:
        return dict(sfn.describe_execution(executionArn=arn))
    except sfn.exceptions.ExecutionDoesNotExist:
        return None


def _not_found(stack: DeployedStack, operation_id: str) -> OperatorError:
    """No such operation: say where we looked and, for a typo, which ids are close."""
    hint = ""
    nearest = similar_operation_ids(stack, operation_id)
    if nearest:
        hint = f"; did you mean {' or '.join(nearest)}?"
    return OperatorError(
        f"no operation {operation_id!r} in stack {stack.name} ({stack.region}){hint} "
        "(the id is in aurora-restore start's output and in every notification)"
    )


def similar_operation_ids(stack: DeployedStack, operation_id: str) -> list[str]:
    """Recent operation ids on the stack's state machine that look like ``operation_id``."""
    from botocore.exceptions import BotoCoreError, ClientError

    sfn = stack.client("stepfunctions")
    try:
        page = sfn.list_executions(stateMachineArn=stack.state_machine_arn, maxResults=100)
    except (ClientError, BotoCoreError):
        # Only a hint for a mistyped id: without list permission the plain "not found" stands.
        return []
    names = {_RETRY_SUFFIX.sub("", e["name"]) for e in page.get("executions", [])}
    return difflib.get_close_matches(operation_id, sorted(names), n=2, cutoff=0.6)


def operation(stack: DeployedStack, operation_id: str) -> dict[str, Any]:
    """The state item; OperatorError when the stack never saw the operation."""
    item = stack.store.get_operation(operation_id)
    if item is None:
        raise _not_found(stack, operation_id)
    return dict(item)


def latest_execution_arn(stack: DeployedStack, operation_id: str, item: dict[str, Any] | None = None) -> str:
    """The operation's most recent execution: the one that last ran a step, else the one named after it."""
    if item is None:
        item = stack.store.get_operation(operation_id)
    recorded = (item or {}).get("execution_id")
    if isinstance(recorded, str) and recorded.startswith("arn:"):
        return recorded
    return stack.execution_arn(operation_id)


def execution_of(stack: DeployedStack, operation_id: str) -> str:
    """The ARN of the operation's latest execution; OperatorError when there is none."""
    arn = latest_execution_arn(stack, operation_id)
    if _execution(stack, arn) is None:
        raise _not_found(stack, operation_id)
    return arn


@dataclass
class LockState:
    """The lock on an operation's target: who holds it, since when."""

    target_cluster_id: str
    target_region: str
    holder: str | None = None
    since: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "target_cluster_id": self.target_cluster_id,
            "target_region": self.target_region,
            "holder": self.holder,
            "since": self.since,
        }


@dataclass
class OperationStatus:
    """An operation as the operator needs to see it: what its execution says, and its lock."""

    operation_id: str
    status: str
    item: dict[str, Any] | None
    execution: dict[str, Any] | None
    lock: LockState | None = None

    @property
    def stopped(self) -> bool:
        """True when the operation ended without success (failed, timed out, aborted)."""
        return self.status in STOPPED_STATUSES

    @property
    def error(self) -> dict[str, Any] | None:
        """The error that ended it: the step's (state item), else the execution's own."""
        item = self.item or {}
        for key in ("error", "last_error"):
            if isinstance(item.get(key), dict) and item[key].get("type"):
                return dict(item[key])
        execution = self.execution or {}
        if execution.get("error"):
            return {"type": execution["error"], "message": execution.get("cause") or ""}
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``status --json``)."""
        return {
            "operation_id": self.operation_id,
            "status": self.status,
            "operation": self.item,
            "execution": self.execution,
            "lock": self.lock.to_dict() if self.lock else None,
        }


def lock_state(stack: DeployedStack, target_cluster_id: str, target_region: str) -> LockState:
    """Who holds the target's lock now."""
    holder = lock_holder(stack.store, target_region, target_cluster_id)
    if holder is None:
        return LockState(target_cluster_id, target_region)
    return LockState(
        target_cluster_id,
        target_region,
        holder=str(holder.get("lock_owner") or "?"),
        since=str(holder.get("acquired_at") or "") or None,
    )


def effective_status(item: dict[str, Any] | None, execution: dict[str, Any] | None) -> str:
    """The operation's status: the execution's, which knows of a stop or a timeout that the state
    item (written by the steps) cannot; the item's where the execution is gone or succeeded."""
    item_status = str((item or {}).get("status") or "UNKNOWN")
    if execution is None:
        return item_status
    execution_status = str(execution.get("status"))
    if execution_status in STOPPED_STATUSES or execution_status in GOING_STATUSES:
        return execution_status
    # SUCCEEDED: the state machine ended well; trust a FAILED the steps recorded on the way.
    return item_status if item_status == "FAILED" else execution_status


def status(stack: DeployedStack, operation_id: str) -> OperationStatus:
    """The operation's status from its execution and state item, with its target's lock."""
    item = stack.store.get_operation(operation_id)
    arn = latest_execution_arn(stack, operation_id, item)
    described = _execution(stack, arn)
    if item is None and described is None:
        raise _not_found(stack, operation_id)
    execution: dict[str, Any] | None = None
    if described is not None:
        execution = {
            "arn": arn,
            "name": described.get("name"),
            "status": described["status"],
            "started": _iso(described.get("startDate")),
            "stopped": _iso(described.get("stopDate")),
            "error": described.get("error"),
            "cause": described.get("cause"),
        }
    found = OperationStatus(operation_id, effective_status(item, execution), item, execution)
    target, region = _target(item, described)
    if target and region:
        found.lock = lock_state(stack, target, region)
    return found


def _target(item: dict[str, Any] | None, described: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """The operation's target: from the state item, else from the execution's input."""
    if item and item.get("target_cluster_id") and item.get("target_region"):
        return str(item["target_cluster_id"]), str(item["target_region"])
    try:
        fields = unwrap(json.loads((described or {}).get("input") or "{}"))
    except Exception:  # an input that does not even parse names no target: show no lock
        return None, None
    cluster, region = fields.get("target_cluster_id"), fields.get("target_region")
    return (
        (str(cluster), str(region)) if isinstance(cluster, str) and isinstance(region, str) else (None, None)
    )


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(value) if value else None


def next_steps(stack: DeployedStack, found: OperationStatus) -> list[str]:
    """What to run next after the operation ended without success: retry or start, unlock, runbook."""
    if not found.stopped:
        return []
    error_type = (found.error or {}).get("type")
    steps: list[str] = []
    if error_type in NOT_RETRYABLE:
        steps.append(
            "fix the request and start it as a new operation (a retry repeats the same request): "
            f"aurora-restore start --input FILE {stack.flags()}"
        )
    else:
        # A stopped execution has no cause to fix: someone stopped it, and may want it to go on.
        when = "to carry on" if found.status == "ABORTED" else "once the cause is fixed"
        steps.append(
            f"{when}, retry (it adopts what the operation already made): "
            f"aurora-restore retry {found.operation_id} {stack.flags()}"
        )
    lock = found.lock
    if lock is not None and lock.holder == found.operation_id:
        steps.append(
            "or, to give up and free the target for other operations: "
            + stack.unlock_command(lock.target_cluster_id, lock.target_region)
        )
    section = (
        RUNBOOK_SECTIONS.get(str(error_type)) or RUNBOOK_SECTIONS.get(found.status) or RUNBOOK_DEFAULT_SECTION
    )
    steps.append(f"runbook: {RUNBOOK}#{section}")
    return steps


def history(stack: DeployedStack, operation_id: str) -> list[dict[str, Any]]:
    """The audit trail, oldest first; OperatorError when there is none."""
    trail = stack.store.audit_trail(operation_id)
    if not trail:
        raise _not_found(stack, operation_id)
    return list(trail)


# -- watch ---------------------------------------------------------------------------------------
def follow(
    sfn: Any,
    execution_arn: str,
    on_change: Callable[[str, StateRun], None],
    *,
    interval: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    on_tick: Callable[[ExecutionHistory], None] | None = None,
    max_rounds: int | None = None,
) -> ExecutionHistory:
    """Read the execution's history as it grows, calling ``on_change``, until it ends.

    ``on_tick`` sees the history after each read while the execution goes on (the live line);
    ``max_rounds`` bounds the reads (the history is then returned still RUNNING).
    """
    history_so_far = ExecutionHistory()
    rounds = 0
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        history_so_far.started_at = described.get("startDate")
        running = described["status"] in GOING_STATUSES
        for change, run in history_so_far.feed(
            read_new_events(sfn, execution_arn, history_so_far.last_event_id)
        ):
            on_change(change, run)
        if not running:
            # Read again: the history may have grown between the two calls.
            described = sfn.describe_execution(executionArn=execution_arn)
            history_so_far.status = described["status"]
            history_so_far.stopped_at = described.get("stopDate")
            history_so_far.error = history_so_far.error or described.get("error")
            history_so_far.cause = history_so_far.cause or described.get("cause")
            return history_so_far
        if on_tick is not None:
            on_tick(history_so_far)
        rounds += 1
        if max_rounds is not None and rounds >= max_rounds:
            return history_so_far
        sleep(interval)


# -- retry ---------------------------------------------------------------------------------------
def retry(stack: DeployedStack, operation_id: str) -> Started:
    """Start the operation's request again, same operation id, under a new execution name."""
    sfn = stack.client("stepfunctions")
    item = operation(stack, operation_id)
    previous_arn = latest_execution_arn(stack, operation_id, item)
    previous = _execution(stack, previous_arn)
    if previous is None:
        raise OperatorError(
            f"the execution of {operation_id} ({previous_arn}) no longer exists (Step Functions keeps "
            "closed executions for 90 days); start the request again as a new operation"
        )
    if previous["status"] in GOING_STATUSES:
        raise OperatorError(
            f"operation {operation_id} is still running ({previous_arn}); follow it with "
            f"aurora-restore watch {operation_id} {stack.flags()}, or stop it first"
        )
    document = with_operation_id(json.loads(previous.get("input") or "{}"), operation_id)
    request = RestoreRequest.from_event(document)
    for attempt in range(1, MAX_RETRIES + 1):
        name = f"{operation_id}-retry-{attempt}"
        try:
            return _start_execution(stack, operation_id, name, document, request)
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
    holder = lock_holder(store, region, target_cluster_id)
    if holder is None:
        return LockInfo(None)
    owner = str(holder.get("lock_owner", ""))
    item = store.get_operation(owner) if owner else None
    execution_status = None
    if item is not None:
        described = _execution(stack, latest_execution_arn(stack, owner, item))
        execution_status = str(described["status"]) if described else None
    return LockInfo(holder, item, execution_status)


def caller(stack: DeployedStack) -> str:
    """Who is acting (the caller's ARN), for the audit trail."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(stack.client("sts").get_caller_identity()["Arn"])
    except (ClientError, BotoCoreError):
        # The release must not fail for want of sts:GetCallerIdentity; the trail says so.
        return "unknown caller"


def unlock(stack: DeployedStack, target_cluster_id: str, region: str, *, reason: str) -> str | None:
    """Release the lock (audited on the holder's trail); returns the operation that held it."""
    released: str | None = force_release_lock(
        stack.store, region, target_cluster_id, released_by=caller(stack), reason=reason
    )
    return released
