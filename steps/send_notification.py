"""send_notification: tell the subscribers the refresh succeeded, then close the operation.

The last Task of a successful run. It receives the whole execution data (``$`` -> ``input``),
publishes one JSON message to the stack's topic (fields in ``docs/notifications.md``), marks the
state item SUCCEEDED and releases the target's lock. Publishing comes first: if it fails, the
operation is still open and the failure handler reports it. Once the success is published the
run has succeeded: a lock that cannot be released afterwards is reported (step output, state item,
audit trail, log, with the command that frees it) and does not turn the run into a failure, so
subscribers never get a FAILED message after the SUCCEEDED one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher import aws
from dispatcher.errors import Retryable, ValidationError
from dispatcher.registry import Step, register
from dispatcher.store import STATUS_SUCCEEDED
from refresh import target_lock
from refresh.checks import check_line
from refresh.request import RestoreRequest
from refresh.safety import describe_cluster
from steps.lib import notify

if TYPE_CHECKING:
    from dispatcher.context import StepContext


@register("send_notification")
class SendNotification(Step):
    """Publish the success notification, mark the operation SUCCEEDED and release the target lock."""

    aws_actions = (
        "rds:DescribeDBClusters",
        "sns:Publish",
        # Publishing to the topic the stack key encrypts (SNS asks KMS as the caller).
        "kms:GenerateDataKey*",
        "kms:Decrypt",
    )
    run_after = "archive_snapshot"
    reads = ("$",)
    result_key = "notification"
    output_doc = "message id, subject"
    mutating = True
    final_notification = True

    def operation_id(self, event: dict[str, Any]) -> str | None:
        """The validated request's id (``$.request.operation_id`` inside the whole data)."""
        data = event.get("input")
        request = data.get("request") if isinstance(data, dict) else None
        value = request.get("operation_id") if isinstance(request, dict) else None
        return value if isinstance(value, str) and value else None

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Publish once (a retry finds the recorded message id), finish, release; return what was sent."""
        data = ctx.event.get("input")
        if not isinstance(data, dict) or not isinstance(data.get("request"), dict):
            raise ValidationError(
                "input.request", None, "send_notification needs the whole execution data with $.request"
            )
        request = RestoreRequest.from_event(data["request"], execution_id=ctx.execution_id)
        ctx.request = request
        operation_id = ctx.operation_id
        item = ctx.store.get_operation(operation_id)

        previous = notify.previous_notification(item, STATUS_SUCCEEDED, ctx.execution_id)
        if previous is not None:
            ctx.log.info(
                "success notification already sent; not sending again", message_id=previous["message_id"]
            )
            notification: dict[str, Any] = {"sent": True, "already_sent": True, **previous}
            endpoint = previous.get("endpoint")
        else:
            message = self.message(ctx, request, data, item)
            endpoint = message["endpoint"]
            notification = self.send(ctx, request, message)

        ctx.store.finish(operation_id, STATUS_SUCCEEDED, execution_id=ctx.execution_id)
        lock = self.release_lock(ctx, request)
        return {
            "status": STATUS_SUCCEEDED,
            "sent": notification["sent"],
            "already_sent": notification.get("already_sent", False),
            "message_id": notification.get("message_id"),
            "subject": notification.get("subject"),
            "topic_arn": notification.get("topic_arn"),
            "reason": notification.get("reason"),
            "endpoint": endpoint,
            "lock_released": lock["released"],
            "lock": lock["lock"],
        }

    def release_lock(self, ctx: StepContext, request: RestoreRequest) -> dict[str, Any]:
        """Release the target's lock; a table that refuses is reported, never raised.

        The success is published and the state item says SUCCEEDED by now: raising would send the
        execution to the failure handler, whose FAILED message would contradict the first one.
        Throttling is the one exception: it goes to the state's Retry, which runs this step again
        without publishing again (the message is recorded); if the throttling outlasts the Retry,
        the failure handler finds this execution's SUCCEEDED message, keeps the operation
        SUCCEEDED, tries the lock once more and publishes nothing.
        """
        try:
            return target_lock.release_for_report(
                ctx.store, request.target_region, request.target_cluster_id, ctx.operation_id
            )
        except Exception as raw_error:
            error = aws.translate(raw_error)
            if isinstance(error, Retryable):
                raise error from raw_error
            text = notify.scrub_text(f"{type(error).__name__}: {error}"[:300])
            unlock = target_lock.unlock_command(request.target_region, request.target_cluster_id)
            lock = f"could not be released ({text}); release it with: {unlock}"
            ctx.log.error("the target lock could not be released after a successful refresh", error=text)
            for record in (
                lambda: ctx.store.audit(ctx.operation_id, "lock_release_failed", step=self.name, error=text),
                lambda: ctx.store.record_execution(ctx.operation_id, ctx.execution_id, lock_error=lock),
            ):
                try:
                    record()
                except Exception as exc:  # The same table: the log line above is what remains.
                    ctx.log.error("could not record the lock problem", record_error=str(exc)[:300])
            return {"released": False, "holder": None, "lock": lock}

    def send(self, ctx: StepContext, request: RestoreRequest, message: dict[str, Any]) -> dict[str, Any]:
        """Publish and record, or say plainly that no topic is configured."""
        operation_id = ctx.operation_id
        skipped = notify.skipped_without_topic(ctx, self.name, "success")
        if skipped is not None:
            return skipped
        record = notify.publish(
            ctx,
            status=STATUS_SUCCEEDED,
            operation_id=operation_id,
            target_cluster_id=request.target_cluster_id,
            message=message,
        )
        return notify.record_sent(
            ctx,
            self.name,
            status=STATUS_SUCCEEDED,
            record=record,
            stored={**record, "endpoint": message["endpoint"]},
            audit_event="notified",
            what="success",
        )

    def message(
        self, ctx: StepContext, request: RestoreRequest, data: dict[str, Any], item: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The JSON message: what was restored, where, how, how long each step took, what was kept."""
        snapshot = _section(data, "snapshot")
        copy = _section(data, "copy")
        restore = _section(data, "restore")
        swap = _section(data, "swap")
        delete = _section(data, "delete")
        archive = _section(data, "archive")
        cluster = self.target_cluster(ctx, request)
        durations = notify.step_durations(item)
        started_at = (item or {}).get("started_at")
        now = ctx.clock()
        replaced = swap.get("old_cluster_id") or delete.get("cluster_id")
        message = {
            "status": STATUS_SUCCEEDED,
            "operation_id": ctx.operation_id,
            "execution_id": ctx.execution_id,
            "target_cluster_id": request.target_cluster_id,
            "target_region": request.target_region,
            "source_region": request.source_region,
            "strategy": request.strategy,
            "snapshot": {
                "requested": request.snapshot_id,
                "identifier": snapshot.get("identifier"),
                "arn": snapshot.get("arn"),
                "source_cluster_id": snapshot.get("source_cluster_id"),
                "engine_version": snapshot.get("engine_version"),
                "encrypted": snapshot.get("encrypted"),
                "restored_from": copy.get("identifier") or snapshot.get("identifier"),
                "copied": copy.get("copied"),
                "reused_from": copy.get("reused_from"),
                # snapshot, or clone / pitr: a live cluster, restored as of restore_to_time (null: latest)
                "source_kind": snapshot.get("source_kind", "snapshot"),
                "restore_type": snapshot.get("restore_type"),
                "restore_to_time": snapshot.get("restore_to_time"),
            },
            "endpoint": cluster.get("Endpoint") or swap.get("endpoint") or restore.get("endpoint"),
            "reader_endpoint": cluster.get("ReaderEndpoint") or restore.get("reader_endpoint"),
            "port": cluster.get("Port") or request.port,
            "cluster_status": cluster.get("Status"),
            "replaced_cluster_id": replaced,
            "replaced_final_snapshot_id": swap.get("final_snapshot_id") or delete.get("final_snapshot_id"),
            "archive": {
                "kept": _first(archive, "kept", "copies_kept", "kept_copies"),
                "retired": _first(archive, "deleted", "copies_deleted", "deleted_copies", "retired"),
                "export_task": _first(archive, "export_task", "export"),
            },
            "checks": [
                check_line(r) for r in _section(data, "checks").get("results") or [] if isinstance(r, dict)
            ],
            "step_durations_ms": durations,
            "started_at": started_at,
            "finished_at": notify.iso(now),
            "elapsed_seconds": notify.seconds_since(started_at, now),
        }
        cleaned: dict[str, Any] = notify.clean(message)
        return cleaned

    def target_cluster(self, ctx: StepContext, request: RestoreRequest) -> dict[str, Any]:
        """The target as RDS sees it now: after a swap its endpoint is no longer the restore's."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            cluster = describe_cluster(ctx.aws("rds", request.target_region), request.target_cluster_id)
        except (BotoCoreError, ClientError) as exc:
            ctx.log.warning("could not describe the target for the notification", error=str(exc))
            return {}
        if cluster is None:
            ctx.log.warning("the target cluster was not found for the notification")
            return {}
        return cluster

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        if output.get("sent"):
            again = " (already sent)" if output.get("already_sent") else ""
            head = f"notified {output.get('message_id')}{again}"
        else:
            head = "not notified: " + str(output.get("reason"))
        return f"{head}; lock {output.get('lock')}"


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    """An earlier step's output, or an empty dict when that step did not run (no swap, no delete)."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _first(section: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` present in ``section`` (the archive step's output), else None."""
    for name in names:
        if name in section:
            return section[name]
    return None
