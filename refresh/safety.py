"""The rules that decide whether a cluster may be deleted or renamed.

Checked before anything is copied (snapshot_check) and again right before anything is renamed or
deleted (delete_target, swap_clusters, the failure handler's clean-up):

1. never the source cluster of the snapshot;
2. only a cluster this tool made (tag ``aurora-restore:managed=true``) or whose id matches the
   stack's allowed-target pattern; the pattern does not admit a cluster named like the source
   (in another region: most likely production's DR copy);
3. never one with deletion protection, unless the request says
   ``allow_disable_deletion_protection: true`` (then it is turned off, and that is audited);
4. each member instance (deleted with the cluster) passes rule 2 itself: tagged managed or its id
   matching the pattern, as the role's DeleteDBInstance permission requires. Checked before the
   copy, so an untagged instance is not discovered hours later, after the swap's renames.

A refusal raises ``UnsafeTarget`` naming the cluster (or instance) and the rule.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from refresh.errors import UnsafeTarget
from refresh.request import MANAGED_TAG, request_of

if TYPE_CHECKING:
    from dispatcher.context import StepContext
    from dispatcher.settings import Settings


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    """An RDS describe result's ``TagList`` as a dict."""
    return {t["Key"]: t["Value"] for t in resource.get("TagList", []) or []}


def is_managed(resource: dict[str, Any]) -> bool:
    """True when this tool made the resource."""
    return tags_of(resource).get(MANAGED_TAG, "").lower() == "true"


def describe_cluster(rds: Any, cluster_id: str) -> dict[str, Any] | None:
    """The cluster's description, or None when it does not exist."""
    try:
        clusters = rds.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"]
    except rds.exceptions.DBClusterNotFoundFault:
        return None
    return clusters[0] if clusters else None


def check_replaceable(
    cluster: dict[str, Any],
    *,
    region: str,
    source_cluster_id: str,
    source_region: str,
    settings: Settings,
    allow_disable_deletion_protection: bool,
) -> bool:
    """Raise ``UnsafeTarget`` if a rule forbids deleting or renaming ``cluster``.

    Returns True when the cluster has deletion protection that the request allows turning off
    (the caller turns it off right before deleting, and audits it).
    """
    cluster_id = cluster["DBClusterIdentifier"]
    where = f"cluster {cluster_id} in {region}"
    if source_cluster_id and cluster_id.lower() == source_cluster_id.lower() and region == source_region:
        raise UnsafeTarget(
            f"{where} is the source of the snapshot; aurora-restore never deletes or renames the source",
            cluster_id=cluster_id,
            rule="never-the-source",
        )
    pattern = settings.allowed_target_pattern
    matches_pattern = bool(pattern) and re.fullmatch(pattern, cluster_id) is not None
    named_like_source = bool(source_cluster_id) and cluster_id.lower() == source_cluster_id.lower()
    if not is_managed(cluster) and named_like_source:
        # Production's name in another region is most likely its DR copy; a broad pattern that
        # happens to match it is no reason to replace it. Only the tool's own clusters qualify.
        raise UnsafeTarget(
            f"{where} has the source cluster's name and was not made by aurora-restore (no tag "
            f"{MANAGED_TAG}=true); the allowed-target pattern does not apply to a cluster named like the "
            f"source. Tag it {MANAGED_TAG}=true if it really is a copy to be replaced",
            cluster_id=cluster_id,
            rule="named-like-the-source",
        )
    if not is_managed(cluster) and not matches_pattern:
        allowed = f" and its id does not match the allowed-target pattern {pattern!r}" if pattern else ""
        raise UnsafeTarget(
            f"{where} was not made by aurora-restore (no tag {MANAGED_TAG}=true){allowed}; "
            f"tag it {MANAGED_TAG}=true or set the stack's AllowedTargetPattern to replace it",
            cluster_id=cluster_id,
            rule="managed-or-allowed",
        )
    if cluster.get("DeletionProtection"):
        if not allow_disable_deletion_protection:
            raise UnsafeTarget(
                f"{where} has deletion protection; set allow_disable_deletion_protection: true in the "
                "request to let aurora-restore turn it off",
                cluster_id=cluster_id,
                rule="deletion-protection",
            )
        return True
    return False


def member_descriptions(rds: Any, cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """The descriptions of ``cluster``'s member instances that still exist (the writer first)."""
    members = sorted(cluster.get("DBClusterMembers") or [], key=lambda m: not m.get("IsClusterWriter"))
    found: list[dict[str, Any]] = []
    for member in members:
        try:
            described = rds.describe_db_instances(DBInstanceIdentifier=member["DBInstanceIdentifier"])
        except rds.exceptions.DBInstanceNotFoundFault:
            continue  # deleted since the cluster was described: nothing left to judge
        found += described["DBInstances"]
    return found


def check_members_replaceable(
    cluster: dict[str, Any], members: list[dict[str, Any]], *, region: str, settings: Settings
) -> None:
    """Raise ``UnsafeTarget`` for the first member instance neither tagged managed nor matching the pattern.

    ``members`` are the descriptions of ``cluster``'s instances (DescribeDBInstances).
    """
    cluster_id = cluster["DBClusterIdentifier"]
    pattern = settings.allowed_target_pattern
    for instance in members:
        instance_id = str(instance.get("DBInstanceIdentifier"))
        if is_managed(instance) or (bool(pattern) and re.fullmatch(pattern, instance_id) is not None):
            continue
        allowed = f" and its id does not match the allowed-target pattern {pattern!r}" if pattern else ""
        raise UnsafeTarget(
            f"instance {instance_id} of cluster {cluster_id} in {region} was not made by aurora-restore "
            f"(no tag {MANAGED_TAG}=true){allowed}; replacing the cluster deletes its instances, so each "
            f"must qualify too: tag it {MANAGED_TAG}=true or widen the stack's AllowedTargetPattern",
            cluster_id=cluster_id,
            instance_id=instance_id,
            rule="managed-or-allowed",
        )


def ensure_replaceable(
    ctx: StepContext, cluster_id: str, *, source: dict[str, Any], judged_as: str | None = None
) -> dict[str, Any] | None:
    """Describe ``cluster_id`` in the target region now and apply the rules right before acting.

    Returns the fresh description (None if the cluster is gone). When the request allows it and
    the cluster has deletion protection, turns protection off and records that in the audit trail.
    ``source`` is the snapshot_check output (``source_cluster_id``, ``source_region``).
    ``judged_as`` applies the rules as if the cluster still had that id: a swap renames the old
    target away before deleting it, and the allowed-target pattern and the never-the-source rule
    are about the name it had as the target, not the temporary name it holds now.
    """
    request = request_of(ctx)
    rds = ctx.aws("rds", request.target_region)
    cluster = describe_cluster(rds, cluster_id)
    if cluster is None:
        return None
    judged = {**cluster, "DBClusterIdentifier": judged_as} if judged_as else cluster
    try:
        unprotect = check_replaceable(
            judged,
            region=request.target_region,
            source_cluster_id=str(source.get("source_cluster_id") or ""),
            source_region=str(source.get("source_region") or request.source_region),
            settings=ctx.settings,
            allow_disable_deletion_protection=request.allow_disable_deletion_protection,
        )
        check_members_replaceable(
            judged, member_descriptions(rds, cluster), region=request.target_region, settings=ctx.settings
        )
    except UnsafeTarget as refusal:
        if not judged_as:
            raise
        raise UnsafeTarget(f"{refusal.message} (it is now named {cluster_id})", **refusal.details) from None
    if unprotect:
        rds.modify_db_cluster(DBClusterIdentifier=cluster_id, DeletionProtection=False, ApplyImmediately=True)
        ctx.store.audit(
            ctx.operation_id,
            "deletion_protection_disabled",
            step=str(ctx.event.get("step", "")),
            cluster_id=cluster_id,
            region=request.target_region,
            reason="request allows it (allow_disable_deletion_protection: true)",
        )
        ctx.log.warning("deletion protection turned off", cluster_id=cluster_id)
        cluster = describe_cluster(rds, cluster_id) or cluster
    return cluster
