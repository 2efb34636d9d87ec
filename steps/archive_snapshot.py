"""archive_snapshot: note where the copy went, keep the newest copies, optionally export to S3.

Runs after the target was refreshed, so it is housekeeping: a copy that cannot be deleted or an
export that cannot start is reported in ``problems`` (and the audit trail) rather than failing a
refresh that succeeded. Retention deletes only snapshots this tool made for this target, never
the copy just used, and never one that a still-RUNNING operation created or is reusing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.aws import error_code, translate
from dispatcher.errors import Retryable
from dispatcher.registry import RunWhen, Step, register
from refresh.errors import UnsafeTarget
from refresh.request import OPERATION_TAG, request_of
from refresh.sources import FROM_SNAPSHOT_RULE
from steps.lib import names
from steps.lib.polling import iso_time
from steps.lib.snapshot_export import check_export_settings
from steps.lib.snapshots import (
    RESTORED_AT_TAG,
    RESTORED_BY_TAG,
    RESTORED_INTO_TAG,
    TARGET_TAG,
    USED_BY_TAG_PREFIX,
    created_at,
    describe_snapshot,
    is_managed_tags,
    iter_snapshots,
    operations_using,
    snapshot_tags,
    target_tag_value,
)

if TYPE_CHECKING:
    from dispatcher.context import StepContext
    from refresh.request import RestoreRequest

DEFAULT_KEEP_COPIES = 3


@register("archive_snapshot", state_name="ArchiveSnapshot")
class ArchiveSnapshot(Step):
    """Tag the copy with where it was restored, apply retention, and start an S3 export if configured."""

    aws_actions = (
        "rds:DescribeDBClusterSnapshots",
        "rds:ListTagsForResource",
        "rds:AddTagsToResource",
        "rds:RemoveTagsFromResource",
        "rds:DeleteDBClusterSnapshot",
        "rds:DescribeExportTasks",
        "rds:StartExportTask",
        "iam:PassRole",
        "kms:DescribeKey",
        "kms:CreateGrant",
        # Copies left in a source account by runs that died are retired there through its role.
        "sts:AssumeRole",
    )
    run_after = "swap_clusters"
    # A clone or a point-in-time restore made no copy: nothing to tag, keep or export.
    run_when = RunWhen("NeedsArchive", FROM_SNAPSHOT_RULE)
    reads = ("request", "copy", "restore", "snapshot")
    result_key = "archive"
    output_doc = (
        "`snapshot`, `restored_into`, `tagged`, `kept`, `deleted`, `skipped` (identifier + reason), "
        "`export` (`task_id`, `status`, `bucket`, `prefix`) or null, `source_account_deleted` (copies "
        "left in the source account by runs that died, now unshared and deleted), `problems` "
        "(housekeeping failures, reported, not raised)"
    )
    mutating = True

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Return the tags written, the copies kept and deleted, any export task and any problems."""
        request = request_of(ctx)
        copy = ctx.input("copy")
        restore = ctx.input("restore")
        rds = ctx.aws("rds", request.target_region)
        output: dict[str, Any] = {
            "snapshot": copy["identifier"],
            "restored_into": request.target_cluster_id,
            "tagged": False,
            "kept": [],
            "deleted": [],
            "skipped": [],
            "export": None,
            "source_account_deleted": [],
            "problems": [],
        }
        if copy.get("copied"):
            output["tagged"] = self._tag_copy(ctx, rds, request, str(copy["identifier"]))
        self._apply_retention(ctx, rds, request, str(copy["identifier"]), output)
        # $.snapshot is there on every path; a direct call (tests, tools) may leave it out.
        snapshot = ctx.event.get("snapshot")
        self._retire_source_leftovers(ctx, request, snapshot if isinstance(snapshot, dict) else {}, output)
        if ctx.settings.export_bucket:
            output["export"] = self._export(ctx, rds, request, copy, output)
        ctx.log.info(
            "archive done",
            restored_cluster=restore.get("cluster_id"),
            kept=len(output["kept"]),
            deleted=len(output["deleted"]),
            problems=len(output["problems"]),
        )
        return output

    # -- tagging ---------------------------------------------------------------------------------------

    def _tag_copy(self, ctx: StepContext, rds: Any, request: RestoreRequest, identifier: str) -> bool:
        """Write restored-into/at/by once per operation; drop our used-by mark, the restore is done."""
        snapshot = describe_snapshot(rds, identifier)
        if snapshot is None:
            return False
        tags = snapshot_tags(rds, snapshot)
        if not is_managed_tags(tags):
            return False
        arn = snapshot["DBClusterSnapshotArn"]
        written = False
        if tags.get(RESTORED_BY_TAG) != request.operation_id:
            rds.add_tags_to_resource(
                ResourceName=arn,
                Tags=[
                    {"Key": RESTORED_INTO_TAG, "Value": request.target_cluster_id},
                    {"Key": RESTORED_AT_TAG, "Value": iso_time(ctx.clock())},
                    {"Key": RESTORED_BY_TAG, "Value": request.operation_id},
                ],
            )
            written = True
        used_by = USED_BY_TAG_PREFIX + request.operation_id
        if used_by in tags:
            rds.remove_tags_from_resource(ResourceName=arn, TagKeys=[used_by])
        return written

    # -- retention -------------------------------------------------------------------------------------

    def _retire_source_leftovers(
        self, ctx: StepContext, request: RestoreRequest, snapshot: dict[str, Any], output: dict[str, Any]
    ) -> None:
        """Copies an earlier run left shared in the source account (it died before retiring them):
        unshared and deleted, unless their operation may still be running."""
        share = snapshot.get("source_share")
        if not isinstance(share, dict):
            return
        from refresh.source_accounts import assume, leftover_copies, retire_shared_copy

        region = request.source_region
        try:
            rds = assume(ctx, share["account"], region)("rds", region)
            for copy_id, owner in leftover_copies(
                rds, share["target_account"], except_operation=request.operation_id
            ):
                if operations_using(ctx.store, {OPERATION_TAG: owner}, except_operation=request.operation_id):
                    output["skipped"].append(
                        {"identifier": copy_id, "reason": f"operation {owner} may still run"}
                    )
                    continue
                retire_shared_copy(
                    ctx, share=share, copy_id=copy_id, region=region, operation_id=owner, rds=rds
                )
                output["source_account_deleted"].append(copy_id)
                ctx.store.audit(
                    request.operation_id,
                    "source_snapshot_share_retired",
                    step=self.name,
                    account=share["account"],
                    copy_id=copy_id,
                    left_by=owner,
                )
        except Exception as exc:  # housekeeping: reported, never failing a refresh that succeeded
            self._problem(ctx, output, f"could not retire old copies in account {share['account']}", exc)

    def _apply_retention(
        self, ctx: StepContext, rds: Any, request: RestoreRequest, used: str, output: dict[str, Any]
    ) -> None:
        """Keep the newest ``keep_copies`` copies made for this target; delete the older ones."""
        keep = int(request.retention.get("keep_copies", DEFAULT_KEEP_COPIES))
        target = target_tag_value(request.target_region, request.target_cluster_id)
        ours: list[tuple[dict[str, Any], dict[str, str]]] = []
        for snapshot in iter_snapshots(rds, SnapshotType="manual"):
            tags = snapshot_tags(rds, snapshot)
            if is_managed_tags(tags) and tags.get(TARGET_TAG) == target:
                ours.append((snapshot, tags))
        ours.sort(key=lambda item: created_at(item[0]), reverse=True)
        for index, (snapshot, tags) in enumerate(ours):
            identifier = snapshot["DBClusterSnapshotIdentifier"]
            reason = self._reason_to_keep(ctx, request, snapshot, tags, used, index, keep)
            if reason == "newest":
                output["kept"].append(identifier)
            elif reason:
                output["skipped"].append({"identifier": identifier, "reason": reason})
            else:
                self._delete(ctx, rds, request, snapshot, tags, output)

    @staticmethod
    def _reason_to_keep(
        ctx: StepContext,
        request: RestoreRequest,
        snapshot: dict[str, Any],
        tags: dict[str, str],
        used: str,
        index: int,
        keep: int,
    ) -> str | None:
        """Why a copy stays ("newest" for the ones retention keeps), or None to delete it."""
        if index < keep:
            return "newest"
        if snapshot["DBClusterSnapshotIdentifier"] == used:
            return "the copy this operation restored from"
        if snapshot.get("Status") != "available":
            return f"status {snapshot.get('Status')}"
        using = operations_using(ctx.store, tags, except_operation=request.operation_id)
        if using:
            return "in use by operation(s) still running or unknown to this stack: " + ", ".join(using)
        return None

    def _delete(
        self,
        ctx: StepContext,
        rds: Any,
        request: RestoreRequest,
        snapshot: dict[str, Any],
        tags: dict[str, str],
        output: dict[str, Any],
    ) -> None:
        identifier = snapshot["DBClusterSnapshotIdentifier"]
        if not is_managed_tags(tags) or not tags.get(OPERATION_TAG):
            # Unreachable by construction; the last guard before a delete stays anyway.
            raise UnsafeTarget(
                f"snapshot {identifier} was not made by aurora-restore; retention never deletes it",
                snapshot_id=identifier,
                rule="managed-or-allowed",
            )
        try:
            rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=identifier)
        except rds.exceptions.DBClusterSnapshotNotFoundFault:
            return  # gone already: nothing left to do
        except rds.exceptions.ClientError as exc:
            self._problem(ctx, output, f"could not delete old copy {identifier}", exc)
            return
        output["deleted"].append(identifier)
        ctx.store.audit(
            request.operation_id,
            "snapshot_copy_deleted",
            step=self.name,
            copy_id=identifier,
            region=request.target_region,
            made_by=tags.get(OPERATION_TAG),
            reason=f"retention keeps the newest {request.retention.get('keep_copies', DEFAULT_KEEP_COPIES)}",
        )

    # -- export ----------------------------------------------------------------------------------------

    def _export(
        self,
        ctx: StepContext,
        rds: Any,
        request: RestoreRequest,
        copy: dict[str, Any],
        output: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Start (or find) this operation's export of the snapshot it restored from."""
        settings = ctx.settings
        check_export_settings(settings)
        task_id = export_task_id(request.operation_id)
        prefix = f"aurora-restore/{request.target_cluster_id.lower()}/{request.operation_id}"
        task = find_export_task(rds, task_id)
        if task is None:
            try:
                task = rds.start_export_task(
                    ExportTaskIdentifier=task_id,
                    SourceArn=copy["arn"],
                    S3BucketName=settings.export_bucket,
                    S3Prefix=prefix,
                    IamRoleArn=settings.export_role_arn,
                    KmsKeyId=settings.export_kms_key_id,
                )
            except rds.exceptions.ClientError as exc:
                if error_code(exc) in ("ExportTaskAlreadyExistsFault", "ExportTaskAlreadyExists"):
                    task = find_export_task(rds, task_id)
                if task is None:
                    self._problem(ctx, output, f"could not start the export of {copy['identifier']}", exc)
                    return None
            else:
                ctx.store.audit(
                    request.operation_id,
                    "snapshot_export_started",
                    step=self.name,
                    export_task_id=task_id,
                    source=copy["arn"],
                    bucket=settings.export_bucket,
                    prefix=prefix,
                )
        if task.get("SourceArn") != copy["arn"]:
            output["problems"].append(
                f"export task {task_id} exists for {task.get('SourceArn')}, not {copy['arn']}; left alone"
            )
            return None
        return {
            "task_id": task_id,
            "status": task.get("Status"),
            "bucket": task.get("S3Bucket", settings.export_bucket),
            "prefix": task.get("S3Prefix", prefix),
        }

    def _problem(self, ctx: StepContext, output: dict[str, Any], what: str, exc: Exception) -> None:
        """Record a housekeeping failure; transient ones are raised so the state is retried."""
        error = translate(exc)
        if isinstance(error, Retryable):
            raise error from exc
        text = f"{what}: {error}"
        output["problems"].append(text)
        ctx.log.warning("archive problem", problem=text)
        ctx.store.audit(ctx.operation_id, "archive_problem", step=self.name, problem=text)

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        text = f"kept {len(output['kept'])}, deleted {len(output['deleted'])}"
        if output.get("export"):
            text += f", export {output['export']['task_id']} {output['export']['status']}"
        if output.get("problems"):
            text += f", {len(output['problems'])} problem(s)"
        return text


def export_task_id(operation_id: str) -> str:
    """The export task of an operation: deterministic, so a retry finds it."""
    return "ar-export-" + names.short_hash(operation_id, length=12)


def find_export_task(rds: Any, task_id: str) -> dict[str, Any] | None:
    """The export task ``task_id``, or None."""
    try:
        tasks = rds.describe_export_tasks(ExportTaskIdentifier=task_id).get("ExportTasks", [])
    except rds.exceptions.ClientError as exc:
        if error_code(exc) in ("ExportTaskNotFoundFault", "ExportTaskNotFound"):
            return None
        raise
    return tasks[0] if tasks else None
