"""delete_target: the delete-first strategy's first move, deleting the target before the restore.

For accounts that cannot hold two clusters at once. The safety rules are applied right before
anything is deleted; the instances go first, then the cluster, with a final snapshot unless the
request says ``skip_final_snapshot``. check_delete_status then waits until the name is free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.registry import Step, register
from steps.lib.delete_first import advance_delete

if TYPE_CHECKING:
    from dispatcher.context import StepContext


@register("delete_target", state_name="DeleteRDS")
class DeleteTarget(Step):
    """Delete the target's instances, then the target (final snapshot unless skipped)."""

    reads = ("request", "snapshot")
    result_key = "delete"
    outputs = ("complete", "next_poll_seconds")
    mutating = True

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Start deleting the target (already deleting or gone is fine) and report the poll fields."""
        snapshot = ctx.input("snapshot")
        source = {
            "source_cluster_id": snapshot.get("source_cluster_id"),
            "source_region": snapshot.get("source_region"),
        }
        return advance_delete(ctx, None, source=source)

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        return (
            f"{output['cluster_id']}: {output['phase']}, instances deleted: "
            f"{', '.join(output['instances_deleted']) or 'none'}"
        )
