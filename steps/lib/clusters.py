"""What the replace steps do to clusters: read their state, own them by tag, rename and delete.

The safety rules (``refresh/safety.py``) decide *whether* a cluster may be renamed or deleted;
the helpers here only carry it out, and only after the caller has asked those rules. Every
destructive call is recorded in the audit trail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from refresh.request import MANAGED_TAG, OPERATION_TAG
from refresh.safety import tags_of

if TYPE_CHECKING:
    from dispatcher.context import StepContext

#: The tag naming the snapshot a cluster was restored from.
SOURCE_SNAPSHOT_TAG = "aurora-restore:source-snapshot"
#: On a cluster made from a live cluster (clone or point-in-time restore): the source cluster's ARN,
#: and how it was made (``clone``, or ``pitr`` with the time or ``latest``).
SOURCE_CLUSTER_TAG = "aurora-restore:source-cluster"
SOURCE_KIND_TAG = "aurora-restore:source-kind"
#: Set on an old target right before a swap renames it away: which operation did, and its old name.
RETIRED_BY_TAG = "aurora-restore:retired-by"
RETIRED_FROM_TAG = "aurora-restore:retired-from"

#: Cluster and instance states from which a restore never recovers on its own.
FAILED_STATES = frozenset(
    {
        "failed",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "storage-full",
    }
)


def is_failed(status: str) -> bool:
    """True for failed, inaccessible-encryption-credentials and every incompatible-* state."""
    return status in FAILED_STATES or status.startswith("incompatible-")


def status_of(resource: dict[str, Any] | None) -> str:
    """A cluster's ``Status`` or an instance's ``DBInstanceStatus``, lower case; '' when absent."""
    if resource is None:
        return ""
    return str(resource.get("Status") or resource.get("DBInstanceStatus") or "").lower()


def made_by(resource: dict[str, Any] | None, operation_id: str) -> bool:
    """True when this tool made ``resource`` for ``operation_id`` (both tags say so)."""
    if resource is None:
        return False
    tags = tags_of(resource)
    return tags.get(MANAGED_TAG, "").lower() == "true" and tags.get(OPERATION_TAG) == operation_id


def retired_by(resource: dict[str, Any] | None, operation_id: str) -> bool:
    """True when ``operation_id`` renamed this cluster away during a swap."""
    return resource is not None and tags_of(resource).get(RETIRED_BY_TAG) == operation_id


def is_renaming(cluster: dict[str, Any] | None) -> bool:
    """True while a rename is pending or under way (status ``renaming``, or a pending new id)."""
    if cluster is None:
        return False
    pending = cluster.get("PendingModifiedValues") or {}
    return status_of(cluster) == "renaming" or bool(pending.get("DBClusterIdentifier"))


def same_id(left: str | None, right: str | None) -> bool:
    """RDS identifiers are case-insensitive (RDS stores them in lower case)."""
    return bool(left) and bool(right) and str(left).lower() == str(right).lower()


def describe_instance(rds: Any, instance_id: str) -> dict[str, Any] | None:
    """The instance's description, or None when it does not exist."""
    try:
        found = rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"]
    except rds.exceptions.DBInstanceNotFoundFault:
        return None
    return found[0] if found else None


def member_ids(cluster: dict[str, Any]) -> list[str]:
    """The cluster's instances, readers first and the writer last (deleting it last avoids failovers)."""
    members = cluster.get("DBClusterMembers") or []
    ordered = sorted(members, key=lambda m: bool(m.get("IsClusterWriter")))
    return [m["DBInstanceIdentifier"] for m in ordered]


def endpoints(cluster: dict[str, Any] | None) -> dict[str, Any]:
    """The connection details an operator needs: writer and reader endpoints, port."""
    if cluster is None:
        return {"endpoint": None, "reader_endpoint": None, "port": None}
    return {
        "endpoint": cluster.get("Endpoint"),
        "reader_endpoint": cluster.get("ReaderEndpoint"),
        "port": cluster.get("Port"),
    }


def audit(ctx: StepContext, event: str, **fields: Any) -> None:
    """One audit record for a destructive action, stamped with the running step."""
    ctx.store.audit(ctx.operation_id, event, step=str(ctx.event.get("step", "")), **fields)


def delete_cluster_and_instances(
    ctx: StepContext,
    rds: Any,
    cluster: dict[str, Any],
    *,
    final_snapshot_id: str | None,
    region: str,
) -> dict[str, Any]:
    """Delete ``cluster``'s instances, then the cluster itself; call again until it is gone.

    The caller has applied the safety rules to ``cluster`` just now. Instances come first because
    RDS refuses to delete a cluster with members in a non-deleting state; when it still refuses
    (members not yet deleting), the cluster is left for the next poll. Returns what this call did:
    ``instances_deleted`` (ids), ``cluster_deleting`` (the cluster is being deleted or gone).
    """
    cluster_id = cluster["DBClusterIdentifier"]
    instances_deleted: list[str] = []
    members_settling = False
    for instance_id in member_ids(cluster):
        instance = describe_instance(rds, instance_id)
        if instance is None or status_of(instance) == "deleting":
            continue
        try:
            # Aurora instances have no final snapshot of their own: the cluster's covers them.
            rds.delete_db_instance(DBInstanceIdentifier=instance_id, SkipFinalSnapshot=True)
        except rds.exceptions.DBInstanceNotFoundFault:
            continue
        except rds.exceptions.InvalidDBInstanceStateFault:
            # Still creating or modifying: RDS accepts the delete once it settles.
            members_settling = True
            continue
        instances_deleted.append(instance_id)
        audit(ctx, "instance_deleted", cluster_id=cluster_id, instance_id=instance_id, region=region)
        ctx.log.warning("instance deleted", cluster_id=cluster_id, instance_id=instance_id)
    if status_of(cluster) == "deleting":
        return {"instances_deleted": instances_deleted, "cluster_deleting": True}
    if members_settling:
        return {"instances_deleted": instances_deleted, "cluster_deleting": False}
    arguments: dict[str, Any] = {"DBClusterIdentifier": cluster_id}
    if final_snapshot_id:
        arguments["FinalDBSnapshotIdentifier"] = final_snapshot_id
    else:
        arguments["SkipFinalSnapshot"] = True
    try:
        rds.delete_db_cluster(**arguments)
    except rds.exceptions.DBClusterNotFoundFault:
        return {"instances_deleted": instances_deleted, "cluster_deleting": True}
    except rds.exceptions.InvalidDBClusterStateFault:
        # Members still in a non-deleting state, or the cluster is busy: the next poll tries again.
        return {"instances_deleted": instances_deleted, "cluster_deleting": False}
    audit(
        ctx,
        "cluster_delete_started",
        cluster_id=cluster_id,
        region=region,
        final_snapshot_id=final_snapshot_id or "",
    )
    ctx.log.warning("cluster deletion started", cluster_id=cluster_id, final_snapshot_id=final_snapshot_id)
    return {"instances_deleted": instances_deleted, "cluster_deleting": True}


def rename_cluster(ctx: StepContext, rds: Any, cluster_id: str, new_cluster_id: str, *, region: str) -> None:
    """Rename ``cluster_id`` to ``new_cluster_id`` now (the caller checked the rules and the name)."""
    rds.modify_db_cluster(
        DBClusterIdentifier=cluster_id, NewDBClusterIdentifier=new_cluster_id, ApplyImmediately=True
    )
    audit(ctx, "cluster_renamed", cluster_id=cluster_id, new_cluster_id=new_cluster_id, region=region)
    ctx.log.warning("cluster renamed", cluster_id=cluster_id, new_cluster_id=new_cluster_id)


def rename_back(ctx: StepContext, rds: Any, retired: dict[str, Any], target_id: str, *, region: str) -> None:
    """Put a renamed-away old target back under ``target_id``, its tags matching what happened.

    The ``retired-*`` tags come off first, so a cluster back under its name never carries them.
    If the rename is then refused, the tags go back on: the cluster is still the retired one, and
    both the clean-up and the runbook's query find it by them. Tags stay with a cluster across a
    rename (RDS's rename documentation), so their order does not depend on the rename finishing.
    """
    arn = retired["DBClusterArn"]
    retired_id = retired["DBClusterIdentifier"]
    tags = {
        key: value for key, value in tags_of(retired).items() if key in (RETIRED_BY_TAG, RETIRED_FROM_TAG)
    }
    rds.remove_tags_from_resource(ResourceName=arn, TagKeys=[RETIRED_BY_TAG, RETIRED_FROM_TAG])
    try:
        rename_cluster(ctx, rds, retired_id, target_id, region=region)
    except Exception:
        try:
            rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        except Exception as exc:  # The rename's error is the one to report; this one is logged.
            ctx.log.error("could not put the retired tags back", cluster_id=retired_id, error=str(exc)[:300])
        raise
