"""retire_source_share: once this account has its own copy, unshare and delete the one in the source account.

Runs only when the snapshot came from another account (``$.snapshot.source_share_required``). The
copy made there by ShareSourceSnapshot has served its purpose once CopySnapshot's copy here is
available: it is unshared first (so nothing stays readable by this account even if the deletion
fails), then deleted. The source snapshot itself was never changed. Both calls are idempotent: a
copy already unshared or gone is done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.aws import error_code
from dispatcher.registry import RunWhen, Step, register
from refresh.request import OPERATION_TAG, request_of
from refresh.source_accounts import assume, restore_accounts
from steps.lib.snapshots import describe_snapshot, snapshot_tags

if TYPE_CHECKING:
    from dispatcher.context import StepContext


@register("retire_source_share", state_name="RetireSourceShare")
class RetireSourceShare(Step):
    """Unshare and delete the copy made in the source account, now that this account has its own."""

    aws_actions = ("sts:AssumeRole",)
    run_after = "copy_snapshot"
    run_when = RunWhen(
        "SharedFromSourceAccount", {"Variable": "$.snapshot.source_share_required", "BooleanEquals": True}
    )
    reads = ("request", "snapshot", "copy")
    result_key = "source_share"
    output_doc = "`account`, `copy_id`, `unshared`, `deleted` (the copy in the source account)"
    outputs = ("deleted",)
    mutating = True

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Unshare, then delete, this operation's copy in the source account."""
        request = request_of(ctx)
        snapshot = ctx.input("snapshot")
        share = snapshot["source_share"]
        copy_id = str(snapshot["shared_copy"]["identifier"])
        region = request.source_region
        rds = assume(ctx, share["account"], region)("rds", region)
        found = describe_snapshot(rds, copy_id)
        unshared = deleted = False
        if found is not None:
            if snapshot_tags(rds, found).get(OPERATION_TAG) != request.operation_id:
                # Never touch a snapshot this operation did not make.
                ctx.log.warning("source-account copy not ours; left alone", copy_id=copy_id)
                return {"account": share["account"], "copy_id": copy_id, "unshared": False, "deleted": False}
            if share["target_account"] in restore_accounts(rds, copy_id):
                rds.modify_db_cluster_snapshot_attribute(
                    DBClusterSnapshotIdentifier=copy_id,
                    AttributeName="restore",
                    ValuesToRemove=[share["target_account"]],
                )
                unshared = True
            try:
                rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=copy_id)
            except rds.exceptions.ClientError as exc:
                if error_code(exc) != "DBClusterSnapshotNotFoundFault":
                    raise
        deleted = True
        ctx.store.audit(
            request.operation_id,
            "source_snapshot_share_retired",
            step=self.name,
            account=share["account"],
            copy_id=copy_id,
        )
        return {"account": share["account"], "copy_id": copy_id, "unshared": unshared, "deleted": deleted}

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        return f"{output['copy_id']} in account {output['account']} unshared and deleted"
