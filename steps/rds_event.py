"""An RDS event arrived: wake the executions waiting for that resource, if a check agrees.

EventBridge sends ``aws.rds`` events (``RDS DB Cluster Event``, ``RDS DB Cluster Snapshot
Event``, ``RDS DB Instance Event``) to the dispatcher through the stack's rule, whose input
transformer wraps the event as ``{"step": "rds_event", "event": <the event>}``. Delivery is best
effort and anyone allowed to put events could forge one, so an event is only a hint: for each
execution waiting on the event's ``SourceIdentifier`` in its region (:mod:`dispatcher.waits`), the
loop's own check runs once with the input a poll would have had (one Describe), and only the
check's result completes the wait (``SendTaskSuccess`` with the check's output) or fails it
(``SendTaskFailure`` with the check's error, e.g. ``CopyFailed``). An event for a resource nobody
waits on costs two reads of the state table (and a write at most every few minutes, recording
that events arrive) and no AWS call; a duplicate finds the entry gone.
"""

from __future__ import annotations

import json
import uuid
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, ClassVar

from dispatcher import aws, waits
from dispatcher.errors import AuroraRestoreError, Retryable
from dispatcher.registry import Step, register, registry

if TYPE_CHECKING:
    from dispatcher.context import StepContext

#: The detail types the stack's rule sends here (what RDS sends to EventBridge for our resources).
DETAIL_TYPES = ("RDS DB Cluster Event", "RDS DB Cluster Snapshot Event", "RDS DB Instance Event")
#: Errors a check may raise that say nothing about the resource: the wait goes on (the fallback
#: poll checks again) rather than failing the refresh on a throttled Describe.
TRANSIENT: tuple[type[BaseException], ...] = (Retryable,)


#: What the event step calls itself: it answers the waits it ends.
ANSWER_ACTIONS = ("states:SendTaskSuccess", "states:SendTaskFailure")


class _AnswersAndChecks:
    """The event step's ``aws_actions``: its answers, and what the loops' checks it runs call.

    Read when asked, from the registered loops, so a plug-in loop's check is covered without a
    second list of its actions.
    """

    def __get__(self, instance: object, owner: type) -> tuple[str, ...]:
        actions = list(ANSWER_ACTIONS)
        for cls in registry:
            if isinstance(cls.part_of, type) and cls.name == getattr(cls.part_of, "check_name", None):
                actions.extend(cls.aws_actions)
        return tuple(dict.fromkeys(actions))


@register("rds_event")
class RdsEvent(Step):
    """Check the resource an RDS event names and complete the waits it ends."""

    pipeline_role = "event"
    records_operation: ClassVar[bool] = False
    reads = ()
    result_key = "rds_event"
    outputs = ("resource_id", "waiters", "completed", "failed")
    output_doc = "what the event step did (not part of an execution's data)"
    # Runs a loop's check (which may act, as a poll would) and answers the waiting Task.
    mutating = True
    aws_actions = _AnswersAndChecks()

    def operation_id(self, event: dict[str, Any]) -> str | None:
        """An event belongs to no operation until a wait for its resource is found."""
        return "rds-event"

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Run the waiting loops' checks for the event's resource; answer the waits they end."""
        event = ctx.event.get("event")
        detail = event.get("detail") if isinstance(event, dict) else None
        if not isinstance(event, dict) or event.get("source") != "aws.rds" or not isinstance(detail, dict):
            ctx.log.warning("not an RDS event; ignored", detail_type=(event or {}).get("detail-type"))
            return _result("", 0, [], [])
        resource_id = str(detail.get("SourceIdentifier") or "")
        region = str(event.get("region") or ctx.settings.stack_region)
        # Any RDS event proves the rule, its target and this function work: loops that went back
        # to polling after a lost event wait for events again.
        waits.record_arrival(ctx.store, region, ctx.clock())
        if not resource_id:
            return _result("", 0, [], [])
        found = waits.waiters(ctx.store, region, resource_id, ctx.clock())
        completed: list[str] = []
        failed: list[str] = []
        for waiter in found:
            outcome = self._check(ctx, waiter)
            if outcome is None:
                continue
            sfn = ctx.aws("stepfunctions")
            try:
                if isinstance(outcome, AuroraRestoreError):
                    sfn.send_task_failure(
                        taskToken=waiter.token,
                        error=type(outcome).__name__,
                        cause=json.dumps({"errorMessage": str(outcome), "errorType": type(outcome).__name__}),
                    )
                    failed.append(waiter.execution_id)
                else:
                    sfn.send_task_success(taskToken=waiter.token, output=json.dumps(outcome, default=str))
                    completed.append(waiter.execution_id)
            except Exception as error:  # the wait ended another way (timed out, already answered)
                code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
                if code not in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
                    raise
                ctx.log.info("the wait had already ended", execution_id=waiter.execution_id, code=code)
            waits.remove_waiter(ctx.store, region, resource_id, waiter)
        ctx.log.info(
            "rds event handled",
            event_id=detail.get("EventID"),
            resource_id=resource_id,
            waiters=len(found),
            completed=len(completed),
            failed=len(failed),
        )
        return _result(resource_id, len(found), completed, failed)

    def _check(self, ctx: StepContext, waiter: waits.Waiter) -> dict[str, Any] | AuroraRestoreError | None:
        """The waiter's check once: its output when complete, its error when it failed, else None."""
        from dispatcher.context import StepContext as Context
        from dispatcher.handler import json_safe

        # The dispatcher's registry, not the built-in one: a deployment's own loop (or a test's
        # stand-in) is checked with its own check.
        steps = ctx.registry or registry
        check = steps.get(waiter.check_step)
        event = dict(waiter.check_event)
        model = steps.request_model()
        request = (
            model.from_event(event["request"], execution_id=waiter.execution_id)
            if model is not None and isinstance(event.get("request"), dict)
            else None
        )
        check_ctx = Context(
            event=event,
            operation_id=waiter.operation_id,
            settings=ctx.settings,
            aws=ctx.aws,
            store=ctx.store,
            log=ctx.log,
            request=request,
            execution_id=waiter.execution_id,
            clock=ctx.clock,
            registry=ctx.registry,
        )
        try:
            with (
                waits.one_check_at_a_time(
                    ctx.store, waiter.operation_id, check.result_key, holder=uuid.uuid4().hex, clock=ctx.clock
                )
                if check.mutating
                else nullcontext(True) as alone
            ):
                if not alone:
                    ctx.log.warning(
                        "another check of this loop is still running; its fallback poll will look again",
                        execution_id=waiter.execution_id,
                    )
                    return None
                output = json_safe(check().run(check_ctx))
        except Exception as raw:
            error = aws.translate(raw)
            if isinstance(error, TRANSIENT):
                ctx.log.warning(
                    "check failed transiently; the fallback poll will look again", error=str(error)
                )
                return None
            if isinstance(error, AuroraRestoreError):
                return error
            raise
        if isinstance(output, dict) and output.get("complete"):
            return output
        ctx.log.info("the event did not end the wait", execution_id=waiter.execution_id)
        return None


def _result(resource_id: str, waiters: int, completed: list[str], failed: list[str]) -> dict[str, Any]:
    return {"resource_id": resource_id, "waiters": waiters, "completed": completed, "failed": failed}
