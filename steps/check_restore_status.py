"""check_restore_status: is the restored cluster, with every instance, available yet?

RDS accepts the instances of a restored cluster only once the cluster is available, so this poll
also adds the writer and readers then (adopting any an earlier poll added).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.errors import RestoreFailed, UnsafeTarget
from dispatcher.registry import Step, register
from refresh.safety import describe_cluster
from steps.lib.clusters import describe_instance, endpoints, is_failed, made_by, status_of
from steps.lib.restoring import ensure_instances
from steps.lib.waiting import poll_fields

if TYPE_CHECKING:
    from dispatcher.context import StepContext


@register("check_restore_status", state_name="CheckRestoreStatus")
class CheckRestoreStatus(Step):
    """Poll the restored cluster and its instances; add missing instances once it is available."""

    reads = ("request", "restore")
    result_key = "restore"
    outputs = ("cluster_id", "swap_required", "complete", "next_poll_seconds")
    # Creates the instances RDS refused while the cluster was still being restored (idempotent).
    mutating = True

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Return the restore output updated: ``status``, ``instance_statuses``, ``complete``...

        Raises ``RestoreFailed`` when the cluster or an instance ends in a failed state or the
        cluster vanished, and ``PollTimeout`` past the stack's maximum restore wait.
        """
        request = ctx.require_request()
        restore = ctx.input("restore")
        rds = ctx.aws("rds", request.target_region)
        cluster_id = str(restore.get("cluster_id") or "")
        region = request.target_region

        cluster = describe_cluster(rds, cluster_id) if cluster_id else None
        if cluster is None:
            raise RestoreFailed(
                f"the restored cluster {cluster_id or '(none named)'} no longer exists in {region}",
                cluster_id=cluster_id,
                status="missing",
            )
        if not made_by(cluster, request.operation_id):
            raise UnsafeTarget(
                f"cluster {cluster_id} in {region} was not restored by operation {request.operation_id}",
                cluster_id=cluster_id,
                rule="not-this-operation",
            )
        status = status_of(cluster)
        if is_failed(status):
            raise RestoreFailed(
                f"the restored cluster {cluster_id} in {region} is {status}",
                cluster_id=cluster_id,
                status=status,
            )

        created: list[str] = []
        if status == "available":
            created = ensure_instances(ctx, rds, cluster, request, restore)
        instance_statuses: dict[str, str] = {}
        for instance_id in restore["instance_ids"]:
            instance = describe_instance(rds, instance_id)
            instance_status = status_of(instance) if instance else "not-created"
            if is_failed(instance_status):
                raise RestoreFailed(
                    f"instance {instance_id} of the restored cluster {cluster_id} in {region} is "
                    f"{instance_status}",
                    cluster_id=cluster_id,
                    instance_id=instance_id,
                    status=instance_status,
                )
            instance_statuses[instance_id] = instance_status

        complete = status == "available" and all(s == "available" for s in instance_statuses.values())
        waiting = [f"{i} ({s})" for i, s in instance_statuses.items() if s != "available"]
        return {
            **restore,
            "status": status,
            "instance_statuses": instance_statuses,
            "instances_created": sorted({*restore.get("instances_created", []), *created}),
            **endpoints(cluster),
            **poll_fields(
                ctx,
                restore,
                complete=complete,
                max_wait_seconds=ctx.settings.restore_max_wait_seconds,
                waiting_for=f"cluster {cluster_id} ({status}) and instances {', '.join(waiting) or 'none'}",
            ),
        }

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        ready = sum(1 for s in output["instance_statuses"].values() if s == "available")
        return (
            f"{output['cluster_id']} {output['status']}, {ready}/{len(output['instance_statuses'])} "
            f"instance(s) available, complete={output['complete']}"
        )
