"""check_copy_status: one look at the copy; the state machine waits ``next_poll_seconds`` between looks.

There is no RDS event for a finished cluster snapshot copy, so it is polled. The wait comes from
the poll policy (``steps.lib.polling``): long while the copy is far from done or queued, short
near the end.

A copy reused from another operation's claim (``status`` ``claimed``) may not exist yet: its
owner is about to start it. Not found is then still queued for ``COPY_CLAIM_GRACE_SECONDS`` after
the claim, and ``CopyFailed`` naming the owner after that. When it appears it is marked as used
by this operation, as ``copy_snapshot`` marks a copy it reuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.errors import CopyFailed
from dispatcher.registry import Step, register
from steps.lib.polling import iso_time, poll_fields
from steps.lib.snapshots import (
    COPY_CLAIM_GRACE_SECONDS,
    USED_BY_TAG_PREFIX,
    claim_age_seconds,
    describe_snapshot,
    snapshot_tags,
)

if TYPE_CHECKING:
    from dispatcher.context import StepContext

#: Statuses after which the copy will never become available.
FAILED_STATUSES = frozenset({"failed", "deleting", "incompatible-restore", "error"})


@register("check_copy_status", state_name="CheckCopyStatus")
class CheckCopyStatus(Step):
    """Look at the copy once: its status, progress, and how long to wait before looking again."""

    reads = ("request", "copy")
    result_key = "copy"
    outputs = ("complete", "next_poll_seconds")
    mutating = False

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Return the copy output updated; ``CopyFailed`` when it failed or vanished,
        ``PollTimeout`` past ``copy_max_wait_seconds``."""
        copy = ctx.input("copy")
        if not copy.get("copied"):
            # The snapshot is used as it is: nothing to wait for.
            return {**copy, "complete": True, "next_poll_seconds": 0}
        identifier = str(copy["identifier"])
        region = str(copy.get("region") or ctx.require_request().target_region)
        whose = f" (the copy made by operation {copy['reused_from']})" if copy.get("reused_from") else ""
        rds = ctx.aws("rds", region)
        found = describe_snapshot(rds, identifier)
        claimed = copy.get("status") == "claimed"
        if found is None and claimed:
            return self._not_made_yet(ctx, copy, identifier, region)
        if found is not None and claimed:
            # Reused before it existed: mark it as used now, so retention keeps it for us.
            used_by = USED_BY_TAG_PREFIX + ctx.operation_id
            if used_by not in snapshot_tags(rds, found):
                rds.add_tags_to_resource(
                    ResourceName=found["DBClusterSnapshotArn"],
                    Tags=[{"Key": used_by, "Value": iso_time(ctx.clock())}],
                )
        if found is None:
            raise CopyFailed(
                f"copy {identifier}{whose} in {region} has vanished while being waited for: someone or "
                "something deleted it; start the refresh again",
                copy_id=identifier,
                region=region,
            )
        status = str(found.get("Status", ""))
        percent = found.get("PercentProgress")
        if status in FAILED_STATUSES:
            raise CopyFailed(
                f"copy {identifier}{whose} in {region} is {status}"
                + (f" at {percent} %" if percent is not None else "")
                + "; look at the RDS events of the snapshot for the reason (often the KMS key), then start "
                "the refresh again",
                copy_id=identifier,
                region=region,
                status=status,
            )
        complete = status == "available"
        percent_progress = 100 if complete else (int(percent) if isinstance(percent, (int, float)) else None)
        return {
            **copy,
            "arn": found.get("DBClusterSnapshotArn") or copy.get("arn"),
            "status": status,
            "percent_progress": percent_progress,
            **poll_fields(
                copy,
                now=ctx.clock(),
                complete=complete,
                percent=percent_progress,
                max_wait_seconds=ctx.settings.copy_max_wait_seconds,
                settings=ctx.settings,
                what=f"copy {identifier}{whose} in {region}",
            ),
        }

    def _not_made_yet(
        self, ctx: StepContext, copy: dict[str, Any], identifier: str, region: str
    ) -> dict[str, Any]:
        """The claimed copy does not exist yet: still queued within the grace, failed after it."""
        owner = copy.get("reused_from")
        age = claim_age_seconds(copy, ctx.clock())
        if age > COPY_CLAIM_GRACE_SECONDS:
            raise CopyFailed(
                f"copy {identifier} claimed by operation {owner} in {region} was not started within "
                f"{COPY_CLAIM_GRACE_SECONDS} s of its claim ({copy.get('claimed_at')}); look at operation "
                f"{owner}, then start the refresh again (it will copy or reuse afresh)",
                copy_id=identifier,
                region=region,
                owner=owner,
            )
        return {
            **copy,
            "status": "claimed",
            "percent_progress": None,
            **poll_fields(
                copy,
                now=ctx.clock(),
                complete=False,
                percent=None,
                max_wait_seconds=ctx.settings.copy_max_wait_seconds,
                settings=ctx.settings,
                what=f"copy {identifier} (claimed by operation {owner}) in {region}",
            ),
        }

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        if output.get("complete"):
            return f"{output['identifier']} available after {output.get('polls')} polls"
        return (
            f"{output['identifier']} {output['status']} at {output.get('percent_progress')} %, next look in "
            f"{output['next_poll_seconds']} s"
        )
