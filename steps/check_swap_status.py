"""check_swap_status: follow the swap through its renames and the old cluster's deletion.

Each poll looks at the target, temporary and retired names and does the next thing once RDS has
finished the last: rename the new cluster in once the old one is renamed away (undoing the first
rename if that fails), then delete the old cluster, instances first. See ``steps/lib/swapping.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.registry import Step, register
from steps.lib.swapping import advance_swap

if TYPE_CHECKING:
    from dispatcher.context import StepContext


@register("check_swap_status", state_name="CheckSwapStatus")
class CheckSwapStatus(Step):
    """Poll the swap and take its next step once RDS has finished the last one."""

    reads = ("request", "snapshot", "restore", "swap")
    result_key = "swap"
    outputs = ("complete", "next_poll_seconds")
    # Renames and deletes as the swap advances; a retried poll never repeats an action.
    mutating = True

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Return the swap output updated; ``complete`` once the old cluster is gone."""
        return advance_swap(ctx, ctx.input("swap"))

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        done = "; ".join(output["actions"])
        waiting = f"waiting for {output['note']}" if output["note"] else "no action"
        return f"{output['phase']}: {done or waiting}"
