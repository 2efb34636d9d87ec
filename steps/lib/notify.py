"""Publishing the pipeline's outcome to the stack's SNS topic, shared by both notifying steps.

What goes out is described field by field in ``docs/notifications.md``. Two rules hold for every
message: it carries no secret (values under secret-named keys are redacted, and secret-looking
``key=value`` pairs in free text such as error messages are masked), and a retried invocation
does not publish a second time (what an execution published is kept on the state item under
``executions.<execution name>.notifications.<status>`` and read back before publishing). The
record is per execution, not per operation: an ``aurora-restore retry`` runs the same operation
as a new execution, and that execution reports its own outcome, once.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dispatcher.errors import ValidationError
from dispatcher.logs import redact, scrub_text
from dispatcher.store import execution_name, execution_record

if TYPE_CHECKING:
    from dispatcher.context import StepContext

SUBJECT_PREFIX = "[aurora-restore]"
#: SNS wants subjects "less than 100 characters", ASCII, without line breaks or control characters.
SUBJECT_MAX = 99
#: Error messages longer than this are cut: a notification is read by a person, not parsed.
ERROR_MESSAGE_MAX = 2000
#: What the subject and the attributes show when the input did not say (an attribute cannot be empty).
UNKNOWN = "unknown"

_TOPIC_ARN = re.compile(
    r"^arn:aws(?:-[a-z]+)*:sns:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d):\d{12}:[A-Za-z0-9_-]{1,256}(?:\.fifo)?$"
)
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]+")


def clean(value: Any) -> Any:
    """Anything taken from step outputs or the state item, made safe to publish."""
    redacted = redact(value)
    if isinstance(redacted, dict):
        return {k: clean(v) for k, v in redacted.items()}
    if isinstance(redacted, list):
        return [clean(v) for v in redacted]
    if isinstance(redacted, str):
        return scrub_text(redacted)
    return redacted


def iso(moment: datetime) -> str:
    """An ISO-8601 UTC time with a ``Z``, as the state item writes its times."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seconds_since(started_at: Any, now: datetime) -> int | None:
    """Whole seconds from an ISO time on the state item to ``now``; None when it is not a time."""
    if not isinstance(started_at, str):
        return None
    try:
        started = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if started.tzinfo is None:
        started = started.replace(tzinfo=timezone.utc)
    return max(int((now - started).total_seconds()), 0)


def one_line(text: Any) -> str:
    """Printable ASCII on one line (what SNS accepts in a subject); '?' for anything else."""
    return _NOT_PRINTABLE_ASCII.sub("?", str(text)).strip()


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (at least 4), ending in ``...`` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit, 4) - 3] + "..."


def subject(operation_id: str, status: str, target_cluster_id: str) -> str:
    """``[aurora-restore] <operation> <STATUS>: <target>``, within SNS's subject limits.

    The prefix and the status always survive; when the two identifiers do not both fit, the
    longer one is shortened first, each keeping its beginning and showing ``...``.
    """
    operation = one_line(operation_id) or UNKNOWN
    target = one_line(target_cluster_id) or UNKNOWN
    fixed = f"{SUBJECT_PREFIX}  {status}: "
    budget = SUBJECT_MAX - len(fixed)
    if len(operation) + len(target) > budget:
        half = budget // 2
        operation = _shorten(operation, max(half, budget - len(target)))
        target = _shorten(target, budget - len(operation))
    return f"{SUBJECT_PREFIX} {operation} {status}: {target}"


def message_attributes(status: str, operation_id: str, target_cluster_id: str) -> dict[str, Any]:
    """The String attributes subscription filter policies match on (never empty)."""
    values = {"status": status, "operation_id": operation_id, "target_cluster_id": target_cluster_id}
    return {
        name: {"DataType": "String", "StringValue": _shorten(one_line(value), 256) or UNKNOWN}
        for name, value in values.items()
    }


def topic_region(topic_arn: str) -> str:
    """The region of an SNS topic ARN (the client must be made there)."""
    match = _TOPIC_ARN.match(topic_arn)
    if not match:
        raise ValidationError(
            "AURORA_RESTORE_TOPIC_ARN",
            topic_arn,
            "must be an SNS topic ARN such as arn:aws:sns:eu-west-1:123456789012:aurora-restore",
        )
    return match["region"]


def previous_notification(
    state_item: dict[str, Any] | None, status: str, execution_id: str | None
) -> dict[str, Any] | None:
    """What an earlier invocation of this execution already published for ``status``, or None."""
    notifications = execution_record(state_item, execution_id).get("notifications")
    if not isinstance(notifications, dict):
        return None
    record = notifications.get(status)
    return record if isinstance(record, dict) and record.get("message_id") else None


def publish(
    ctx: StepContext,
    *,
    status: str,
    operation_id: str,
    target_cluster_id: str,
    message: dict[str, Any],
) -> dict[str, Any]:
    """Publish ``message`` (already cleaned) as JSON to the stack's topic; return the record kept.

    A FIFO topic gets a deduplication id per execution and status, so even a retried invocation
    that lost track of the first publish (a crash between publishing and recording) sends nothing
    twice within SNS's five-minute deduplication window, while a retry of the operation (a new
    execution) is not mistaken for a duplicate.
    """
    topic_arn = ctx.settings.topic_arn
    region = topic_region(topic_arn)
    title = subject(operation_id, status, target_cluster_id)
    kwargs: dict[str, Any] = {
        "TopicArn": topic_arn,
        "Subject": title,
        "Message": json.dumps(message, indent=2, default=str),
        "MessageAttributes": message_attributes(status, operation_id, target_cluster_id),
    }
    if topic_arn.endswith(".fifo"):
        kwargs["MessageGroupId"] = one_line(operation_id) or UNKNOWN
        execution = execution_name(ctx.execution_id)
        kwargs["MessageDeduplicationId"] = hashlib.sha256(
            f"{operation_id}#{execution}#{status}".encode()
        ).hexdigest()
    response = ctx.aws("sns", region).publish(**kwargs)
    return {
        "message_id": response["MessageId"],
        "subject": title,
        "topic_arn": topic_arn,
        "published_at": iso(ctx.clock()),
    }


def step_durations(state_item: dict[str, Any] | None) -> dict[str, int]:
    """Milliseconds per step, from the state item the dispatcher keeps."""
    durations = (state_item or {}).get("step_durations_ms")
    if not isinstance(durations, dict):
        return {}
    return {str(k): int(v) for k, v in durations.items() if isinstance(v, (int, float))}


def skipped_without_topic(ctx: StepContext, step_name: str, what: str) -> dict[str, Any] | None:
    """The step's output when the stack has no topic (said in the log and the audit), else None."""
    if ctx.settings.topic_arn:
        return None
    reason = "no topic configured (AURORA_RESTORE_TOPIC_ARN is empty); nothing was published"
    ctx.log.warning(f"{what} notification not sent", reason=reason)
    ctx.store.audit(ctx.operation_id, "notification_skipped", step=step_name, reason=reason)
    return {"sent": False, "reason": reason}


def record_sent(
    ctx: StepContext,
    step_name: str,
    *,
    status: str,
    record: dict[str, Any],
    stored: dict[str, Any],
    audit_event: str,
    what: str,
) -> dict[str, Any]:
    """Record a published message for this execution, audit it and log it; the step's output.

    Recorded right after publishing: a retry of the step reads it and does not publish again.
    """
    ctx.store.record_notification(ctx.operation_id, status, stored, execution_id=ctx.execution_id)
    ctx.store.audit(
        ctx.operation_id,
        audit_event,
        step=step_name,
        message_id=record["message_id"],
        subject=record["subject"],
        topic_arn=record["topic_arn"],
    )
    ctx.log.info(f"{what} notification sent", message_id=record["message_id"], subject=record["subject"])
    return {"sent": True, **record}
