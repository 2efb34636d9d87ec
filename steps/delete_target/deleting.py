"""The delete-first strategy's one routine, run by both halves of the delete_target loop.

Each call looks at the target as it is now and does what is next: apply the safety rules, delete
the instances, delete the cluster (with a final snapshot unless the request skips it), and report
whether the name is free. The restore must wait for that: RDS refuses a restore under a name a
deleting cluster still holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from refresh.request import request_of
from refresh.safety import describe_cluster, ensure_replaceable
from steps.lib import names
from steps.lib.clusters import delete_cluster_and_instances, made_by, status_of
from steps.lib.polling import step_poll_fields

if TYPE_CHECKING:
    from dispatcher.context import StepContext


def advance_delete(
    ctx: StepContext, previous: dict[str, Any] | None, *, source: dict[str, Any]
) -> dict[str, Any]:
    """Take the target's deletion one step further and report where it stands.

    ``previous`` is the last output of this loop (None on the first call); ``source`` holds
    ``source_cluster_id`` and ``source_region`` for the never-the-source rule.
    """
    request = request_of(ctx)
    rds = ctx.aws("rds", request.target_region)
    cluster_id = request.target_cluster_id
    final_snapshot_id = (
        None
        if request.skip_final_snapshot
        else names.final_snapshot_id(request.target_cluster_id, request.operation_id)
    )
    instances_deleted: list[str] = list((previous or {}).get("instances_deleted", []))
    note = ""

    cluster = describe_cluster(rds, cluster_id)
    if cluster is not None and made_by(cluster, request.operation_id):
        # The name already holds this operation's own restore: the old target is long gone, and
        # the new cluster is never deleted here (a redriven execution could otherwise do it).
        note = "the target name already holds this operation's restored cluster"
        cluster = None
    elif cluster is not None and status_of(cluster) != "deleting":
        cluster = ensure_replaceable(ctx, cluster_id, source=source)
        if cluster is not None:
            done = delete_cluster_and_instances(
                ctx, rds, cluster, final_snapshot_id=final_snapshot_id, region=request.target_region
            )
            instances_deleted += [i for i in done["instances_deleted"] if i not in instances_deleted]
            cluster = describe_cluster(rds, cluster_id)

    gone = cluster is None
    status = "deleted" if gone else status_of(cluster)
    phase = "deleted" if gone else ("deleting-cluster" if status == "deleting" else "deleting-instances")
    return {
        "cluster_id": cluster_id,
        "region": request.target_region,
        "status": status,
        "phase": phase,
        "instances_deleted": instances_deleted,
        "final_snapshot_id": final_snapshot_id,
        "source_cluster_id": source.get("source_cluster_id") or "",
        "source_region": source.get("source_region") or request.source_region,
        "note": note,
        **step_poll_fields(
            ctx,
            previous,
            complete=gone,
            max_wait_seconds=ctx.settings.restore_max_wait_seconds,
            waiting_for=f"the deletion of {cluster_id} ({status})",
        ),
    }
