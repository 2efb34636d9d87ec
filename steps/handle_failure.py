"""handle_failure: every Catch of the state machine lands here; report, clean up, close the operation.

Its input is the whole execution data with Step Functions' error under ``error``
(``ResultPath: $.error``): ``{"Error": <name>, "Cause": <text>}``, where the cause is usually
Lambda's JSON ``{"errorMessage", "errorType", "stackTrace"}`` but may be plain text or absent.
The failure may have happened in the very first state, so the input may hold no ``request``:
only the raw execution input (the seed's ``{"body": {...}}``, the same fields unwrapped, or
anything at all). Everything is read defensively; nothing missing makes this step raise.

In order: work out which step failed and why; clean up what this operation left behind (unless
the restore had already completed); mark the state item FAILED; release the target lock if this
operation holds it; publish one failure notification (a retry does not publish again). After this
state the execution goes to a Fail state, so it ends FAILED.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, ClassVar, cast

from dispatcher import aws
from dispatcher.errors import Retryable
from dispatcher.registry import Step, register, registry
from dispatcher.request import RestoreRequest, derive_operation_id, peek_operation_id, unwrap
from dispatcher.store import STATUS_FAILED, STATUS_SUCCEEDED
from steps.lib import notify

if TYPE_CHECKING:
    from dispatcher.context import StepContext
    from dispatcher.store import Store

#: Where Step Functions puts the caught error (``ResultPath`` of every Catch).
ERROR_KEY = "error"
#: The step whose failure means the refresh itself had completed: nothing may be cleaned up then.
SUCCESS_NOTIFICATION_STEP = "sns_notification"


def run_cleanup(ctx: StepContext, data: dict[str, Any]) -> list[str]:
    """Remove what this operation left behind; returns one line per thing removed or restored.

    The clean-up itself lives in ``steps.lib.cleanup`` (it knows the replace strategies); this
    function is the single place the failure handler calls it.
    """
    from steps.lib.cleanup import cleanup_after_failure

    cleaned: list[str] = cleanup_after_failure(ctx, data)
    return cleaned


@register("handle_failure", state_name="HandleFailure")
class HandleFailure(Step):
    """Report a failed run: clean up, mark it FAILED, release its own lock, notify once."""

    reads = ("$",)
    result_key = "failure"
    mutating = True
    # The dispatcher's own records of this step are best effort: a broken table must not stop
    # the report.
    records_best_effort = True

    def operation_id(self, event: dict[str, Any]) -> str | None:
        """``$.request.operation_id``, else the raw input's valid id, else one derived from the execution."""
        execution_id = event.get("execution_id") if isinstance(event.get("execution_id"), str) else None
        return resolve_operation_id(event.get("input"), execution_id)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Clean up, finish FAILED, release the lock if ours, publish once; return a summary."""
        data = ctx.event.get("input")
        data = data if isinstance(data, dict) else {}
        request = valid_request(data, ctx.execution_id)
        store = BestEffortStore(ctx.store, ctx.log)
        ctx = dataclasses.replace(ctx, request=request, store=cast("Store", store))
        operation_id = ctx.operation_id
        target = describe_target(data, request)
        item = ctx.store.get_operation(operation_id) or {}
        error = describe_error(data.get(ERROR_KEY), item)
        failed_step = self.failed_step(ctx, item)
        restore_completed = failed_step == SUCCESS_NOTIFICATION_STEP or item.get("status") == STATUS_SUCCEEDED

        previous = notify.previous_notification(item, STATUS_FAILED)
        if previous is not None:
            # A retry after the notification went out: the clean-up ran then; do not run it again.
            cleanup = {
                "cleaned_up": list(previous.get("cleaned_up") or []),
                "cleanup_error": previous.get("cleanup_error"),
                "cleanup_skipped": previous.get("cleanup_skipped"),
            }
        else:
            cleanup = self.clean_up(ctx, data, request=request, restore_completed=restore_completed)

        recorded_error = {**error, "step": failed_step}
        ctx.store.finish(operation_id, STATUS_FAILED, error=recorded_error)
        if request is not None:
            refused = len(store.errors)
            lock = notify.release_target_lock(ctx, request.target_region, request.target_cluster_id)
            if len(store.errors) > refused:
                cluster_id, region = request.target_cluster_id.lower(), request.target_region
                unlock = f"aurora-restore unlock {cluster_id} --region {region}"
                lock = {
                    "released": False,
                    "holder": None,
                    "lock": f"could not be released (the state table refused it); release it with: {unlock}",
                }
        else:
            lock = {"released": False, "holder": None, "lock": "not taken: the request was never validated"}

        if previous is not None:
            ctx.log.info(
                "failure notification already sent; not sending again", message_id=previous["message_id"]
            )
            notification: dict[str, Any] = {"sent": True, "already_sent": True, **previous}
        else:
            message = notify.clean(
                {
                    "status": STATUS_FAILED,
                    "operation_id": operation_id,
                    "execution_id": ctx.execution_id,
                    **target,
                    "failed_step": failed_step,
                    "failed_state": _state_name(failed_step),
                    "error": error,
                    "restore_completed": restore_completed,
                    **cleanup,
                    "lock": lock["lock"],
                    "lock_released": lock["released"],
                    "request_valid": request is not None,
                    "step_durations_ms": notify.step_durations(item),
                    "started_at": item.get("started_at"),
                    "failed_at": notify.iso(ctx.clock()),
                    "elapsed_seconds": notify.seconds_since(item.get("started_at"), ctx.clock()),
                    "store_errors": list(store.errors),
                }
            )
            notification = self.send(
                ctx, message, target_cluster_id=str(target["target_cluster_id"]), cleanup=cleanup
            )

        return {
            "status": STATUS_FAILED,
            "operation_id": operation_id,
            "failed_step": failed_step,
            "error_type": error["type"],
            "error_message": error["message"],
            "restore_completed": restore_completed,
            **cleanup,
            "lock_released": lock["released"],
            "lock": lock["lock"],
            "store_errors": list(store.errors),
            "notification": {
                "sent": notification["sent"],
                "already_sent": notification.get("already_sent", False),
                **{
                    key: notification.get(key)
                    for key in ("message_id", "subject", "topic_arn", "reason", "error")
                },
            },
        }

    # -- the parts, in the order they run ---------------------------------------------------------
    def failed_step(self, ctx: StepContext, item: dict[str, Any]) -> str | None:
        """The step that failed: the dispatcher's ``last_error.step``, else the last step started.

        The dispatcher records ``last_error`` when a step raises; a Lambda that timed out or ran
        out of memory records nothing, and by now ``current_step`` says ``handle_failure``, so
        the audit trail's last ``started`` event of another step tells instead.
        """
        last_error = item.get("last_error")
        if isinstance(last_error, dict):
            step = last_error.get("step")
            if isinstance(step, str) and step and step != self.name:
                return step
        for event in reversed(ctx.store.audit_trail(ctx.operation_id)):
            step = event.get("step")
            if event.get("event") == "started" and isinstance(step, str) and step and step != self.name:
                return step
        return None

    def clean_up(
        self,
        ctx: StepContext,
        data: dict[str, Any],
        *,
        request: RestoreRequest | None,
        restore_completed: bool,
    ) -> dict[str, Any]:
        """Run the clean-up when there can be something to clean; never let it hide the report."""
        if request is None:
            # Every step that creates anything needs the validated request: there is nothing.
            return {
                "cleaned_up": [],
                "cleanup_error": None,
                "cleanup_skipped": "the request was never validated, so nothing was created",
            }
        if restore_completed:
            return {
                "cleaned_up": [],
                "cleanup_error": None,
                "cleanup_skipped": "the refresh had completed (only the success notification failed); "
                "the restored cluster is in place and was left alone",
            }
        try:
            cleaned = [notify.scrub_text(str(line)[:500]) for line in run_cleanup(ctx, data)]
        except Exception as raw_error:
            # The report must still go out; the notification says what could not be cleaned up.
            error = aws.translate(raw_error)
            text = notify.scrub_text(f"{type(error).__name__}: {error}"[: notify.ERROR_MESSAGE_MAX])
            ctx.log.error("clean-up after failure failed", error=text)
            ctx.store.audit(ctx.operation_id, "cleanup_failed", step=self.name, error=text[:500])
            return {"cleaned_up": [], "cleanup_error": text, "cleanup_skipped": None}
        if cleaned:
            ctx.store.audit(ctx.operation_id, "cleaned_up", step=self.name, cleaned_up=cleaned)
        return {"cleaned_up": cleaned, "cleanup_error": None, "cleanup_skipped": None}

    def send(
        self, ctx: StepContext, message: dict[str, Any], *, target_cluster_id: str, cleanup: dict[str, Any]
    ) -> dict[str, Any]:
        """Publish and record; a permanent publishing error is reported, a transient one retried."""
        operation_id = ctx.operation_id
        if not ctx.settings.topic_arn:
            reason = "no topic configured (AURORA_RESTORE_TOPIC_ARN is empty); nothing was published"
            ctx.log.warning("failure notification not sent", reason=reason)
            ctx.store.audit(operation_id, "notification_skipped", step=self.name, reason=reason)
            return {"sent": False, "reason": reason}
        try:
            record = notify.publish(
                ctx,
                status=STATUS_FAILED,
                operation_id=operation_id,
                target_cluster_id=target_cluster_id,
                message=message,
            )
        except Exception as raw_error:
            error = aws.translate(raw_error)
            if isinstance(error, Retryable):
                # Throttling that outlived botocore's retries: let the state's Retry try again;
                # the state item is already FAILED and the lock released, so nothing hangs on it.
                raise error from raw_error
            text = notify.scrub_text(f"{type(error).__name__}: {error}"[: notify.ERROR_MESSAGE_MAX])
            ctx.log.error("failure notification could not be published", error=text)
            ctx.store.audit(operation_id, "notification_failed", step=self.name, error=text[:500])
            return {"sent": False, "error": text}
        ctx.store.record_notification(operation_id, STATUS_FAILED, {**record, **cleanup})
        ctx.store.audit(
            operation_id,
            "failed_notified",
            step=self.name,
            message_id=record["message_id"],
            subject=record["subject"],
            topic_arn=record["topic_arn"],
        )
        ctx.log.info("failure notification sent", message_id=record["message_id"], subject=record["subject"])
        return {"sent": True, **record}

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        notification = output.get("notification") or {}
        sent = "notified" if notification.get("sent") else "not notified"
        return (
            f"{output.get('failed_step') or 'unknown step'} failed with {output.get('error_type')}; "
            f"cleaned up {len(output.get('cleaned_up') or [])}; lock {output.get('lock')}; {sent}"
        )[:300]


class BestEffortStore:
    """The store as the failure handler uses it: a table that refuses a call does not stop the report.

    Throttling (``Retryable``) still raises, so the state's Retry tries again; any other error of
    a store call is logged, kept in :attr:`errors` for the notification, and the call answers
    "nothing" (no item, no trail, not released). With a broken table a retried handler cannot
    see that it already notified, and may notify twice; without this it would not notify at all.
    """

    #: What a refused call answers, by method; anything else answers None.
    NOTHING: ClassVar[dict[str, Any]] = {"audit_trail": [], "release_lock": False}

    def __init__(self, store: Store, log: Any) -> None:
        self._store = store
        self._log = log
        #: One line per refused call: which call, and the error (scrubbed).
        self.errors: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except Exception as raw_error:
                error = aws.translate(raw_error)
                if isinstance(error, Retryable):
                    raise error from raw_error
                text = notify.scrub_text(f"{name}: {type(error).__name__}: {error}")[:300]
                self.errors.append(text)
                self._log.error("the state table refused the failure handler", call=name, error=text)
                return self.NOTHING.get(name)

        return call


# -- reading a possibly broken input ---------------------------------------------------------------
def resolve_operation_id(data: Any, execution_id: str | None) -> str:
    """The operation id, never raising: the validated request's, the raw input's, or derived.

    Without a request the raw input is read exactly as ``validate_request`` read it (minus the
    ``error`` key Step Functions added), so both agree on the id and on the state item.
    """
    try:
        if isinstance(data, dict):
            request = data.get("request")
            if isinstance(request, dict):
                candidate = request.get("operation_id")
                if isinstance(candidate, str) and candidate:
                    return peek_operation_id({"operation_id": candidate}, execution_id)
            data = {k: v for k, v in data.items() if k != ERROR_KEY}
        return peek_operation_id(data, execution_id)
    except Exception:
        # Whatever the input holds, the failure must be reported under some id.
        return derive_operation_id(execution_id)


def valid_request(data: dict[str, Any], execution_id: str | None) -> RestoreRequest | None:
    """``$.request`` as a validated request, or None when it is missing or not valid."""
    raw = data.get("request")
    if not isinstance(raw, dict):
        return None
    try:
        return RestoreRequest.from_event(raw, execution_id=execution_id)
    except Exception:
        # Not only ValidationError: nothing in a broken input may stop the report.
        return None


def raw_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The request's fields as the execution received them, best effort (for the report only)."""
    raw = {k: v for k, v in data.items() if k != ERROR_KEY}
    try:
        return unwrap(raw)
    except Exception:
        body = raw.get("body")
        if isinstance(body, str):
            try:
                body = json.loads(body)
            except ValueError:
                return {}
        return dict(body) if isinstance(body, dict) else {}


def describe_target(data: dict[str, Any], request: RestoreRequest | None) -> dict[str, Any]:
    """Target, regions, snapshot and strategy: from the request, else from the raw input."""
    if request is not None:
        return {
            "target_cluster_id": request.target_cluster_id,
            "target_region": request.target_region,
            "source_region": request.source_region,
            "snapshot_id": request.snapshot_id,
            "strategy": request.strategy,
        }
    fields = raw_fields(data)

    def text(name: str) -> str | None:
        value = fields.get(name)
        return notify.one_line(value)[:256] if isinstance(value, str) and value else None

    return {
        "target_cluster_id": text("target_cluster_id") or notify.UNKNOWN,
        "target_region": text("target_region"),
        "source_region": text("source_region"),
        "snapshot_id": text("snapshot_id"),
        "strategy": text("strategy"),
    }


def describe_error(error: Any, item: dict[str, Any]) -> dict[str, Any]:
    """``type``, ``message`` and Step Functions' error ``name``; never the stack trace.

    The type and message come from the Lambda cause's ``errorType``/``errorMessage``; a plain
    text cause is the message; with no cause, the dispatcher's ``last_error`` on the state item.
    """
    error = error if isinstance(error, dict) else {}
    name = error.get("Error") if isinstance(error.get("Error"), str) else None
    cause = error.get("Cause")
    error_type: Any = None
    message: Any = None
    if isinstance(cause, str):
        try:
            cause = json.loads(cause)
        except ValueError:
            message = _without_traceback(cause)
    if isinstance(cause, dict):
        error_type = cause.get("errorType")
        message = cause.get("errorMessage")
        if message is None:
            rest = {k: v for k, v in cause.items() if k not in {"stackTrace", "errorType"}}
            message = json.dumps(rest, default=str) if rest else None
    elif cause is not None and message is None:
        message = str(cause)
    recorded = item.get("last_error")
    last_error: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    error_type = error_type or name or last_error.get("type") or "UnknownError"
    if not message:
        message = last_error.get("message") or f"Step Functions reported {name or 'an error'} with no cause"
    return {
        "type": notify.one_line(error_type)[:256],
        # Cut before scrubbing too: the scrubbing regexes then never see more than a few KB.
        "message": notify.scrub_text(str(message)[: notify.ERROR_MESSAGE_MAX])[: notify.ERROR_MESSAGE_MAX],
        "name": notify.one_line(name)[:256] if name else None,
    }


def _without_traceback(text: str) -> str:
    """A plain-text cause without a Python traceback: the last line says what went wrong."""
    if "Traceback (most recent call last)" not in text:
        return text
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _state_name(step: str | None) -> str | None:
    """The state machine's name for a step (what the Step Functions console shows)."""
    if step and step in registry:
        return registry.get(step).state_name
    return None
