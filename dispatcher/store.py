"""Operation state, audit trail and per-target locks in DynamoDB.

- ``aurora-restore-state`` (key ``operation_id``): one item per operation with its status,
  current step, request, per-step results and timestamps, and under ``executions.<name>`` each
  execution's own outcome (final status, what it published, what it cleaned up): an
  ``aurora-restore retry`` is a new execution of the same operation and reports for itself.
  Target locks live in the same table under keys ``lock#<region>#<cluster-id>``, which no
  operation id can collide with (``#`` is not allowed in operation ids). Copy claims live there too, under
  ``copyclaim#<region>#<hash of source snapshot ARN and key>`` (:meth:`Store.claim_copy`).
- ``aurora-restore-audit`` (key ``operation_id``, sort key ``event_id``): one item per event,
  ordered in time by the sort key, expiring through the ``expires_at`` TTL attribute.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from dispatcher.errors import TargetLocked
from dispatcher.logs import redact

if TYPE_CHECKING:
    from collections.abc import Callable

STATUS_RUNNING = "RUNNING"
STATUS_SUCCEEDED = "SUCCEEDED"
STATUS_FAILED = "FAILED"


def lock_key(region: str, cluster_id: str) -> str:
    """Key of the lock item for a target cluster (ids are case-insensitive in RDS)."""
    return f"lock#{region}#{cluster_id.lower()}"


def copy_claim_key(region: str, source_arn: str, kms_key: str) -> str:
    """Key of the claim item for copies of ``source_arn`` into ``region`` with ``kms_key``."""
    digest = hashlib.sha256(f"{source_arn}\n{kms_key}".encode()).hexdigest()[:16]
    return f"copyclaim#{region}#{digest}"


#: The record of an execution that has no id (a step invoked outside Step Functions).
NO_EXECUTION = "no-execution"


def execution_name(execution_id: str | None) -> str:
    """The execution's name: the last part of its ARN (what ``start-execution --name`` gave).

    Execution names are unique per state machine (and an operation's executions all run on one),
    so the name keys an execution's record on the operation's state item.
    """
    if not execution_id:
        return NO_EXECUTION
    return execution_id.rsplit(":", 1)[-1] or NO_EXECUTION


def execution_record(item: dict[str, Any] | None, execution_id: str | None) -> dict[str, Any]:
    """What the state item holds about one execution (``executions.<name>``); {} when nothing."""
    executions = (item or {}).get("executions")
    if not isinstance(executions, dict):
        return {}
    record = executions.get(execution_name(execution_id))
    return record if isinstance(record, dict) else {}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Store:
    """Reads and writes the state and audit tables."""

    def __init__(
        self,
        dynamodb: Any,
        state_table: str,
        audit_table: str,
        *,
        audit_ttl_days: int = 90,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._db = dynamodb
        self.state_table = state_table
        self.audit_table = audit_table
        self._ttl = timedelta(days=audit_ttl_days)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self._serializer = TypeSerializer()
        self._deserializer = TypeDeserializer()

    # -- encoding -----------------------------------------------------------------------------
    def _encode(self, item: dict[str, Any]) -> dict[str, Any]:
        # DynamoDB wants Decimal, not float; a JSON round trip also drops non-JSON values.
        plain = json.loads(json.dumps(item, default=str), parse_float=Decimal)
        return {k: self._serializer.serialize(v) for k, v in plain.items()}

    def _decode(self, item: dict[str, Any]) -> dict[str, Any]:
        return _plain({k: self._deserializer.deserialize(v) for k, v in item.items()})

    def _value(self, value: Any) -> dict[str, Any]:
        return self._encode({"v": value})["v"]

    # -- operation state ----------------------------------------------------------------------
    def record_request(self, operation_id: str, request: dict[str, Any]) -> None:
        """Store the validated request and its target on the state item."""
        self._update(
            operation_id,
            "SET #request = :request, target_region = :region, target_cluster_id = :cluster",
            {"#request": "request"},
            {
                ":request": redact(request),
                ":region": request.get("target_region", ""),
                ":cluster": request.get("target_cluster_id", ""),
            },
        )

    def step_started(self, operation_id: str, step: str, execution_id: str | None) -> None:
        """Mark ``step`` as the current step of a RUNNING operation, creating the item if needed.

        One write per step start: the maps the later updates write into are created here when
        the item is new, and a retried operation is RUNNING again as soon as a step starts.
        """
        self._update(
            operation_id,
            "SET current_step = :step, execution_id = :execution, #status = :running, "
            "started_at = if_not_exists(started_at, :now), results = if_not_exists(results, :empty), "
            "step_durations_ms = if_not_exists(step_durations_ms, :empty)",
            {"#status": "status"},
            {
                ":step": step,
                ":execution": execution_id or "",
                ":running": STATUS_RUNNING,
                ":now": _iso(self._clock()),
                ":empty": {},
            },
        )

    def step_succeeded(self, operation_id: str, step: str, output: dict[str, Any], duration_ms: int) -> None:
        """Keep the step's (redacted) output and duration on the state item."""
        self._update(
            operation_id,
            "SET results.#step = :output, step_durations_ms.#step = :ms REMOVE last_error",
            {"#step": step},
            {":output": redact(output), ":ms": duration_ms},
        )

    def step_failed(
        self,
        operation_id: str,
        step: str,
        error: dict[str, Any],
        duration_ms: int,
        execution_id: str | None = None,
    ) -> None:
        """Keep the step's error on the state item; the status stays RUNNING (a retry may follow).

        The error names the execution it happened in, so a retry never reports the error of the
        run before it.
        """
        recorded = {**error, "step": step}
        if execution_id:
            recorded["execution_id"] = execution_id
        self._update(
            operation_id,
            "SET last_error = :error, step_durations_ms.#step = :ms",
            {"#step": step},
            {":error": redact(recorded), ":ms": duration_ms},
        )

    def finish(
        self,
        operation_id: str,
        status: str,
        *,
        error: dict[str, Any] | None = None,
        execution_id: str | None = None,
    ) -> None:
        """Set the final status (SUCCEEDED or FAILED) of the operation and of this execution.

        The top-level ``status`` is the latest execution's: a retry that succeeds after a failed
        run leaves SUCCEEDED and no ``error``; each execution's own outcome stays under
        ``executions.<name>`` (see :meth:`record_execution`).
        """
        names: dict[str, str] = {"#status": "status", "#error": "error"}
        values: dict[str, Any] = {":status": status, ":finished": _iso(self._clock())}
        if error is not None:
            expression = "SET #status = :status, finished_at = :finished, #error = :error"
            values[":error"] = redact(error)
        else:
            expression = "SET #status = :status, finished_at = :finished REMOVE #error"
        self._update(operation_id, expression, names, values)
        if execution_id is not None:
            self.record_execution(
                operation_id,
                execution_id,
                status=status,
                finished_at=values[":finished"],
                error=redact(error) if error is not None else None,
            )

    def record_notification(
        self, operation_id: str, status: str, record: dict[str, Any], *, execution_id: str | None = None
    ) -> None:
        """Keep what this execution published for ``status`` under ``executions.<name>.notifications``.

        The notifying steps read it back before publishing, so a retried invocation of the same
        execution does not send a second message, while a new execution of the operation (an
        ``aurora-restore retry``) reports its own outcome.
        """
        item = self.get_operation(operation_id) or {}
        previous = execution_record(item, execution_id).get("notifications")
        merged = {**(previous if isinstance(previous, dict) else {}), status: record}
        self.record_execution(operation_id, execution_id, notifications=merged)

    def record_execution(self, operation_id: str, execution_id: str | None, **fields: Any) -> None:
        """Merge ``fields`` into this execution's record, ``executions.<execution name>``.

        One writer per execution (its steps run one at a time), so a read-merge-write is safe; the
        whole map is written because DynamoDB cannot create a map and a key inside it in one update.
        """
        item = self.get_operation(operation_id) or {}
        executions = item.get("executions")
        executions = dict(executions) if isinstance(executions, dict) else {}
        name = execution_name(execution_id)
        record = executions.get(name)
        record = dict(record) if isinstance(record, dict) else {}
        record.update({k: v for k, v in fields.items() if v is not None})
        if execution_id:
            record["execution_id"] = execution_id
        executions[name] = record
        self._update(operation_id, "SET executions = :executions", {}, {":executions": redact(executions)})

    def _update(
        self, operation_id: str, expression: str, names: dict[str, str], values: dict[str, Any]
    ) -> None:
        values = {**values, ":updated": _iso(self._clock())}
        if " REMOVE " in expression:
            head, tail = expression.split(" REMOVE ", 1)
            expression = f"{head}, updated_at = :updated REMOVE {tail}"
        else:
            expression += ", updated_at = :updated"
        kwargs: dict[str, Any] = {
            "TableName": self.state_table,
            "Key": {"operation_id": {"S": operation_id}},
            "UpdateExpression": expression,
            "ExpressionAttributeValues": {k: self._value(v) for k, v in values.items()},
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        self._db.update_item(**kwargs)

    def get_operation(self, operation_id: str) -> dict[str, Any] | None:
        """The state item, or None."""
        response = self._db.get_item(
            TableName=self.state_table, Key={"operation_id": {"S": operation_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return self._decode(item) if item else None

    # -- audit trail --------------------------------------------------------------------------
    def audit(self, operation_id: str, event: str, *, step: str = "", **fields: Any) -> dict[str, Any]:
        """Append one event to the audit trail and return the stored item."""
        now = self._clock()
        item = {
            "operation_id": operation_id,
            # ISO time first so the sort key orders events in time; the suffix keeps two
            # events in the same microsecond apart.
            "event_id": f"{_iso(now)}#{secrets.token_hex(3)}",
            "at": _iso(now),
            "event": event,
            "step": step,
            "expires_at": int((now + self._ttl).timestamp()),
            **redact(fields),
        }
        self._db.put_item(TableName=self.audit_table, Item=self._encode(item))
        return item

    def audit_trail(self, operation_id: str) -> list[dict[str, Any]]:
        """Every audit item of the operation, oldest first, across all pages."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.audit_table,
            "KeyConditionExpression": "operation_id = :id",
            "ExpressionAttributeValues": {":id": {"S": operation_id}},
            "ConsistentRead": True,
        }
        while True:
            page = self._db.query(**kwargs)
            items.extend(self._decode(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- target locks -------------------------------------------------------------------------
    def acquire_lock(self, region: str, cluster_id: str, operation_id: str) -> None:
        """Take the target's lock for ``operation_id``; taking it again as its owner is a no-op."""
        key = lock_key(region, cluster_id)
        item = {
            "operation_id": key,
            "lock_owner": operation_id,
            "target_region": region,
            "target_cluster_id": cluster_id,
            "acquired_at": _iso(self._clock()),
        }
        try:
            self._db.put_item(
                TableName=self.state_table,
                Item=self._encode(item),
                ConditionExpression="attribute_not_exists(operation_id) OR lock_owner = :me",
                ExpressionAttributeValues={":me": {"S": operation_id}},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            holder = self.lock_holder(region, cluster_id) or {}
            raise TargetLocked(
                f"target {cluster_id} in {region} is locked by operation "
                f"{holder.get('lock_owner', '?')} since {holder.get('acquired_at', '?')}; wait for it to "
                "finish, or if it is dead release it with: "
                f"aurora-restore unlock {cluster_id.lower()} --region {region}",
                holder=holder.get("lock_owner"),
                target_cluster_id=cluster_id,
                target_region=region,
            ) from None

    def lock_holder(self, region: str, cluster_id: str) -> dict[str, Any] | None:
        """The lock item of the target, or None when it is free."""
        response = self._db.get_item(
            TableName=self.state_table,
            Key={"operation_id": {"S": lock_key(region, cluster_id)}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return self._decode(item) if item else None

    def release_lock(self, region: str, cluster_id: str, operation_id: str) -> bool:
        """Release the lock if ``operation_id`` owns it; True when released, False otherwise."""
        try:
            self._db.delete_item(
                TableName=self.state_table,
                Key={"operation_id": {"S": lock_key(region, cluster_id)}},
                ConditionExpression="lock_owner = :me",
                ExpressionAttributeValues={":me": {"S": operation_id}},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def force_release_lock(
        self, region: str, cluster_id: str, *, released_by: str, reason: str
    ) -> str | None:
        """Operator action: release whoever holds the lock, audited on the holder's trail."""
        holder = self.lock_holder(region, cluster_id)
        if holder is None:
            return None
        owner = str(holder["lock_owner"])
        if self.release_lock(region, cluster_id, owner):
            self.audit(
                owner,
                "lock_force_released",
                step="unlock",
                target_region=region,
                target_cluster_id=cluster_id,
                released_by=released_by,
                reason=reason,
            )
            return owner
        return None

    # -- copy claims ----------------------------------------------------------------------------
    def claim_copy(
        self,
        *,
        region: str,
        source_arn: str,
        kms_key: str,
        operation_id: str,
        copy_id: str,
        now: datetime,
    ) -> dict[str, Any]:
        """Claim the right to copy ``source_arn`` into ``region`` with ``kms_key``; return the claim.

        Several operations deciding at the same moment that no copy exists yet must not all
        copy: the first conditional put wins, and every other operation gets the winner's claim
        (``claim_owner``, ``copy_id``, ``claimed_at``) and reuses that copy. Claiming again as
        its owner (a retry) returns the owner's claim unchanged.
        """
        key = copy_claim_key(region, source_arn, kms_key)
        item = {
            "operation_id": key,
            "claim_owner": operation_id,
            "copy_id": copy_id,
            "claimed_at": _iso(now),
            "target_region": region,
            "source_arn": source_arn,
            "kms_key": kms_key,
        }
        try:
            self._db.put_item(
                TableName=self.state_table,
                Item=self._encode(item),
                ConditionExpression="attribute_not_exists(operation_id)",
            )
            return item
        except self._db.exceptions.ConditionalCheckFailedException:
            pass
        held = self._get(key)
        if held is None:
            # Released between our put and our read: claim again.
            return self.claim_copy(
                region=region,
                source_arn=source_arn,
                kms_key=kms_key,
                operation_id=operation_id,
                copy_id=copy_id,
                now=now,
            )
        return held

    def take_over_copy_claim(
        self, claim: dict[str, Any], *, operation_id: str, copy_id: str, now: datetime
    ) -> dict[str, Any]:
        """Take a stale claim from its owner; return the claim as it now stands.

        The update is conditional on the owner still being the one judged stale, so of several
        operations taking over at once one wins and the others get its claim.
        """
        key = str(claim["operation_id"])
        try:
            self._db.update_item(
                TableName=self.state_table,
                Key={"operation_id": {"S": key}},
                UpdateExpression="SET claim_owner = :me, copy_id = :copy, claimed_at = :now",
                ConditionExpression="claim_owner = :old",
                ExpressionAttributeValues={
                    ":me": {"S": operation_id},
                    ":copy": {"S": copy_id},
                    ":now": {"S": _iso(now)},
                    ":old": {"S": str(claim["claim_owner"])},
                },
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return self._get(key) or claim
        return {**claim, "claim_owner": operation_id, "copy_id": copy_id, "claimed_at": _iso(now)}

    def _get(self, key: str) -> dict[str, Any] | None:
        response = self._db.get_item(
            TableName=self.state_table, Key={"operation_id": {"S": key}}, ConsistentRead=True
        )
        item = response.get("Item")
        return self._decode(item) if item else None


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals back to int/float."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


#: Key schema of both tables; the template and the local rehearsal build the same tables from it.
STATE_TABLE_KEYS: dict[str, str] = {"operation_id": "HASH"}
AUDIT_TABLE_KEYS: dict[str, str] = {"operation_id": "HASH", "event_id": "RANGE"}
AUDIT_TTL_ATTRIBUTE = "expires_at"


def create_tables(dynamodb: Any, state_table: str, audit_table: str) -> None:
    """Create both tables on-demand (moto worlds and the rehearsal; production uses the template)."""
    for name, keys in ((state_table, STATE_TABLE_KEYS), (audit_table, AUDIT_TABLE_KEYS)):
        dynamodb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys.items()],
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
        )
    dynamodb.update_time_to_live(
        TableName=audit_table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": AUDIT_TTL_ATTRIBUTE},
    )
