"""swap_clusters: start putting the restored cluster in the target's place (strategy ``swap``).

Runs after the new cluster is available and its users are set up. It renames the old target
away (after the safety rules, checked again right now); check_swap_status takes it from there:
the new cluster takes the name, then the old one is deleted. See ``steps/lib/swapping.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.registry import Step, register
from steps.lib.swapping import advance_swap

if TYPE_CHECKING:
    from dispatcher.context import StepContext


@register("swap_clusters", state_name="SwapClusters")
class SwapClusters(Step):
    """Rename the old target away so the restored cluster can take its name."""

    reads = ("request", "snapshot", "restore")
    result_key = "swap"
    outputs = ("complete", "next_poll_seconds")
    mutating = True

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Start the swap; returns ``phase``, ``old_cluster_id``, ``new_cluster_id`` and the poll fields."""
        return advance_swap(ctx, None)

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        done = "; ".join(output["actions"])
        waiting = f"waiting for {output['note']}" if output["note"] else "no action"
        return f"{output['phase']}: {done or waiting}"
