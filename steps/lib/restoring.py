"""What restore_snapshot and check_restore_status share: tags and the restored cluster's instances.

RDS creates a restored cluster without instances, and accepts ``CreateDBInstance`` for it only
once the cluster is available (RestoreDBClusterFromSnapshot's documentation), so
check_restore_status adds the writer and readers then. Their ids are derived from the target and
the operation (``names.instance_id``): a retried poll adopts what the first one created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.errors import UnsafeTarget
from dispatcher.request import MANAGED_TAG, OPERATION_TAG
from steps.lib import names
from steps.lib.clusters import audit, describe_instance, made_by, same_id

if TYPE_CHECKING:
    from dispatcher.context import StepContext
    from dispatcher.request import RestoreRequest


def planned_instance_ids(request: RestoreRequest) -> list[str]:
    """The writer's id first, then one per reader."""
    return [
        names.instance_id(request.target_cluster_id, request.operation_id, index)
        for index in range(request.reader_count + 1)
    ]


def instance_class(ctx: StepContext, request: RestoreRequest) -> str:
    """The request's instance class, else the stack's default."""
    return request.instance_class or ctx.settings.default_instance_class


def resource_tags(request: RestoreRequest, **extra: str) -> list[dict[str, str]]:
    """The request's tags plus the tags that mark a resource as this operation's."""
    tags = {**dict(request.tags), **extra, MANAGED_TAG: "true", OPERATION_TAG: request.operation_id}
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def not_ours(
    kind: str, identifier: str, region: str, operation_id: str, resource: dict[str, Any]
) -> UnsafeTarget:
    """The refusal to adopt a resource that another operation (or a person) made."""
    owner = {t["Key"]: t["Value"] for t in resource.get("TagList", []) or []}.get(OPERATION_TAG)
    made = f"operation {owner}" if owner else "someone else (no aurora-restore operation tag)"
    return UnsafeTarget(
        f"{kind} {identifier} in {region} already exists and was made by {made}, not by operation "
        f"{operation_id}; aurora-restore never adopts what another made. Remove or rename it, or "
        "choose another target_cluster_id",
        cluster_id=identifier,
        rule="not-this-operation",
    )


def ensure_instances(
    ctx: StepContext, rds: Any, cluster: dict[str, Any], request: RestoreRequest
) -> list[str]:
    """Create the writer and readers of ``cluster`` that do not exist yet; return the ids created.

    ``cluster`` is this operation's (the caller checked its tags) and available. An instance under
    a planned id that this operation did not make, or that belongs to another cluster, is refused.
    """
    cluster_id = cluster["DBClusterIdentifier"]
    region = request.target_region
    created: list[str] = []
    for index, instance_id in enumerate(planned_instance_ids(request)):
        existing = describe_instance(rds, instance_id)
        if existing is None:
            try:
                rds.create_db_instance(
                    DBInstanceIdentifier=instance_id,
                    DBClusterIdentifier=cluster_id,
                    Engine=cluster["Engine"],
                    DBInstanceClass=instance_class(ctx, request),
                    # The writer gets the highest failover priority, so it stays the writer.
                    PromotionTier=0 if index == 0 else 1,
                    Tags=resource_tags(request),
                )
            except rds.exceptions.DBInstanceAlreadyExistsFault:
                # A concurrent run got there first: adopt it if it is ours (checked below).
                existing = describe_instance(rds, instance_id)
            else:
                created.append(instance_id)
                audit(ctx, "instance_created", cluster_id=cluster_id, instance_id=instance_id, region=region)
                continue
        if existing is None:
            continue
        if not made_by(existing, request.operation_id):
            raise not_ours("DB instance", instance_id, region, request.operation_id, existing)
        if not same_id(existing.get("DBClusterIdentifier"), cluster_id):
            raise UnsafeTarget(
                f"DB instance {instance_id} in {region} belongs to cluster "
                f"{existing.get('DBClusterIdentifier')}, not to {cluster_id}",
                cluster_id=cluster_id,
                rule="not-this-operation",
            )
    return created
