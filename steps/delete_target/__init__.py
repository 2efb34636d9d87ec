"""delete_target: the delete-first strategy's loop, deleting the target before the restore.

For accounts that cannot hold two clusters at once. The safety rules are applied right before
anything is deleted; the instances go first, then the cluster, with a final snapshot unless the
request says ``skip_final_snapshot``. The check then waits until the name is free: RDS may refuse
the cluster's deletion while its instances are still on their way out, so each check asks again
(after the safety rules, again) until the cluster is deleting, then until it is gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.poll_loop import PollLoopStep
from dispatcher.registry import RunWhen, register
from steps.delete_target.deleting import advance_delete

if TYPE_CHECKING:
    from dispatcher.context import StepContext


@register("delete_target")
class DeleteTarget(PollLoopStep):
    """Delete the target's instances, then the target (final snapshot unless skipped)."""

    aws_actions = (
        "rds:DescribeDBClusters",
        "rds:DescribeDBInstances",
        "rds:ListTagsForResource",
        "rds:DeleteDBInstance",
        "rds:DeleteDBCluster",
        "rds:CreateDBClusterSnapshot",
        "rds:ModifyDBCluster",
        "rds:AddTagsToResource",
    )
    run_after = "retire_source_share"
    # Only for accounts that cannot hold two clusters: swap (the default) restores beside the target.
    run_when = RunWhen(
        "ChooseStrategy",
        {
            "And": [
                {"Variable": "$.request.strategy", "StringEquals": "delete-first"},
                {"Variable": "$.snapshot.target.exists", "BooleanEquals": True},
            ]
        },
    )
    reads = ("request", "snapshot")
    result_key = "delete"
    output_doc = (
        "`cluster_id`, `instances_deleted`, `complete`, `next_poll_seconds`, `fallback_seconds`, `polls`, "
        "`started_at`"
    )
    check_reads = ("request", "delete")
    # RDS events about these (SourceIdentifier) end the wait early.
    awaited_fields = ("cluster_id", "final_snapshot_id")
    # The check re-issues the cluster's deletion when RDS refused it while instances were deleting.
    check_mutating = True
    max_wait_setting = "restore_max_wait_seconds"

    def start(self, ctx: StepContext) -> dict[str, Any]:
        """Start deleting the target (already deleting or gone is fine) and report the poll fields."""
        snapshot = ctx.input("snapshot")
        return advance_delete(ctx, None, source=_source(snapshot))

    def check(self, ctx: StepContext) -> dict[str, Any]:
        """Poll the target's deletion; finish deleting the cluster once its instances allow it."""
        delete = ctx.input("delete")
        return advance_delete(ctx, delete, source=_source(delete))

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        deleted = ", ".join(output.get("instances_deleted") or []) or "none"
        return (
            f"{output['cluster_id']}: {output['phase']}, complete={output['complete']}, "
            f"instances deleted: {deleted}"
        )


def _source(output: dict[str, Any]) -> dict[str, Any]:
    """Where the snapshot came from, carried through the loop for the final snapshot's tags."""
    return {
        "source_cluster_id": output.get("source_cluster_id"),
        "source_region": output.get("source_region"),
    }
