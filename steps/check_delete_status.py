"""check_delete_status: wait until the deleted target is gone, so its name can be restored into.

RDS may refuse the cluster's deletion while its instances are still on their way out; this poll
asks again (after the safety rules, again) until the cluster is deleting, then until it is gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.registry import Step, register
from steps.lib.delete_first import advance_delete

if TYPE_CHECKING:
    from dispatcher.context import StepContext


@register("check_delete_status", state_name="CheckDeleteStatus")
class CheckDeleteStatus(Step):
    """Poll the target's deletion; finish deleting the cluster once its instances allow it."""

    reads = ("request", "delete")
    result_key = "delete"
    outputs = ("complete", "next_poll_seconds")
    # Re-issues the cluster's deletion when RDS refused it while instances were still deleting.
    mutating = True

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Return the delete output updated; ``complete`` once the target no longer exists."""
        delete = ctx.input("delete")
        source = {
            "source_cluster_id": delete.get("source_cluster_id"),
            "source_region": delete.get("source_region"),
        }
        return advance_delete(ctx, delete, source=source)

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        return f"{output['cluster_id']}: {output['phase']}, complete={output['complete']}"
