"""swap_clusters: put the restored cluster in the target's place (strategy ``swap``).

Runs after the new cluster is available and its users are set up. The start renames the old
target away (after the safety rules, checked again right now). Each check looks at the target,
temporary and retired names and does the next thing once RDS has finished the last: rename the
new cluster in once the old one is renamed away (undoing the first rename if that fails), then
delete the old cluster, instances first. The phases are worked out in ``swapping.py`` beside
this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.poll_loop import PollLoopStep
from dispatcher.registry import RunWhen, register
from steps.swap_clusters.swapping import advance_swap

if TYPE_CHECKING:
    from dispatcher.context import StepContext


@register("swap_clusters", state_name="SwapClusters")
class SwapClusters(PollLoopStep):
    """Rename the old target away so the restored cluster can take its name, then delete the old one."""

    aws_actions = (
        "rds:DescribeDBClusters",
        "rds:DescribeDBInstances",
        "rds:ListTagsForResource",
        "rds:ModifyDBCluster",
        "rds:AddTagsToResource",
        "rds:RemoveTagsFromResource",
        "rds:DeleteDBInstance",
        "rds:DeleteDBCluster",
        "rds:CreateDBClusterSnapshot",
    )
    # After the validation gate: only a copy that passed its checks replaces the target.
    run_after = "run_checks"
    # Only when the restore went beside an existing target; otherwise it already holds the name.
    run_when = RunWhen("NeedsSwap", {"Variable": "$.restore.swap_required", "BooleanEquals": True})
    reads = ("request", "snapshot", "restore")
    result_key = "swap"
    output_doc = "`phase`, `old_cluster_id` (renamed-away id), `complete`, `next_poll_seconds`…"
    check_reads = ("request", "snapshot", "restore", "swap")
    # Renames and deletes as the swap advances; a retried check never repeats an action.
    check_mutating = True
    max_wait_setting = "restore_max_wait_seconds"

    def start(self, ctx: StepContext) -> dict[str, Any]:
        """Start the swap; returns ``phase``, ``old_cluster_id``, ``new_cluster_id`` and the poll fields."""
        return advance_swap(ctx, None)

    def check(self, ctx: StepContext) -> dict[str, Any]:
        """Poll the swap and take its next step once RDS has finished the last one."""
        return advance_swap(ctx, ctx.input("swap"))

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        done = "; ".join(output["actions"])
        waiting = f"waiting for {output['note']}" if output["note"] else "no action"
        return f"{output['phase']}: {done or waiting}"
