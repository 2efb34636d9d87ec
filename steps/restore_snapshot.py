"""restore_snapshot: restore the copied snapshot (or a live cluster) into a new cluster.

From ``clone:``/``pitr:`` there is no snapshot: the new cluster comes from the source cluster
itself (``RestoreDBClusterToPointInTime``, ``point_in_time_arguments``); the rest is the same.

Under ``swap`` with an existing target the cluster is restored beside it, under a temporary
identifier (``names.temporary_cluster_id``), and swapped in later; otherwise (``delete-first``,
or no target yet) it is restored under the target's own name. RDS accepts the writer and readers
(``CreateDBInstance``) only once the restored cluster is available, so the start plans their ids
and their placement (``restoring.resolve_placement``: the request, else the old target, else the
stack's defaults) and the check adds them then (adopting any an earlier check added), until the
cluster and every instance are available.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from dispatcher.errors import ResourceBusy, ValidationError
from dispatcher.poll_loop import PollLoopStep
from dispatcher.registry import register
from refresh.errors import RestoreFailed, UnsafeTarget
from refresh.request import request_of
from refresh.safety import describe_cluster
from refresh.sources import RESTORE_TYPES
from steps.lib import names
from steps.lib.clusters import (
    SOURCE_CLUSTER_TAG,
    SOURCE_KIND_TAG,
    SOURCE_SNAPSHOT_TAG,
    audit,
    describe_instance,
    endpoints,
    is_failed,
    made_by,
    status_of,
)
from steps.lib.polling import step_poll_fields
from steps.lib.restoring import (
    check_new_target_placement,
    ensure_instances,
    not_ours,
    planned_instance_ids,
    resolve_placement,
    resource_tags,
)

if TYPE_CHECKING:
    from dispatcher.context import StepContext
    from refresh.request import RestoreRequest


@register("restore_snapshot", state_name="RestoreSnapshot")
class RestoreSnapshot(PollLoopStep):
    """Restore the copy into a new cluster, beside the target under swap, else under its name."""

    aws_actions = (
        "rds:DescribeDBClusters",
        "rds:DescribeDBInstances",
        "rds:DescribeDBSubnetGroups",
        "rds:ListTagsForResource",
        "rds:RestoreDBClusterFromSnapshot",
        "rds:RestoreDBClusterToPointInTime",
        "rds:CreateDBInstance",
        "rds:AddTagsToResource",
        "kms:DescribeKey",
        "kms:CreateGrant",
        "kms:Decrypt",
    )
    run_after = "delete_target"
    reads = ("request", "snapshot", "copy")
    result_key = "restore"
    output_doc = (
        "`cluster_id` (temporary id under `swap` when the target exists, else the target id), "
        "`swap_required`, `placement` (the request's, else the old target's, else the stack's: subnet "
        "group, security groups, parameter groups, port, instance class, reader count, "
        "`publicly_accessible`, and `sources` saying which), `instance_ids`, `writer_instance_id`, "
        "`status`, `complete`, `next_poll_seconds`, `fallback_seconds`, `polls`, `started_at`, `endpoint`"
    )
    outputs = ("cluster_id", "swap_required", "complete", "next_poll_seconds", "fallback_seconds")
    check_reads = ("request", "restore")
    # RDS events about these (SourceIdentifier) end the wait early.
    awaited_fields = ("cluster_id", "instance_ids")
    # The check creates the instances RDS refused while the cluster was being restored (idempotent).
    check_mutating = True
    max_wait_setting = "restore_max_wait_seconds"

    def start(self, ctx: StepContext) -> dict[str, Any]:
        """Start the restore, or adopt the cluster this operation already started.

        Returns ``cluster_id``, ``swap_required``, the instance ids, ``status`` and the poll
        fields (``complete`` is false: check_restore_status decides when it is done).
        """
        request = request_of(ctx)
        snapshot = ctx.input("snapshot")
        copy = ctx.input("copy")
        rds = ctx.aws("rds", request.target_region)

        target = snapshot.get("target") or {}
        target_exists = bool(target.get("exists"))
        if not target_exists:
            check_new_target_placement(request, ctx.settings, request.target_region)
        placement = resolve_placement(request, ctx.settings, target)
        swap_required = request.strategy == "swap" and target_exists
        cluster_id = (
            names.temporary_cluster_id(request.target_cluster_id, request.operation_id)
            if swap_required
            else request.target_cluster_id
        )

        cluster = describe_cluster(rds, cluster_id)
        if cluster is None and swap_required:
            # A retry after an earlier execution's swap already renamed this operation's cluster
            # in: that cluster is the restore (restoring again would collide with its instances'
            # names); the swap step then only finishes what is left (the old cluster's deletion).
            moved_in = describe_cluster(rds, request.target_cluster_id)
            if moved_in is not None and made_by(moved_in, request.operation_id):
                cluster_id, cluster = request.target_cluster_id, moved_in
                ctx.log.info("adopting this operation's cluster, already swapped in", cluster_id=cluster_id)
        if cluster is None:
            cluster = self._restore(ctx, rds, request, snapshot, copy, cluster_id, placement)
        else:
            self._check_adoptable(request, cluster_id, cluster)
            ctx.log.info("adopting the cluster this operation already restored", cluster_id=cluster_id)

        instance_ids = planned_instance_ids(request, placement["reader_count"])
        return {
            "cluster_id": cluster["DBClusterIdentifier"],
            "target_cluster_id": request.target_cluster_id,
            "region": request.target_region,
            "swap_required": swap_required,
            "engine": cluster.get("Engine"),
            "engine_version": cluster.get("EngineVersion"),
            "instance_class": placement["instance_class"],
            "placement": placement,
            "instance_ids": instance_ids,
            "writer_instance_id": instance_ids[0],
            "instances_created": [],
            "status": status_of(cluster),
            **endpoints(cluster),
            **step_poll_fields(
                ctx,
                None,
                complete=False,
                max_wait_seconds=ctx.settings.restore_max_wait_seconds,
                waiting_for=f"the restore of {cluster_id}",
            ),
        }

    def _check_adoptable(self, request: RestoreRequest, cluster_id: str, cluster: dict[str, Any]) -> None:
        """Refuse a cluster under our name that this operation did not make."""
        if made_by(cluster, request.operation_id):
            return
        if status_of(cluster) == "deleting":
            raise ResourceBusy(
                f"cluster {cluster_id} in {request.target_region} is still being deleted; a restore "
                "under the same name fails until it is gone",
                cluster_id=cluster_id,
            )
        raise not_ours("cluster", cluster_id, request.target_region, request.operation_id, cluster)

    def _restore(
        self,
        ctx: StepContext,
        rds: Any,
        request: RestoreRequest,
        snapshot: dict[str, Any],
        copy: dict[str, Any],
        cluster_id: str,
        placement: dict[str, Any],
    ) -> dict[str, Any]:
        """Call RestoreDBClusterFromSnapshot (or, from a live cluster, RestoreDBClusterToPointInTime);
        adopt the cluster if a concurrent run made it."""
        from_cluster = snapshot.get("source_kind") in ("clone", "pitr")
        if from_cluster:
            arguments = point_in_time_arguments(request, snapshot, cluster_id, placement)
        else:
            arguments = restore_arguments(ctx, request, snapshot, copy, cluster_id, placement)
        try:
            if from_cluster:
                cluster: dict[str, Any] = rds.restore_db_cluster_to_point_in_time(**arguments)["DBCluster"]
            else:
                cluster = rds.restore_db_cluster_from_snapshot(**arguments)["DBCluster"]
        except rds.exceptions.DBClusterAlreadyExistsFault:
            existing = describe_cluster(rds, cluster_id)
            if existing is None:
                raise ResourceBusy(
                    f"cluster {cluster_id} was reported to exist but cannot be described yet; retry",
                    cluster_id=cluster_id,
                ) from None
            self._check_adoptable(request, cluster_id, existing)
            return existing
        audit(
            ctx,
            "cluster_restore_started",
            cluster_id=cluster_id,
            region=request.target_region,
            snapshot=arguments.get("SnapshotIdentifier"),
            source_cluster=arguments.get("SourceDBClusterIdentifier"),
            restore_type=arguments.get("RestoreType"),
            restore_to_time=str(arguments.get("RestoreToTime") or "latest") if from_cluster else None,
            subnet_group=placement["db_subnet_group"],
            security_groups=placement["vpc_security_group_ids"],
            placement_sources=placement["sources"],
        )
        ctx.log.info(
            "restore started",
            cluster_id=cluster_id,
            source=arguments.get("SnapshotIdentifier") or arguments.get("SourceDBClusterIdentifier"),
        )
        return cluster

    def check(self, ctx: StepContext) -> dict[str, Any]:
        """Return the restore output updated: ``status``, ``instance_statuses``, ``complete``...

        Raises ``RestoreFailed`` when the cluster or an instance ends in a failed state or the
        cluster vanished, and ``PollTimeout`` past the stack's maximum restore wait.
        """
        request = request_of(ctx)
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
            **step_poll_fields(
                ctx,
                restore,
                complete=complete,
                max_wait_seconds=ctx.settings.restore_max_wait_seconds,
                waiting_for=f"cluster {cluster_id} ({status}) and instances {', '.join(waiting) or 'none'}",
            ),
        }

    def summarize_check(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        ready = sum(1 for s in output["instance_statuses"].values() if s == "available")
        return (
            f"{output['cluster_id']} {output['status']}, {ready}/{len(output['instance_statuses'])} "
            f"instance(s) available, complete={output['complete']}"
        )

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        where = "beside the target (swap)" if output["swap_required"] else "under the target's name"
        return (
            f"restoring {output['cluster_id']} {where}, {len(output['instance_ids'])} instance(s), "
            f"status {output['status']}"
        )


def restore_arguments(
    ctx: StepContext,
    request: RestoreRequest,
    snapshot: dict[str, Any],
    copy: dict[str, Any],
    cluster_id: str,
    placement: dict[str, Any],
) -> dict[str, Any]:
    """The RestoreDBClusterFromSnapshot call for this request, placed as ``placement`` says.

    A restore copies neither subnet group, security groups nor parameter group from anywhere:
    without them the cluster gets the default VPC, its default security group and default groups.
    """
    settings = ctx.settings
    source_snapshot = str(copy.get("identifier") or copy.get("arn") or "")
    if not source_snapshot:
        raise ValidationError(
            "copy.identifier",
            copy.get("identifier"),
            "the copy step's output must name the snapshot to restore",
        )
    arguments: dict[str, Any] = {
        "DBClusterIdentifier": cluster_id,
        "SnapshotIdentifier": source_snapshot,
        "Engine": snapshot.get("engine") or "aurora-postgresql",
        "DeletionProtection": False,
        "EnableIAMDatabaseAuthentication": request.iam_database_auth,
        # No CopyTagsToSnapshot: a later final snapshot of this cluster must not carry the
        # managed and operation tags, or retention would take it for a copy it may delete.
        "Tags": resource_tags(
            request, **{SOURCE_SNAPSHOT_TAG: str(snapshot.get("arn") or snapshot.get("identifier") or "")}
        ),
    }
    engine_version = request.engine_version or snapshot.get("engine_version")
    if engine_version:
        arguments["EngineVersion"] = engine_version
    if snapshot.get("encrypted"):
        # Without a key RDS keeps the copy's own key (already one of the target region).
        kms_key_id = request.kms_key_id or settings.default_kms_key_id
        if kms_key_id:
            arguments["KmsKeyId"] = kms_key_id
    arguments.update(placement_arguments(request, placement))
    return arguments


def point_in_time_arguments(
    request: RestoreRequest, snapshot: dict[str, Any], cluster_id: str, placement: dict[str, Any]
) -> dict[str, Any]:
    """The RestoreDBClusterToPointInTime call for a clone or a point-in-time restore.

    A clone is ``copy-on-write`` at the latest restorable time and keeps the source's KMS key (no
    ``KmsKeyId``); a point-in-time restore is a ``full-copy`` at ``RestoreToTime`` or the latest
    restorable time, re-encrypted only when the request names a key. Like a snapshot restore, it
    takes the default VPC and security group unless placed, and has no instance until one is added.
    """
    kind = str(snapshot["source_kind"])
    restore_to = snapshot.get("restore_to_time")
    arguments: dict[str, Any] = {
        "DBClusterIdentifier": cluster_id,
        "SourceDBClusterIdentifier": str(snapshot["source_cluster_id"]),
        "RestoreType": str(snapshot.get("restore_type") or RESTORE_TYPES[kind]),
        "DeletionProtection": False,
        "EnableIAMDatabaseAuthentication": request.iam_database_auth,
        "Tags": resource_tags(
            request,
            **{SOURCE_CLUSTER_TAG: str(snapshot.get("arn") or snapshot["source_cluster_id"])},
            **{SOURCE_KIND_TAG: kind if kind == "clone" else f"pitr@{restore_to or 'latest'}"},
        ),
    }
    if restore_to and kind == "pitr":
        arguments["RestoreToTime"] = datetime.fromisoformat(str(restore_to))
    else:
        arguments["UseLatestRestorableTime"] = True
    if kind == "pitr" and request.kms_key_id and snapshot.get("encrypted"):
        arguments["KmsKeyId"] = request.kms_key_id
    arguments.update(placement_arguments(request, placement))
    return arguments


def placement_arguments(request: RestoreRequest, placement: dict[str, Any]) -> dict[str, Any]:
    """Where the new cluster goes, the same for a snapshot restore and a point-in-time restore."""
    arguments: dict[str, Any] = {}
    if placement.get("db_subnet_group"):
        arguments["DBSubnetGroupName"] = placement["db_subnet_group"]
    if placement.get("vpc_security_group_ids"):
        arguments["VpcSecurityGroupIds"] = list(placement["vpc_security_group_ids"])
    if placement.get("db_cluster_parameter_group"):
        arguments["DBClusterParameterGroupName"] = placement["db_cluster_parameter_group"]
    if placement.get("port") is not None:
        arguments["Port"] = placement["port"]
    if placement["instance_class"] == "db.serverless":
        arguments["ServerlessV2ScalingConfiguration"] = {
            "MinCapacity": request.serverless_min_capacity,
            "MaxCapacity": request.serverless_max_capacity,
        }
    return arguments
