"""Operation state and audit trail in DynamoDB.

- ``aurora-restore-state`` (key ``operation_id``): one item per operation with its status,
  current step, request, per-step results and timestamps, and under ``executions.<name>`` each
  execution's own outcome (final status, what it published, what it cleaned up): an
  ``aurora-restore retry`` is a new execution of the same operation and reports for itself.
  The refresh keeps its target locks and copy claims in the same table, under keys that contain
  ``#`` so no operation id can collide with them (:mod:`refresh.target_lock`,
  :mod:`refresh.copy_claims`); this module offers them conditional writes and knows no key.
- ``aurora-restore-audit`` (key ``operation_id``, sort key ``event_id``): one item per event,
  ordered in time by the sort key, expiring through the ``expires_at`` TTL attribute.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from dispatcher.logs import redact

if TYPE_CHECKING:
    from collections.abc import Callable

STATUS_RUNNING = "RUNNING"
STATUS_SUCCEEDED = "SUCCEEDED"
STATUS_FAILED = "FAILED"


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


def iso_time(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds and a Z: sorts as text in time order."""
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
                ":now": iso_time(self._clock()),
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
        values: dict[str, Any] = {":status": status, ":finished": iso_time(self._clock())}
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
        values = {**values, ":updated": iso_time(self._clock())}
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
            "event_id": f"{iso_time(now)}#{secrets.token_hex(3)}",
            "at": iso_time(now),
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

    # -- conditional items -----------------------------------------------------------------------
    # Items beside the operations (the refresh's locks and claims) are written only under a
    # condition: two operations racing for one item must see exactly one winner. A failed
    # condition answers False; every other error is raised.
    def now(self) -> datetime:
        """The store's clock (tests and the rehearsal fix it)."""
        return self._clock()

    def get_item(self, key: str) -> dict[str, Any] | None:
        """The item under ``key`` (read consistently), or None."""
        response = self._db.get_item(
            TableName=self.state_table, Key={"operation_id": {"S": key}}, ConsistentRead=True
        )
        item = response.get("Item")
        return self._decode(item) if item else None

    def put_if(self, item: dict[str, Any], condition: str, values: dict[str, Any] | None = None) -> bool:
        """Write ``item`` (keyed by its ``operation_id``) if ``condition`` holds; False if not."""
        kwargs: dict[str, Any] = {
            "TableName": self.state_table,
            "Item": self._encode(item),
            "ConditionExpression": condition,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = {k: self._value(v) for k, v in values.items()}
        return self._conditional(self._db.put_item, kwargs)

    def update_if(
        self,
        key: str,
        update: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> bool:
        """Apply ``update`` to the item under ``key`` if ``condition`` holds; False if not.

        ``names`` are the expression's attribute names (``#name``), for map keys that are not
        plain words (an execution's name as the key of its entry).
        """
        kwargs: dict[str, Any] = {
            "TableName": self.state_table,
            "Key": {"operation_id": {"S": key}},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": {k: self._value(v) for k, v in values.items()},
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        return self._conditional(self._db.update_item, kwargs)

    def delete_if(self, key: str, condition: str, values: dict[str, Any]) -> bool:
        """Delete the item under ``key`` if ``condition`` holds; False if not."""
        kwargs: dict[str, Any] = {
            "TableName": self.state_table,
            "Key": {"operation_id": {"S": key}},
            "ConditionExpression": condition,
            "ExpressionAttributeValues": {k: self._value(v) for k, v in values.items()},
        }
        return self._conditional(self._db.delete_item, kwargs)

    def _conditional(self, call: Callable[..., Any], kwargs: dict[str, Any]) -> bool:
        try:
            call(**kwargs)
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True


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
