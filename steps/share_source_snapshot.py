"""share_source_snapshot: in the source account, copy the snapshot under the shareable key and share it.

Runs only for a snapshot of another account (``$.snapshot.source_share_required``). AWS shares
neither automated snapshots nor ones under ``aws/rds``, and sharing the production snapshot itself
would change it, so the source snapshot is only read: a copy is made inside the source account,
re-encrypted under the shareable customer-managed key and tagged as aurora-restore's, then shared
(``restore`` attribute) with the stack's own account and no other. CopySnapshot then copies that
shared copy into this account; RetireSourceShare unshares and deletes it.

A copy inside an account takes minutes to hours, so this is a poll loop. A retry finds its copy by
name and adopts it only when its tags name this operation; sharing an already shared copy changes
nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.aws import error_code
from dispatcher.errors import Retryable
from dispatcher.poll_loop import PollLoopStep
from dispatcher.registry import RunWhen, register
from refresh.errors import CopyFailed
from refresh.request import MANAGED_TAG, OPERATION_TAG, request_of
from refresh.source_accounts import SHARED_WITH_TAG, assume, restore_accounts
from steps.lib import names
from steps.lib.polling import poll_fields
from steps.lib.snapshots import SOURCE_SNAPSHOT_TAG, describe_snapshot, snapshot_tags, to_tag_list

if TYPE_CHECKING:
    from dispatcher.context import StepContext

#: Statuses after which the copy in the source account will never become available.
FAILED_STATUSES = frozenset({"failed", "deleting", "incompatible-restore", "error"})


def shared_copy_id(snapshot: dict[str, Any], operation_id: str) -> str:
    """The copy's name in the source account (derived, so a retry finds it)."""
    return names.copy_snapshot_id("share-" + str(snapshot["identifier"]), operation_id)


@register("share_source_snapshot", state_name="ShareSourceSnapshot")
class ShareSourceSnapshot(PollLoopStep):
    """Copy another account's snapshot there under the shareable key, then share the copy with us."""

    # Everything else happens in the source account under its role, allowed by that account's stack.
    aws_actions = ("sts:AssumeRole",)
    run_after = "snapshot_check"
    run_when = RunWhen(
        "NeedsSourceShare", {"Variable": "$.snapshot.source_share_required", "BooleanEquals": True}
    )
    reads = ("request", "snapshot")
    result_key = "snapshot"
    check_name = "check_source_share_status"
    check_state_name = "CheckSourceShareStatus"
    choice_state = "IsSourceShareComplete"
    wait_state = "WaitForSourceShare"
    # RDS sends this copy's events to the source account's EventBridge, never to this stack's.
    waits_for_events = False
    outputs = (
        "complete",
        "next_poll_seconds",
        "arn",
        "source_kind",
        "source_share_required",
        "target.exists",
    )
    max_wait_setting = "copy_max_wait_seconds"
    output_doc = (
        "the snapshot's facts as SnapshotCheck found them, plus `shared_copy` (`identifier`, `arn`, "
        "`account`, `status`, `shared_with`) and `shared_copy_arn` (what CopySnapshot copies, once "
        "shared), and the poll fields"
    )
    check_output_doc = "same shape, updated; the copy is shared once it is available"

    def start(self, ctx: StepContext) -> dict[str, Any]:
        """Start the copy in the source account (adopting this operation's own), or share it when done."""
        return self._look(ctx, previous=None)

    def check(self, ctx: StepContext) -> dict[str, Any]:
        """Look at the copy once; share it once available. ``CopyFailed`` when it failed or vanished."""
        return self._look(ctx, previous=ctx.input("snapshot"))

    def _look(self, ctx: StepContext, *, previous: dict[str, Any] | None) -> dict[str, Any]:
        request = request_of(ctx)
        snapshot = ctx.input("snapshot")
        share = snapshot["source_share"]
        region = request.source_region
        rds = assume(ctx, share["account"], region)("rds", region)
        copy_id = shared_copy_id(snapshot, request.operation_id)
        found = describe_snapshot(rds, copy_id)
        if found is None:
            if previous is not None:
                raise CopyFailed(
                    f"copy {copy_id} in account {share['account']} ({region}) vanished while being waited "
                    "for; start the refresh again",
                    copy_id=copy_id,
                )
            found = self._copy(ctx, rds, snapshot, copy_id)
        else:
            owner = snapshot_tags(rds, found).get(OPERATION_TAG)
            if owner != request.operation_id:
                raise CopyFailed(
                    f"snapshot {copy_id} in account {share['account']} ({region}) exists and is not this "
                    f"operation's (its {OPERATION_TAG} tag is {owner!r}); it was left alone: delete it if "
                    "stale or start the refresh with another operation_id",
                    copy_id=copy_id,
                )
        status = str(found.get("Status", "creating"))
        if status in FAILED_STATUSES:
            raise CopyFailed(
                f"copy {copy_id} in account {share['account']} ({region}) is {status}; look at its RDS "
                "events (often the source snapshot's key), then start the refresh again",
                copy_id=copy_id,
                status=status,
            )
        complete = status == "available"
        shared_with: list[str] = []
        if complete:
            shared_with = restore_accounts(rds, copy_id)
            if share["target_account"] not in shared_with:
                rds.modify_db_cluster_snapshot_attribute(
                    DBClusterSnapshotIdentifier=copy_id,
                    AttributeName="restore",
                    ValuesToAdd=[share["target_account"]],
                )
                shared_with = restore_accounts(rds, copy_id)
            ctx.store.audit(
                request.operation_id,
                "source_snapshot_shared",
                step=self.name,
                account=share["account"],
                copy_id=copy_id,
                shared_with=share["target_account"],
            )
        percent = found.get("PercentProgress")
        arn = str(found["DBClusterSnapshotArn"])
        return {
            **{k: v for k, v in snapshot.items() if k not in ("complete", "next_poll_seconds")},
            "shared_copy": {
                "identifier": copy_id,
                "arn": arn,
                "account": share["account"],
                "status": status,
                "shared_with": shared_with,
            },
            "shared_copy_arn": arn if complete else None,
            **poll_fields(
                previous,
                now=ctx.clock(),
                complete=complete,
                percent=100 if complete else (int(percent) if isinstance(percent, (int, float)) else None),
                max_wait_seconds=ctx.settings.copy_max_wait_seconds,
                settings=ctx.settings,
                what=f"copy {copy_id} in account {share['account']} ({region})",
            ),
        }

    def _copy(self, ctx: StepContext, rds: Any, snapshot: dict[str, Any], copy_id: str) -> dict[str, Any]:
        request = request_of(ctx)
        share = snapshot["source_share"]
        params: dict[str, Any] = {
            "SourceDBClusterSnapshotIdentifier": snapshot["identifier"],
            "TargetDBClusterSnapshotIdentifier": copy_id,
            "Tags": to_tag_list(
                {
                    MANAGED_TAG: "true",
                    OPERATION_TAG: request.operation_id,
                    SOURCE_SNAPSHOT_TAG: str(snapshot["arn"]),
                    SHARED_WITH_TAG: share["target_account"],
                }
            ),
        }
        if snapshot.get("encrypted"):
            # An unencrypted snapshot stays unencrypted (a key is an error then) and shares as it is.
            params["KmsKeyId"] = share["key_arn"]
        try:
            made = rds.copy_db_cluster_snapshot(**params)["DBClusterSnapshot"]
        except rds.exceptions.ClientError as exc:
            code = error_code(exc)
            if code == "DBClusterSnapshotAlreadyExistsFault":
                raise Retryable(f"copy {copy_id} appeared meanwhile; the retry adopts it") from None
            raise CopyFailed(
                f"copy of {snapshot['identifier']} inside account {share['account']} under key "
                f"{share['key_arn']} refused ({code}): the role needs kms:CreateGrant on that key and the "
                "snapshot's own key usable through RDS",
                code=code,
            ) from exc
        ctx.store.audit(
            request.operation_id,
            "source_snapshot_copy_started",
            step=self.name,
            account=share["account"],
            source=snapshot["arn"],
            copy_id=copy_id,
            kms_key_id=params.get("KmsKeyId"),
        )
        ctx.log.info("copy in the source account started", account=share["account"], copy_id=copy_id)
        return dict(made)

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        copy = output.get("shared_copy") or {}
        if output.get("complete"):
            where = f"{copy.get('identifier')} in account {copy.get('account')}"
            return f"{where} shared with {copy.get('shared_with')}"
        return f"{copy.get('identifier')} in account {copy.get('account')}: {copy.get('status')}"
