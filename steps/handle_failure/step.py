"""handle_failure: every Catch of the state machine lands here; report, clean up, close the operation.

Its input is the whole execution data with Step Functions' error under ``error``
(``ResultPath: $.error``): ``{"Error": <name>, "Cause": <text>}``, where the cause is usually
Lambda's JSON ``{"errorMessage", "errorType", "stackTrace"}`` but may be plain text or absent.
The failure may have happened in the very first state, so the input may hold no ``request``:
only the raw execution input (wrapped as ``{"body": {...}}``, the same fields unwrapped, or
anything at all). Everything is read defensively; nothing missing makes this step raise.

In order: work out which step failed and why; clean up what this execution left behind (unless
the restore had already completed); mark the state item FAILED; release the target lock if this
operation holds it; publish one failure notification (a retried invocation does not publish
again). After this state the execution goes to a Fail state, so it ends FAILED.

Everything is kept per execution (operation id plus execution name): ``aurora-restore retry``
runs the operation again as a new execution, and that execution cleans up and reports for itself.
One execution never sends both outcomes: when it already published SUCCEEDED (only closing the
operation failed afterwards), this handler keeps it SUCCEEDED and publishes nothing.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, ClassVar, cast

from dispatcher import aws
from dispatcher.errors import Retryable
from dispatcher.registry import Step, register, registry
from dispatcher.store import STATUS_FAILED, STATUS_SUCCEEDED, execution_record
from refresh import target_lock
from refresh.request import RestoreRequest, derive_operation_id, peek_operation_id, unwrap
from steps.lib import notify

if TYPE_CHECKING:
    from dispatcher.context import StepContext
    from dispatcher.store import Store

#: Where Step Functions puts the caught error (``ResultPath`` of every Catch).
ERROR_KEY = "error"


def run_cleanup(ctx: StepContext, data: dict[str, Any]) -> list[str]:
    """Remove what this operation left behind; returns one line per thing removed or restored.

    The clean-up itself lives beside this step, in ``cleanup``, which knows the replace strategies; this
    function is the single place the failure handler calls it.
    """
    from steps.handle_failure.cleanup import cleanup_after_failure

    cleaned: list[str] = cleanup_after_failure(ctx, data)
    return cleaned


@register("handle_failure", state_name="HandleFailure")
class HandleFailure(Step):
    """Report a failed run: clean up, mark it FAILED, release its own lock, notify once."""

    aws_actions = (
        "rds:DescribeDBClusters",
        "rds:DescribeDBInstances",
        "rds:DescribeDBClusterSnapshots",
        "rds:ListTagsForResource",
        "rds:DeleteDBInstance",
        "rds:DeleteDBCluster",
        "rds:ModifyDBCluster",
        "rds:AddTagsToResource",
        "rds:RemoveTagsFromResource",
        "sns:Publish",
        # A copy shared out of another account is retired there through its role.
        "sts:AssumeRole",
        # Publishing to the topic the stack key encrypts (SNS asks KMS as the caller).
        "kms:GenerateDataKey*",
        "kms:Decrypt",
    )
    pipeline_role = "failure"
    reads = ("$",)
    result_key = "failure"
    output_doc = "what was cleaned up, notification sent, lock released"
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
        execution = execution_record(item, ctx.execution_id)
        if notify.previous_notification(item, STATUS_SUCCEEDED, ctx.execution_id) is not None:
            return self.already_succeeded(ctx, data, request, store)
        error = describe_error(data.get(ERROR_KEY), item, ctx.execution_id)
        trail = ctx.store.audit_trail(operation_id)
        failed_step = self.failed_step(ctx, item, trail)
        restore_completed = (
            (failed_step is not None and failed_step == success_notification_step())
            or execution.get("status") == STATUS_SUCCEEDED
            or _reached_success(data)
        )

        previous = notify.previous_notification(item, STATUS_FAILED, ctx.execution_id)
        if previous is not None:
            # This execution's handler ran before and notified: the clean-up ran then; not again.
            cleanup = {
                "cleaned_up": list(previous.get("cleaned_up") or []),
                "cleanup_error": previous.get("cleanup_error"),
                "cleanup_skipped": previous.get("cleanup_skipped"),
            }
        else:
            cleanup = self.clean_up(ctx, data, request=request, restore_completed=restore_completed)

        replaced = describe_replaced_target(ctx, request, trail) if request is not None else None
        recorded_error = {**error, "step": failed_step}
        ctx.store.finish(operation_id, STATUS_FAILED, error=recorded_error, execution_id=ctx.execution_id)
        lock = release_lock(ctx, request, store)

        started_at = execution_started_at(trail, ctx.execution_id) or item.get("started_at")
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
                    **checks_report(trail, ctx.execution_id, request, error),
                    **cleanup,
                    **({"replaced_target": replaced} if replaced else {}),
                    "lock": lock["lock"],
                    "lock_released": lock["released"],
                    "request_valid": request is not None,
                    "step_durations_ms": notify.step_durations(item),
                    "started_at": started_at,
                    "failed_at": notify.iso(ctx.clock()),
                    "elapsed_seconds": notify.seconds_since(started_at, ctx.clock()),
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
    def failed_step(self, ctx: StepContext, item: dict[str, Any], trail: list[dict[str, Any]]) -> str | None:
        """The step that failed: the dispatcher's ``last_error.step``, else the last step started.

        The dispatcher records ``last_error`` when a step raises; a Lambda that timed out or ran
        out of memory records nothing, and by now ``current_step`` says ``handle_failure``, so
        the audit trail's last ``started`` event of another step tells instead. Both are read
        for this execution only: a retry never reports the step where the run before it failed.
        """
        last_error = own_last_error(item, ctx.execution_id)
        step = last_error.get("step")
        if isinstance(step, str) and step and step != self.name:
            return step
        for event in reversed(trail):
            step = event.get("step")
            if (
                event.get("event") == "started"
                and _same_execution(event.get("execution_id"), ctx.execution_id)
                and isinstance(step, str)
                and step
                and step != self.name
            ):
                return step
        return None

    def already_succeeded(
        self,
        ctx: StepContext,
        data: dict[str, Any],
        request: RestoreRequest | None,
        store: BestEffortStore,
    ) -> dict[str, Any]:
        """This execution published SUCCEEDED, then closing the operation failed: keep it SUCCEEDED.

        The refresh completed and subscribers were told so; a FAILED message now would contradict
        it. The handler finishes what the success step could not (final status, lock) and says in
        its output, the audit trail and the log what went wrong after the success.
        """
        operation_id = ctx.operation_id
        error = describe_error(data.get(ERROR_KEY), {}, ctx.execution_id)
        ctx.store.finish(operation_id, STATUS_SUCCEEDED, execution_id=ctx.execution_id)
        lock = release_lock(ctx, request, store)
        ctx.store.audit(
            operation_id,
            "closed_after_success",
            step=self.name,
            error_type=error["type"],
            lock=lock["lock"],
        )
        ctx.log.warning(
            "closing the operation failed after the success notification; kept SUCCEEDED, no FAILED sent",
            error_type=error["type"],
            lock=lock["lock"],
        )
        return {
            "status": STATUS_SUCCEEDED,
            "operation_id": operation_id,
            "failed_step": success_notification_step(),
            "error_type": error["type"],
            "error_message": error["message"],
            "restore_completed": True,
            "cleaned_up": [],
            "cleanup_error": None,
            "cleanup_skipped": "the refresh had completed and its success was published",
            "lock_released": lock["released"],
            "lock": lock["lock"],
            "store_errors": list(store.errors),
            "notification": {
                "sent": False,
                "already_sent": True,
                "message_id": None,
                "subject": None,
                "topic_arn": None,
                "reason": "this execution already published SUCCEEDED; a FAILED message would contradict it",
                "error": None,
            },
        }

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
        skipped = notify.skipped_without_topic(ctx, self.name, "failure")
        if skipped is not None:
            return skipped
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
        return notify.record_sent(
            ctx,
            self.name,
            status=STATUS_FAILED,
            record=record,
            stored={**record, **cleanup},
            audit_event="failed_notified",
            what="failure",
        )

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

    Any error of a store call, throttling included (botocore has retried it already), is logged,
    kept in :attr:`errors` for the notification, and the call answers "nothing" (no item, no
    trail, not released). Raising throttling to the state's Retry would only meet the same table
    again and, when the throttling does not end, fail the execution with nobody told. With a
    broken table a retried handler cannot see that it already notified, and may notify twice;
    without this it would not notify at all.
    """

    #: What a refused call answers, by method; anything else answers None.
    NOTHING: ClassVar[dict[str, Any]] = {"audit_trail": [], "delete_if": False}

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


def describe_error(error: Any, item: dict[str, Any], execution_id: str | None = None) -> dict[str, Any]:
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
    last_error = own_last_error(item, execution_id)
    error_type = error_type or name or last_error.get("type") or "UnknownError"
    if not message:
        message = last_error.get("message") or f"Step Functions reported {name or 'an error'} with no cause"
    return {
        "type": notify.one_line(error_type)[:256],
        # Cut before scrubbing too: the scrubbing regexes then never see more than a few KB.
        "message": notify.scrub_text(str(message)[: notify.ERROR_MESSAGE_MAX])[: notify.ERROR_MESSAGE_MAX],
        "name": notify.one_line(name)[:256] if name else None,
    }


def own_last_error(item: dict[str, Any], execution_id: str | None) -> dict[str, Any]:
    """The dispatcher's ``last_error`` when this execution recorded it (or it names none), else {}."""
    recorded = item.get("last_error")
    if not isinstance(recorded, dict):
        return {}
    return recorded if _same_execution(recorded.get("execution_id"), execution_id) else {}


def _same_execution(recorded: Any, execution_id: str | None) -> bool:
    """True unless both name an execution and they differ (old records name none)."""
    return not recorded or not execution_id or recorded == execution_id


def execution_started_at(trail: list[dict[str, Any]], execution_id: str | None) -> str | None:
    """When this execution's first step started, from the audit trail; None when unknown."""
    if not execution_id:
        return None
    for event in trail:
        if event.get("event") == "started" and event.get("execution_id") == execution_id:
            at = event.get("at")
            return at if isinstance(at, str) else None
    return None


def release_lock(ctx: StepContext, request: RestoreRequest | None, store: BestEffortStore) -> dict[str, Any]:
    """Release the target's lock if this operation holds it; say how to free it when the table refuses."""
    if request is None:
        return {"released": False, "holder": None, "lock": "not taken: the request was never validated"}
    refused = len(store.errors)
    lock = target_lock.release_for_report(
        ctx.store, request.target_region, request.target_cluster_id, ctx.operation_id
    )
    if len(store.errors) > refused:
        unlock = target_lock.unlock_command(request.target_region, request.target_cluster_id)
        lock = {
            "released": False,
            "holder": None,
            "lock": f"could not be released (the state table refused it); release it with: {unlock}",
        }
    return lock


def describe_replaced_target(
    ctx: StepContext, request: RestoreRequest, trail: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Under delete-first, what this operation destroyed, kept and left; None when it deleted nothing."""
    if request.strategy != "delete-first":
        return None
    from steps.handle_failure.cleanup import describe_delete_first

    try:
        return describe_delete_first(ctx, request, trail)
    except Exception as raw_error:
        # The report must go out even when RDS cannot be asked; say what is unknown.
        error = aws.translate(raw_error)
        text = notify.scrub_text(f"{type(error).__name__}: {error}"[:500])
        return {"summary": f"what remains of {request.target_cluster_id} could not be read: {text}"}


def checks_report(
    trail: list[dict[str, Any]],
    execution_id: str | None,
    request: RestoreRequest | None,
    error: dict[str, Any],
) -> dict[str, Any]:
    """The validation gate's results in this execution (one line each) and, when it failed, what that means.

    Under swap the target was never touched; under delete-first it was deleted before the restore,
    so the notification says plainly that the old environment is already gone.
    """
    from refresh.checks import check_line

    runs = [
        event
        for event in trail
        if event.get("event") == "checks_run" and _same_execution(event.get("execution_id"), execution_id)
    ]
    if not runs:
        return {}
    report: dict[str, Any] = {
        "checks": [check_line(result) for result in runs[-1].get("results") or [] if isinstance(result, dict)]
    }
    if error.get("type") == "ChecksFailed" and request is not None:
        target = request.target_cluster_id
        if request.strategy == "delete-first":
            report["checks_outcome"] = (
                f"the old environment is already gone: delete-first deleted {target} before the restore, and "
                f"the restored copy under its name failed its checks; see the runbook, 'When checks fail'"
            )
        else:
            report["checks_outcome"] = (
                f"the restored copy failed its checks and did not replace {target}: {target} was not touched "
                "and still serves"
            )
    return report


def success_notification_step() -> str | None:
    """The step whose failure means the refresh itself had completed: nothing may be cleaned up then.

    Found by its role (``final_notification``), so the handler names no other step.
    """
    return next((cls.name for cls in registry if cls.final_notification), None)


def _reached_success(data: dict[str, Any]) -> bool:
    """True when the data holds the output of the step just before the success notification.

    Read from the execution data, not the state table: with a table that refuses every call the
    handler must still know that the refresh had completed and leave the restored cluster alone.
    """
    last = last_step_before_success()
    if last is None or last not in registry:
        return False
    return isinstance(data.get(registry.get(last).result_key), dict)


def last_step_before_success() -> str | None:
    """The step the success notification runs after (its ``run_after``), found by role: its
    output in the data means the refresh itself had completed."""
    return next((cls.run_after for cls in registry if cls.final_notification), None)


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
