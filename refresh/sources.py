"""Refreshing from a live cluster instead of a snapshot: a copy-on-write clone or a point in time.

``snapshot_id`` names the source in one of these forms besides the snapshot ones:

- ``clone:<cluster-id>``: a copy-on-write clone of the cluster as it is now
  (``RestoreDBClusterToPointInTime`` with ``RestoreType=copy-on-write`` and
  ``UseLatestRestorableTime``). It shares the source's storage pages until either side writes,
  so it takes minutes whatever the size; it lives in the source's region and account and keeps the
  source's KMS key.
- ``pitr:<cluster-id>@<time>``: a full copy of the cluster as of ``<time>``, an ISO 8601 UTC
  timestamp (``2026-11-20T02:00:00Z``) or ``latest`` (``RestoreType=full-copy`` with
  ``RestoreToTime`` or ``UseLatestRestorableTime``), anywhere in the backup retention window.

Neither needs a snapshot, a copy or an archive. What AWS refuses is refused here first, before
anything changes: a source in another region or account, a source that is not ``available``, one
clone too many, a KMS key other than the source's for a clone, a time outside the restorable
window. The parsing is pure (ValidateRequest); the rules take descriptions that SnapshotCheck
reads from RDS.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from dispatcher.errors import ValidationError

#: The kinds of source ``SnapshotRef.kind`` takes for a live cluster.
CLUSTER_KINDS = ("clone", "pitr")
CLONE_PREFIX = "clone:"
PITR_PREFIX = "pitr:"
LATEST = "latest"
#: RestoreType for each kind.
RESTORE_TYPES = {"clone": "copy-on-write", "pitr": "full-copy"}
#: Copy-on-write clones allowed on one source's storage, clones of clones included. The Aurora user
#: guide's "Limitations" of cloning long read "up to 15 clones based on a copy ... After that, only
#: copies can be created" (AuroraMySQL.Managing.Clone.html); the current page allows clones up to
#: the region's DB cluster quota, "using copy-on-write or full-copy protocol". A full copy takes as
#: long as a point-in-time restore, so the 16th is refused, saying so, rather than risk a
#: minutes-long clone turning into an hours-long copy. RDS shows the family as one CloneGroupId.
MAX_CLONES_PER_SOURCE = 15

#: The Choice rule of the steps only a snapshot needs (its copy and its archive): a live cluster
#: takes the short path past them.
FROM_SNAPSHOT_RULE: dict[str, Any] = {"Variable": "$.snapshot.source_kind", "StringEquals": "snapshot"}
#: What ``$.copy`` holds when there was nothing to copy (the restore reads it on both paths).
NO_COPY_OUTPUT: dict[str, Any] = {
    "copied": False,
    "complete": True,
    "reason": "the source is a live cluster (clone: or pitr:): nothing to copy",
}

#: The forms a source may take, for every error message about snapshot_id.
FORMS = (
    "a cluster snapshot identifier, a cluster-snapshot ARN (arn:aws:rds:<region>:<account>:"
    "cluster-snapshot:<id>), latest:<source-cluster-id> (its newest snapshot), "
    "clone:<source-cluster-id> (a copy-on-write clone, same region) or "
    "pitr:<source-cluster-id>@<time> (a point-in-time restore, same region; <time> is an ISO 8601 "
    "UTC timestamp such as 2026-11-20T02:00:00Z, or latest)"
)
_CLUSTER_ID = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|-(?!-)){0,62}(?<!-)")
#: UTC only: a restore time in another zone is easy to misread by hours.
_UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|\+00:00)")


def is_cluster_source(value: str) -> bool:
    """True when ``snapshot_id`` names a live cluster (``clone:`` or ``pitr:``)."""
    return value.startswith((CLONE_PREFIX, PITR_PREFIX))


def parse_cluster_source(value: str) -> tuple[str, str, str]:
    """``(kind, cluster_id, restore_to)`` of ``clone:<id>`` or ``pitr:<id>@<time>``.

    ``restore_to`` is ``latest`` for a clone and for ``@latest``, else the time as ISO 8601 UTC
    (``2026-11-20T02:00:00+00:00``). Raises ``ValidationError`` naming the forms that exist.
    """
    if value.startswith(CLONE_PREFIX):
        cluster_id = value[len(CLONE_PREFIX) :]
        if "@" in cluster_id:
            raise ValidationError(
                "snapshot_id",
                value,
                "a clone is always of the cluster as it is now (copy-on-write, latest restorable time); "
                "for an earlier time use pitr:<source-cluster-id>@<time>",
            )
        _check_cluster_id(value, cluster_id, "clone:<source-cluster-id>")
        return "clone", cluster_id, LATEST
    cluster_id, at, when = value[len(PITR_PREFIX) :].partition("@")
    _check_cluster_id(value, cluster_id, "pitr:<source-cluster-id>@<time>")
    if not at or not when:
        raise ValidationError(
            "snapshot_id",
            value,
            "pitr: needs a time: pitr:<source-cluster-id>@<time>, where <time> is an ISO 8601 UTC "
            "timestamp such as 2026-11-20T02:00:00Z, or latest",
        )
    if when == LATEST:
        return "pitr", cluster_id, LATEST
    return "pitr", cluster_id, parse_utc(value, when).isoformat()


def _check_cluster_id(value: str, cluster_id: str, form: str) -> None:
    if cluster_id.startswith("arn:"):
        raise ValidationError(
            "snapshot_id",
            value,
            f"{form} takes the id of a cluster in this stack's account and region, not an ARN: a clone "
            "or point-in-time restore is made in the source's own account and region; refresh from "
            "another account or region from a snapshot instead",
        )
    if not _CLUSTER_ID.fullmatch(cluster_id):
        raise ValidationError(
            "snapshot_id",
            value,
            f"{form} needs a cluster id of 1-63 letters, digits or hyphens, starting with a letter, "
            "with no trailing hyphen and no '--'; snapshot_id may be " + FORMS,
        )


def parse_utc(value: str, when: str) -> datetime:
    """The restore time of ``pitr:...@<when>``, timezone-aware UTC."""
    if not _UTC_TIME.fullmatch(when):
        from dispatcher.logs import looks_like_secret

        # Whatever was pasted after '@' is echoed only when it cannot be a password.
        shown = "the time" if looks_like_secret(when) else f"the time {when!r}"
        raise ValidationError(
            "snapshot_id",
            value,
            f"{shown} must be an ISO 8601 UTC timestamp such as 2026-11-20T02:00:00Z "
            "(Z or +00:00; no other zone), or latest",
        )
    try:
        parsed = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            "snapshot_id", value, f"the time {when!r} is not a real date and time (UTC)"
        ) from None
    return parsed.astimezone(timezone.utc)


def check_same_place(
    value: str, cluster_id: str, *, source_region: str, target_region: str, target_cluster_id: str
) -> None:
    """A clone or point-in-time restore is made in the source's region, and never over the source.

    RDS creates the new cluster where the source is (in the caller's account): a target elsewhere
    would need a snapshot copied across, which is what a snapshot_id does.
    """
    if source_region != target_region:
        raise ValidationError(
            "snapshot_id",
            value,
            f"is a cluster in {source_region}, but the target is in {target_region}; a clone or a "
            "point-in-time restore is made in the source's own region: refresh across regions from "
            "a snapshot (latest:<source-cluster-id>) instead",
        )
    if cluster_id.lower() == target_cluster_id.lower():
        raise ValidationError(
            "target_cluster_id",
            target_cluster_id,
            "is the source cluster itself; the target can never be the source",
        )


# -- rules against the source as RDS describes it ------------------------------------------------


def check_source_cluster(value: str, kind: str, cluster: dict[str, Any], *, region: str) -> None:
    """The source cluster can be cloned or restored from: in ``region``, available.

    ``cluster`` is its DescribeDBClusters entry, looked up by id, so in the caller's own account.
    A clone also needs at least one DB instance (Aurora cannot clone a cluster without one).
    """
    parts = str(cluster.get("DBClusterArn") or "").split(":")
    if len(parts) > 3 and parts[3] != region:
        raise ValidationError(
            "snapshot_id", value, f"names a cluster in {parts[3]}; it must be in {region}"
        )
    status = cluster.get("Status")
    if status != "available":
        raise ValidationError(
            "snapshot_id",
            value,
            f"names cluster {cluster.get('DBClusterIdentifier')} in {region}, which is {status}; RDS "
            "clones or restores only an available cluster: start again once it is available",
        )
    if kind == "clone" and not cluster.get("DBClusterMembers"):
        raise ValidationError(
            "snapshot_id",
            value,
            f"names cluster {cluster.get('DBClusterIdentifier')}, which has no DB instance; Aurora clones "
            "only a cluster with at least one instance: use pitr:<source-cluster-id>@latest",
        )


def clones_of(source: dict[str, Any], clusters: list[dict[str, Any]]) -> list[str]:
    """Ids of the clusters sharing the source's storage (its clone group), the source left out.

    RDS gives every member of a copy-on-write family the same ``CloneGroupId``; clones of clones
    included, which count against the same limit.
    """
    group = source.get("CloneGroupId")
    if not group:
        return []
    source_id = str(source.get("DBClusterIdentifier") or "").lower()
    return sorted(
        str(c["DBClusterIdentifier"])
        for c in clusters
        if c.get("CloneGroupId") == group and str(c.get("DBClusterIdentifier") or "").lower() != source_id
    )


def check_clone_quota(value: str, source_id: str, clones: list[str]) -> None:
    """Refuse the clone that would pass :data:`MAX_CLONES_PER_SOURCE` on one source's storage."""
    if len(clones) >= MAX_CLONES_PER_SOURCE:
        shown = ", ".join(clones[:5]) + (f" and {len(clones) - 5} more" if len(clones) > 5 else "")
        raise ValidationError(
            "snapshot_id",
            value,
            f"cluster {source_id} already has {len(clones)} copy-on-write clones ({shown}); Aurora allows "
            f"{MAX_CLONES_PER_SOURCE} per source: delete one, or use pitr:{source_id}@latest (a full copy)",
        )


def check_clone_key(value: str, source_key_arn: str | None, requested_key_arn: str | None) -> None:
    """A clone keeps its source's KMS key: another requested key is refused (both as key ARNs)."""
    if requested_key_arn and requested_key_arn != (source_key_arn or None):
        source = f"KMS key {source_key_arn}" if source_key_arn else "no KMS key (it is not encrypted)"
        raise ValidationError(
            "kms_key_id",
            requested_key_arn,
            f"differs from the source cluster's ({source}); a copy-on-write clone shares the source's "
            "storage and keeps its key: drop kms_key_id, or use pitr:<source-cluster-id>@latest to "
            "re-encrypt a full copy",
        )


def check_restore_window(value: str, restore_to: str, cluster: dict[str, Any]) -> dict[str, str | None]:
    """Refuse a point in time outside the cluster's restorable window; return the window (ISO UTC).

    RDS restores any second from ``EarliestRestorableTime`` (the backup retention period back) to
    ``LatestRestorableTime`` (a few minutes ago, moving forward).
    """
    earliest = _as_utc(cluster.get("EarliestRestorableTime"))
    latest = _as_utc(cluster.get("LatestRestorableTime"))
    window = {
        "earliest": earliest.isoformat() if earliest else None,
        "latest": latest.isoformat() if latest else None,
    }
    if restore_to == LATEST:
        return window
    when = datetime.fromisoformat(restore_to)
    if earliest is None or latest is None or not earliest <= when <= latest:
        shown = f"{window['earliest'] or 'unknown'} .. {window['latest'] or 'unknown'}"
        raise ValidationError(
            "snapshot_id",
            value,
            f"asks for {when.isoformat()}, outside cluster {cluster.get('DBClusterIdentifier')}'s restorable "
            f"window {shown} (UTC; the backup retention period back to a few minutes ago): pick a time "
            "inside it, or latest",
        )
    return window


def _as_utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None
