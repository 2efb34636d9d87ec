"""Reading cluster snapshots and the tags aurora-restore puts on the copies it makes.

Every copy carries, besides ``aurora-restore:managed=true`` and ``aurora-restore:operation-id``:

- ``aurora-restore:source-snapshot``: the ARN of the snapshot it was copied from;
- ``aurora-restore:target``: ``<region>/<cluster-id>`` it was made for (retention counts by it);
- ``aurora-restore:kms-key``: the key it is encrypted with (``none`` when unencrypted).

Together they let another operation find a copy it can reuse (same source, same region, same
key) instead of starting a second multi-hour copy. An operation that reuses someone else's copy
adds ``aurora-restore:used-by:<its operation id>``; retention and clean-up never delete a copy
whose creator or users are still RUNNING in the state table (:func:`operations_using`).

Copies decided at the same moment are serialised by a claim in the state table
(:mod:`refresh.copy_claims`): the operation that claims first copies, the others
reuse the claimed copy, even before it exists, for :data:`COPY_CLAIM_GRACE_SECONDS`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dispatcher.store import STATUS_RUNNING
from refresh.request import MANAGED_TAG, OPERATION_TAG
from refresh.safety import tags_of

if TYPE_CHECKING:
    from collections.abc import Iterator

    from dispatcher.store import Store

ENGINE = "aurora-postgresql"
SOURCE_SNAPSHOT_TAG = "aurora-restore:source-snapshot"
TARGET_TAG = "aurora-restore:target"
KMS_KEY_TAG = "aurora-restore:kms-key"
USED_BY_TAG_PREFIX = "aurora-restore:used-by:"
RESTORED_INTO_TAG = "aurora-restore:restored-into"
RESTORED_AT_TAG = "aurora-restore:restored-at"
RESTORED_BY_TAG = "aurora-restore:restored-by"
#: Tag keys nobody may copy onto our snapshots from a source: AWS's own and ours.
RESERVED_TAG_PREFIXES = ("aws:", "aurora-restore:")
#: RDS allows at most 50 tags per resource.
MAX_TAGS = 50
NO_KEY = "none"
#: How long a claimed copy may not exist yet before its waiters give up on it (and others may
#: take the claim over): the owner issues CopyDBClusterSnapshot seconds after claiming, so a few
#: minutes cover a crashed attempt and its retry.
COPY_CLAIM_GRACE_SECONDS = 300
#: Statuses of a copy that is, or will become, usable.
USABLE_STATUSES = frozenset({"available", "copying", "creating"})


def target_tag_value(region: str, cluster_id: str) -> str:
    """The ``aurora-restore:target`` value for a target (cluster ids are case-insensitive)."""
    return f"{region}/{cluster_id.lower()}"


def copy_reason(*, cross_region: bool, snapshot_type: str, shared: bool) -> str | None:
    """Why the snapshot must be copied before the restore, or None when it is used as it is.

    Across regions a restore needs a local snapshot; an automated snapshot is copied so it
    survives the source's backup retention while we restore (and it cannot be shared); a
    snapshot shared from another account is copied so the restore does not depend on the
    other account keeping it shared (and it can only be copied inside its region).
    """
    if cross_region:
        return "cross-region"
    if shared:
        return "shared"
    if snapshot_type == "automated":
        return "automated"
    return None


def describe_snapshot(rds: Any, identifier: str, *, automated: bool = False) -> dict[str, Any] | None:
    """The cluster snapshot ``identifier`` in the client's region and account, or None."""
    kwargs: dict[str, Any] = {"DBClusterSnapshotIdentifier": identifier}
    if automated or identifier.startswith("rds:"):
        # The API wants SnapshotType with an automated snapshot's identifier.
        kwargs["SnapshotType"] = "automated"
    try:
        found = rds.describe_db_cluster_snapshots(**kwargs)["DBClusterSnapshots"]
    except rds.exceptions.DBClusterSnapshotNotFoundFault:
        return None
    return found[0] if found else None


def iter_snapshots(rds: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every cluster snapshot matching ``kwargs``, across all pages."""
    paginator = rds.get_paginator("describe_db_cluster_snapshots")
    for page in paginator.paginate(**kwargs):
        yield from page.get("DBClusterSnapshots", [])


def snapshot_tags(rds: Any, snapshot: dict[str, Any]) -> dict[str, str]:
    """The snapshot's tags: from the describe result, or ListTagsForResource when it has none."""
    if "TagList" in snapshot:
        return tags_of(snapshot)
    listed = rds.list_tags_for_resource(ResourceName=snapshot["DBClusterSnapshotArn"])
    return tags_of(listed)


def is_managed_tags(tags: dict[str, str]) -> bool:
    """True when the tags say aurora-restore made the resource."""
    return tags.get(MANAGED_TAG, "").lower() == "true"


def created_at(snapshot: dict[str, Any]) -> datetime:
    """When the snapshot was taken; one still being made (no time yet) counts as newest."""
    moment = snapshot.get("SnapshotCreateTime")
    if isinstance(moment, datetime):
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return datetime.max.replace(tzinfo=timezone.utc)


def to_tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    """A dict of tags in the ``[{"Key": ..., "Value": ...}]`` form RDS takes."""
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def copyable_tags(tags: dict[str, str]) -> dict[str, str]:
    """A source's tags that may be copied onto our copy: not AWS's, not ours."""
    return {k: v for k, v in tags.items() if not k.startswith(RESERVED_TAG_PREFIXES)}


def users_of(tags: dict[str, str]) -> list[str]:
    """Operation ids named on a snapshot: its creator and every operation reusing it."""
    named = [tags[OPERATION_TAG]] if tags.get(OPERATION_TAG) else []
    named += [k[len(USED_BY_TAG_PREFIX) :] for k in tags if k.startswith(USED_BY_TAG_PREFIX)]
    return list(dict.fromkeys(named))


def claim_age_seconds(claim: dict[str, Any], now: datetime) -> float:
    """Seconds since the claim was taken (a claim without a readable time counts as old)."""
    try:
        claimed = datetime.fromisoformat(str(claim.get("claimed_at", "")).replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (now - claimed).total_seconds()


def operations_using(store: Store, tags: dict[str, str], *, except_operation: str) -> list[str]:
    """Operations named on the snapshot that may still need it (RUNNING, or unknown here).

    The state table is the truth about who is running; an operation it does not know (another
    stack's, or a record removed by hand) is assumed to be running: not knowing is no licence
    to delete.
    """
    using: list[str] = []
    for operation_id in users_of(tags):
        if operation_id == except_operation:
            continue
        item = store.get_operation(operation_id)
        if item is None or item.get("status") == STATUS_RUNNING:
            using.append(operation_id)
    return using
