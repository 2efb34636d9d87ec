"""What restore_snapshot and check_restore_status share: placement, tags and the instances.

RDS creates a restored cluster without instances, and accepts ``CreateDBInstance`` for it only
once the cluster is available (RestoreDBClusterFromSnapshot's documentation), so
check_restore_status adds the writer and readers then. Their ids are derived from the target and
the operation (``names.instance_id``): a retried poll adopts what the first one created.

Placement: a restore copies neither subnet group, security groups nor parameter groups from
anywhere; without them RDS puts the cluster in the default VPC with its default security group,
and an instance created without ``PubliclyAccessible`` is public when its subnets' VPC has an
internet gateway (CreateDBInstance's documentation). So every value comes from the request, else
from the old target (recorded by snapshot_check before anything changed, so delete-first still
has it), else from the stack's defaults; a new target with no subnet group or security groups
anywhere is refused before anything starts, and instances are private unless the request asks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.errors import ValidationError
from refresh.errors import UnsafeTarget
from refresh.request import MANAGED_TAG, OPERATION_TAG
from steps.lib import names
from steps.lib.clusters import audit, describe_instance, made_by, same_id

if TYPE_CHECKING:
    from dispatcher.context import StepContext
    from dispatcher.settings import Settings
    from refresh.request import RestoreRequest

#: Request fields a new target cannot do without: the setting and stack parameter that can supply them.
NEW_TARGET_NEEDS = {
    "db_subnet_group": ("default_subnet_group", "DefaultSubnetGroup"),
    "vpc_security_group_ids": ("default_security_group_ids", "DefaultSecurityGroupIds"),
}


def target_placement(cluster: dict[str, Any], members: list[dict[str, Any]]) -> dict[str, Any]:
    """Where an existing cluster lives and how it is sized, from its and its instances' descriptions.

    ``members`` are the member instances' descriptions; the writer gives the instance class and
    parameter group, and the readers are counted.
    """
    writer_ids = {
        m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")
    }
    writer = next((i for i in members if i.get("DBInstanceIdentifier") in writer_ids), None)
    writer = writer or (members[0] if members else {})
    groups = writer.get("DBParameterGroups") or []
    return {
        "db_subnet_group": _subnet_group_name(cluster.get("DBSubnetGroup")),
        "vpc_security_group_ids": [
            str(g["VpcSecurityGroupId"])
            for g in cluster.get("VpcSecurityGroups", []) or []
            if g.get("VpcSecurityGroupId")
        ],
        "db_cluster_parameter_group": _custom_group(cluster.get("DBClusterParameterGroup")),
        "port": cluster.get("Port"),
        "instance_class": writer.get("DBInstanceClass") or None,
        "reader_count": max(len(members) - 1, 0),
        "db_parameter_group": _custom_group(groups[0].get("DBParameterGroupName") if groups else None),
    }


def _custom_group(name: Any) -> str | None:
    """A parameter group worth inheriting: RDS's ``default.*`` groups are left out.

    RDS picks the default group of the restored engine version itself, while the old target's
    default group belongs to its own version and would be refused after a major upgrade.
    """
    return str(name) if name and not str(name).startswith("default.") else None


def _subnet_group_name(value: Any) -> str | None:
    # DescribeDBClusters gives the subnet group's name; tolerate the structured DBSubnetGroup shape
    # (DescribeDBInstances') so either description can be passed.
    if isinstance(value, dict):
        value = value.get("DBSubnetGroupName")
    return str(value) if value else None


def resolve_placement(
    request: RestoreRequest, settings: Settings, target: dict[str, Any] | None
) -> dict[str, Any]:
    """Where the restored cluster goes and how it is sized: the request, the old target, the stack.

    ``target`` is snapshot_check's ``target`` output. ``sources`` says where each value came from,
    for the audit trail and the operator.
    """
    old: dict[str, Any] = dict((target or {}).get("placement") or {}) if (target or {}).get("exists") else {}
    defaults: dict[str, Any] = {
        "db_subnet_group": settings.default_subnet_group or None,
        "vpc_security_group_ids": list(settings.default_security_group_ids),
        "db_cluster_parameter_group": settings.default_cluster_parameter_group or None,
        "port": None,
        "instance_class": settings.default_instance_class,
        "reader_count": 0,
        "db_parameter_group": None,
    }
    asked: dict[str, Any] = {
        "db_subnet_group": request.db_subnet_group,
        "vpc_security_group_ids": list(request.vpc_security_group_ids),
        "db_cluster_parameter_group": request.db_cluster_parameter_group,
        "port": request.port,
        "instance_class": request.instance_class,
        "reader_count": request.reader_count,
        "db_parameter_group": request.db_parameter_group,
    }
    placement: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in defaults:
        for source, values in (("request", asked), ("old target", old), ("stack default", defaults)):
            value = values.get(name)
            if value is not None and value != [] and value != "":
                placement[name], sources[name] = value, source
                break
        else:
            placement[name], sources[name] = defaults[name], "RDS default"
    placement["publicly_accessible"] = request.publicly_accessible
    sources["publicly_accessible"] = "request" if request.publicly_accessible else "never public by default"
    placement["sources"] = sources
    return placement


def check_new_target_placement(request: RestoreRequest, settings: Settings, region: str) -> None:
    """Refuse a new target whose subnet group or security groups nobody names.

    RDS would otherwise put the cluster in the default VPC with its default security group.
    """
    for name, (setting, parameter) in NEW_TARGET_NEEDS.items():
        given = getattr(request, name) or getattr(settings, setting)
        if not given:
            raise ValidationError(
                name,
                getattr(request, name) or None,
                f"is required: target {request.target_cluster_id} does not exist in {region}, so there is "
                f"no old target to take it from; name it in the request or set the stack's {parameter} "
                "(without it RDS puts the restored cluster in the default VPC with its default security "
                "group)",
            )


def planned_instance_ids(request: RestoreRequest, reader_count: int) -> list[str]:
    """The writer's id first, then one per reader."""
    return [
        names.instance_id(request.target_cluster_id, request.operation_id, index)
        for index in range(reader_count + 1)
    ]


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


def instance_arguments(
    request: RestoreRequest, placement: dict[str, Any], cluster: dict[str, Any], instance_id: str, index: int
) -> dict[str, Any]:
    """The CreateDBInstance call for one planned instance of the restored cluster."""
    arguments: dict[str, Any] = {
        "DBInstanceIdentifier": instance_id,
        "DBClusterIdentifier": cluster["DBClusterIdentifier"],
        "Engine": cluster["Engine"],
        "DBInstanceClass": placement["instance_class"],
        # The writer gets the highest failover priority, so it stays the writer.
        "PromotionTier": 0 if index == 0 else 1,
        # Always explicit: left out, RDS makes the instance public when its subnets' VPC has an
        # internet gateway, and this is a copy of production's data.
        "PubliclyAccessible": bool(placement.get("publicly_accessible")),
        "Tags": resource_tags(request),
    }
    if placement.get("db_parameter_group"):
        arguments["DBParameterGroupName"] = placement["db_parameter_group"]
    return arguments


def ensure_instances(
    ctx: StepContext, rds: Any, cluster: dict[str, Any], request: RestoreRequest, restore: dict[str, Any]
) -> list[str]:
    """Create the writer and readers of ``cluster`` that do not exist yet; return the ids created.

    ``cluster`` is this operation's (the caller checked its tags) and available; ``restore`` is
    restore_snapshot's output (the planned ``instance_ids`` and the ``placement``). An instance under
    a planned id that this operation did not make, or that belongs to another cluster, is refused.
    """
    cluster_id = cluster["DBClusterIdentifier"]
    region = request.target_region
    placement = restore["placement"]
    created: list[str] = []
    for index, instance_id in enumerate(restore["instance_ids"]):
        existing = describe_instance(rds, instance_id)
        if existing is None:
            try:
                rds.create_db_instance(**instance_arguments(request, placement, cluster, instance_id, index))
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
