"""What the failure handler undoes after a failed run: a half-done swap, the temporary cluster.

``cleanup_after_failure`` receives the whole execution data, which may stop at any state (or be
missing keys altogether), and reads it defensively. It puts a renamed-away target back under its
name when the name is free, then removes the cluster this operation restored beside the target:
only one tagged with this operation's id, never one under the target's name, and never one the
safety rules protect. It never raises: each line it returns says what it did or why it did not,
for the failure notification. Running it again does nothing more.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from dispatcher.aws import translate
from dispatcher.errors import ValidationError
from refresh.errors import UnsafeTarget
from refresh.request import RestoreRequest
from refresh.safety import describe_cluster, ensure_replaceable
from steps.lib import names
from steps.lib.clusters import (
    delete_cluster_and_instances,
    is_renaming,
    made_by,
    rename_back,
    retired_by,
    same_id,
    status_of,
)
from steps.lib.snapshots import describe_snapshot

if TYPE_CHECKING:
    from dispatcher.context import StepContext


def cleanup_after_failure(ctx: StepContext, data: dict[str, Any]) -> list[str]:
    """Undo what a failed run left behind; return one human-readable line per thing done or left.

    ``data`` is the execution's data (``$``): ``request``, ``snapshot``, ``restore``, ``swap``...
    any of them possibly missing. An empty list means there was nothing to clean up.
    """
    request = _request_of(ctx, data)
    if request is None:
        return []
    local = dataclasses.replace(ctx, request=request, operation_id=request.operation_id)
    snapshot = _section(data, "snapshot")
    source = {
        "source_cluster_id": snapshot.get("source_cluster_id"),
        "source_region": snapshot.get("source_region"),
    }
    lines: list[str] = []
    for undo in (_put_old_target_back, _remove_temporary_clusters, _retire_source_share):
        try:
            lines.extend(undo(local, request, data, source))
        except Exception as exc:  # The failure must still be reported: say what could not be done.
            error = translate(exc)
            lines.append(f"clean-up stopped in {request.target_region}: {type(error).__name__}: {error}")
            local.log.error("clean-up step failed", error=str(error))
    return lines


def _retire_source_share(
    ctx: StepContext, request: RestoreRequest, data: dict[str, Any], source: dict[str, Any]
) -> list[str]:
    """The copy made in another account and shared with this one: unshared and deleted, as the
    refresh would have once its own copy was done (a retry makes it again)."""
    snapshot = _section(data, "snapshot")
    share, copy = snapshot.get("source_share"), snapshot.get("shared_copy")
    if not isinstance(share, dict) or not isinstance(copy, dict) or _section(data, "source_share"):
        return []
    from refresh.source_accounts import retire_shared_copy

    result = retire_shared_copy(
        ctx, share=share, copy_id=str(copy["identifier"]), region=request.source_region
    )
    if not result["deleted"]:
        return [
            f"copy {result['copy_id']} in account {result['account']} is not this operation's; left alone"
        ]
    if not result["unshared"] and not result.get("existed", True):
        return []  # nothing there any more: an earlier run (or RetireSourceShare) retired it
    done = "unshared and deleted" if result["unshared"] else "deleted"
    return [f"copy {result['copy_id']} in account {result['account']} {done}"]


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    """An earlier state's output, or an empty dict when the run never got there."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _request_of(ctx: StepContext, data: dict[str, Any]) -> RestoreRequest | None:
    """The validated request from the data, else the context's; None when there is none."""
    raw = data.get("request") if isinstance(data, dict) else None
    if isinstance(raw, dict):
        try:
            return RestoreRequest.from_event(raw)
        except ValidationError:
            return ctx.request
    return ctx.request


def _put_old_target_back(
    ctx: StepContext, request: RestoreRequest, data: dict[str, Any], source: dict[str, Any]
) -> list[str]:
    """A swap stopped between its renames: rename the old target back while its name is free."""
    rds = ctx.aws("rds", request.target_region)
    target_id = request.target_cluster_id
    retired_id = names.retired_cluster_id(target_id, request.operation_id)
    retired = describe_cluster(rds, retired_id)
    if retired is None or not retired_by(retired, request.operation_id):
        return []
    target = describe_cluster(rds, target_id)
    if target is not None:
        if made_by(target, request.operation_id):
            return [
                f"the restored cluster already holds the name {target_id}; the old target was kept as "
                f"{retired_id}: delete it when it is no longer needed"
            ]
        return [
            f"the old target stays as {retired_id}: {target_id} is held by another cluster; "
            "sort the names out by hand"
        ]
    status = status_of(retired)
    if is_renaming(retired) or status != "available":
        return [
            f"the old target {retired_id} is {status or 'busy'}; rename it back to {target_id} "
            "once it is available"
        ]
    rename_back(ctx, rds, retired, target_id, region=request.target_region)
    return [f"renamed the old target {retired_id} back to {target_id}"]


def _remove_temporary_clusters(
    ctx: StepContext, request: RestoreRequest, data: dict[str, Any], source: dict[str, Any]
) -> list[str]:
    """Delete the cluster restored beside the target (no final snapshot: it never served anyone)."""
    rds = ctx.aws("rds", request.target_region)
    target_id = request.target_cluster_id
    restore = _section(data, "restore")
    candidates = [names.temporary_cluster_id(target_id, request.operation_id)]
    restored_id = restore.get("cluster_id")
    if isinstance(restored_id, str) and restored_id and not any(same_id(restored_id, c) for c in candidates):
        candidates.append(restored_id)

    lines: list[str] = []
    for cluster_id in candidates:
        cluster = describe_cluster(rds, cluster_id)
        if cluster is None:
            continue
        if same_id(cluster_id, target_id):
            if made_by(cluster, request.operation_id):
                lines.append(f"kept the restored cluster {target_id}: it holds the target's name")
            continue
        if not made_by(cluster, request.operation_id):
            lines.append(f"left {cluster_id} alone: operation {request.operation_id} did not make it")
            continue
        if status_of(cluster) == "deleting":
            lines.append(f"the temporary cluster {cluster_id} is already being deleted")
            continue
        if is_renaming(cluster):
            lines.append(f"left the temporary cluster {cluster_id} alone: it is being renamed")
            continue
        if request.keep_failed_restore and failed_checks(data):
            lines.append(_keep_failed_restore(rds, cluster, request))
            continue
        try:
            cluster = ensure_replaceable(ctx, cluster_id, source=source)
        except UnsafeTarget as refusal:
            lines.append(f"left the temporary cluster {cluster_id} alone: {refusal.message}")
            continue
        if cluster is None:
            continue
        done = delete_cluster_and_instances(
            ctx, rds, cluster, final_snapshot_id=None, region=request.target_region
        )
        lines.extend(
            f"deleted instance {i} of the temporary cluster {cluster_id}" for i in done["instances_deleted"]
        )
        if done["cluster_deleting"]:
            lines.append(f"deleting the temporary cluster {cluster_id} (no final snapshot: it never served)")
        else:
            lines.append(
                f"could not delete the temporary cluster {cluster_id} yet: RDS refused while its instances "
                "settle; delete it by hand"
            )
    return lines


#: The tag a restore kept after failing its checks carries (its value says why and when).
KEPT_TAG = "aurora-restore:kept-after-failed-checks"


def failed_checks(data: dict[str, Any]) -> bool:
    """True when the run failed at the validation gate (the error Step Functions caught)."""
    error = data.get("error") if isinstance(data, dict) else None
    return isinstance(error, dict) and error.get("Error") == "ChecksFailed"


def _keep_failed_restore(rds: Any, cluster: dict[str, Any], request: RestoreRequest) -> str:
    """Tag the restored cluster that failed its checks and leave it for the operator to look at.

    Only after failed checks: by then setup_db_users has reset the master password, so the kept
    copy no longer opens with production's credentials. Tagging again changes nothing.
    """
    cluster_id = cluster["DBClusterIdentifier"]
    rds.add_tags_to_resource(
        ResourceName=cluster["DBClusterArn"],
        Tags=[{"Key": KEPT_TAG, "Value": f"operation {request.operation_id}: checks failed"}],
    )
    return (
        f"kept the restored cluster {cluster_id} (keep_failed_restore), tagged {KEPT_TAG}: it failed its "
        "checks and never replaced the target; delete it when it is no longer needed"
    )


def describe_delete_first(
    ctx: StepContext, request: RestoreRequest, trail: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Under delete-first, what the operation destroyed, what it kept and what is left of the target.

    The delete-first strategy destroys the target before the restore, so a failure after that
    leaves the environment without its database: the failure notification must say so plainly.
    What was deleted comes from the audit trail (every deletion is audited), the rest from RDS as
    it is now. Returns None when nothing of the target was deleted.
    """
    target_id = request.target_cluster_id
    instances = [
        str(event.get("instance_id"))
        for event in trail
        if event.get("event") == "instance_deleted" and same_id(event.get("cluster_id"), target_id)
    ]
    cluster_deleted = any(
        event.get("event") == "cluster_delete_started" and same_id(event.get("cluster_id"), target_id)
        for event in trail
    )
    if not instances and not cluster_deleted:
        return None
    rds = ctx.aws("rds", request.target_region)
    deleted = [f"instance {i} of {target_id}" for i in dict.fromkeys(instances)]
    if cluster_deleted:
        deleted.append(f"the cluster {target_id}")

    final_id = (
        None if request.skip_final_snapshot else names.final_snapshot_id(target_id, request.operation_id)
    )
    if final_id is None:
        kept = "nothing: the request set skip_final_snapshot, so no final snapshot was taken"
    elif not cluster_deleted:
        kept = f"no final snapshot yet ({final_id} is taken only when the cluster itself is deleted)"
    else:
        snapshot = describe_snapshot(rds, final_id)
        kept = (
            f"the final snapshot {final_id} ({snapshot.get('Status')})"
            if snapshot is not None
            else f"the final snapshot {final_id} is not (or no longer) in {request.target_region}"
        )

    now = describe_cluster(rds, target_id)
    if now is None:
        remains = (
            f"no cluster is named {target_id} now: the environment has no database until a retry succeeds"
        )
        if final_id and cluster_deleted:
            remains += f" or {final_id} is restored by hand"
    else:
        members = [m.get("DBInstanceIdentifier") for m in now.get("DBClusterMembers") or []]
        whose = (
            "this operation's restored cluster" if made_by(now, request.operation_id) else "the old target"
        )
        status = status_of(now) or "unknown"
        if members:
            remains = f"{target_id} is {whose} ({status}) with instances {', '.join(map(str, members))}"
        else:
            remains = (
                f"{target_id} is {whose} ({status}) with no instances: nothing can connect to it "
                "(retry the operation, or restore the final snapshot by hand: see the runbook)"
            )
    summary = f"deleted {'; '.join(deleted)}. Kept: {kept}. Left: {remains}."
    return {
        "deleted": deleted,
        "final_snapshot_id": final_id if cluster_deleted else None,
        "kept": kept,
        "remains": remains,
        "summary": summary,
    }
