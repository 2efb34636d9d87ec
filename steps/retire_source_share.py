"""retire_source_share: once this account has its own copy, unshare and delete the one in the source account.

Runs only when the snapshot came from another account (``$.snapshot.source_share_required``). The
copy made there by ShareSourceSnapshot has served its purpose once CopySnapshot's copy here is
available: it is unshared first (so nothing stays readable by this account even if the deletion
fails), then deleted. The source snapshot itself was never changed. Both calls are idempotent: a
copy already unshared or gone is done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.registry import RunWhen, Step, register
from refresh.request import request_of
from refresh.source_accounts import retire_shared_copy

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
    # Placed after the copy loop, so this account's copy is complete; it needs only the share.
    reads = ("request", "snapshot")
    result_key = "source_share"
    output_doc = "`account`, `copy_id`, `unshared`, `deleted`, `existed` (the copy in the source account)"
    outputs = ("deleted",)
    mutating = True

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Unshare, then delete, this operation's copy in the source account."""
        request = request_of(ctx)
        snapshot = ctx.input("snapshot")
        copy_id = str(snapshot["shared_copy"]["identifier"])
        result = retire_shared_copy(
            ctx, share=snapshot["source_share"], copy_id=copy_id, region=request.source_region
        )
        ctx.store.audit(
            request.operation_id,
            "source_snapshot_share_retired",
            step=self.name,
            account=result["account"],
            copy_id=copy_id,
            deleted=result["deleted"],
        )
        return result

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        return f"{output['copy_id']} in account {output['account']} unshared and deleted"
