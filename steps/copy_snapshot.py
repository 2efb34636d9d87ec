"""copy_snapshot: make (or find) the snapshot the restore will use, in the target region.

A copy is made when the regions differ, and in-region when the snapshot is automated (so it
outlives the source's backup retention) or shared from another account. A manual snapshot of
this account in the target region is used as it is.

No RDS call takes a client token, so a retry finds its copy by name (the name is derived from
the source and the operation id) and adopts it only when its tags name this operation. Copies
are slow and limited (5 in flight per region), so a copy another operation made, or is making,
of the same source into the same region with the same key is reused instead of copied again.

Operations deciding at the same moment all find no copy yet; a claim in the state table
(``refresh.copy_claims``) lets only one of them copy. The others reuse the claimed copy before it
exists (``status`` ``claimed``); the check waits for it to appear. A claim whose owner
is no longer RUNNING, whose copy is unusable, or whose copy never appeared within
``COPY_CLAIM_GRACE_SECONDS`` is stale and taken over.

There is no RDS event for a finished cluster snapshot copy, so it is polled: each check is one
look at the copy, and the wait comes from the poll policy (``steps.lib.polling``): long while the
copy is far from done or queued, short near the end. A reused copy that does not exist yet is
still queued for ``COPY_CLAIM_GRACE_SECONDS`` after the claim, and ``CopyFailed`` naming the owner
after that. When it appears it is marked as used by this operation, as the start marks a copy it
reuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.aws import error_code
from dispatcher.errors import Retryable
from dispatcher.poll_loop import PollLoopStep
from dispatcher.registry import RunWhen, register
from dispatcher.store import STATUS_RUNNING
from refresh.copy_claims import claim_copy, take_over_copy_claim
from refresh.errors import CopyFailed
from refresh.request import MANAGED_TAG, OPERATION_TAG, request_of
from refresh.sources import FROM_SNAPSHOT_RULE, NO_COPY_OUTPUT
from steps.lib import names
from steps.lib.polling import iso_time, poll_fields
from steps.lib.snapshots import (
    COPY_CLAIM_GRACE_SECONDS,
    KMS_KEY_TAG,
    MAX_TAGS,
    NO_KEY,
    RESERVED_TAG_PREFIXES,
    SOURCE_SNAPSHOT_TAG,
    TARGET_TAG,
    USABLE_STATUSES,
    USED_BY_TAG_PREFIX,
    claim_age_seconds,
    copy_reason,
    copyable_tags,
    created_at,
    describe_snapshot,
    is_managed_tags,
    iter_snapshots,
    snapshot_tags,
    target_tag_value,
    to_tag_list,
)

if TYPE_CHECKING:
    from dispatcher.context import StepContext
    from refresh.request import RestoreRequest

#: Statuses after which the copy will never become available.
FAILED_STATUSES = frozenset({"failed", "deleting", "incompatible-restore", "error"})
#: Tags kept free on a copy for the archive's restored-* tags and other operations' used-by marks.
TAG_SLOTS_KEPT_FREE = 10


@register("copy_snapshot", state_name="CopySnapshot")
class CopySnapshot(PollLoopStep):
    """Copy the snapshot into the target region when needed, adopting or reusing existing copies."""

    aws_actions = (
        "rds:DescribeDBClusterSnapshots",
        "rds:ListTagsForResource",
        "rds:CopyDBClusterSnapshot",
        "rds:AddTagsToResource",
        "kms:DescribeKey",
        "kms:CreateGrant",
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
    )
    run_after = "share_source_snapshot"
    # A clone or a point-in-time restore reads the live cluster: there is no snapshot to copy.
    run_when = RunWhen(
        "NeedsCopy", FROM_SNAPSHOT_RULE, otherwise_state="NoCopyNeeded", otherwise_output=NO_COPY_OUTPUT
    )
    reads = ("request", "snapshot")
    result_key = "copy"
    output_doc = (
        "`identifier`, `arn`, `region`, `copied` (false = used as is), `reason`, `reused_from` (another "
        "operation's copy), `source_arn`, `kms_key_id`, `status` (`claimed` with `claimed_at` and `arn` "
        '"" when reusing a copy another operation claimed but has not started yet), `percent_progress`, '
        "and the poll fields `complete`, `next_poll_seconds`, `fallback_seconds`, `polls`, "
        "`started_at`, `elapsed_seconds`, "
        "`progress`"
    )
    check_output_doc = (
        "same shape, updated (`arn` filled in once a claimed copy exists; a claimed copy still missing "
        "`COPY_CLAIM_GRACE_SECONDS` after `claimed_at` is `CopyFailed`)"
    )
    outputs = ("complete", "next_poll_seconds", "fallback_seconds")
    check_reads = ("request", "copy")
    # RDS events about these (SourceIdentifier) end the wait early.
    awaited_fields = ("identifier",)
    max_wait_setting = "copy_max_wait_seconds"

    def start(self, ctx: StepContext) -> dict[str, Any]:
        """Return the snapshot to restore from (``identifier``, ``arn``, ``region``), whether it
        was ``copied`` or ``reused_from`` another operation, and the poll fields."""
        request = request_of(ctx)
        snapshot = ctx.input("snapshot")
        reason = copy_reason(
            cross_region=request.cross_region,
            snapshot_type=str(snapshot["snapshot_type"]),
            shared=bool(snapshot.get("shared")),
        )
        if reason is None:
            return self._used_as_is(ctx, request, snapshot)

        rds = ctx.aws("rds", request.target_region)
        plan = CopyPlan(request, snapshot, reason)
        existing = describe_snapshot(rds, plan.copy_id)
        if existing is not None:
            return self._adopt(ctx, plan, existing)
        reusable = find_reusable_copy(rds, plan)
        if reusable is not None:
            return self._reuse(ctx, rds, plan, reusable)
        claim = self._claim(ctx, rds, plan)
        if claim["claim_owner"] == plan.operation_id:
            return self._copy(ctx, rds, plan)
        return self._reuse_claimed(ctx, rds, plan, claim)

    # -- the three ways to a copy ------------------------------------------------------------------

    def _used_as_is(
        self, ctx: StepContext, request: RestoreRequest, snapshot: dict[str, Any]
    ) -> dict[str, Any]:
        ctx.log.info("snapshot used as it is", snapshot=snapshot["identifier"])
        return self._output(
            ctx,
            identifier=snapshot["identifier"],
            arn=snapshot["arn"],
            region=request.target_region,
            copied=False,
            reason=None,
            reused_from=None,
            kms_key_id=snapshot.get("kms_key_id"),
            status="available",
            percent=100,
            source_arn=snapshot["arn"],
        )

    def _adopt(self, ctx: StepContext, plan: CopyPlan, existing: dict[str, Any]) -> dict[str, Any]:
        """A snapshot under our copy's name exists: ours from an earlier attempt, or a clash."""
        tags = snapshot_tags(ctx.aws("rds", plan.region), existing)
        owner = tags.get(OPERATION_TAG)
        if not is_managed_tags(tags) or owner != plan.operation_id:
            whose = (
                f"operation {owner}"
                if owner and is_managed_tags(tags)
                else "someone else (not aurora-restore)"
            )
            raise CopyFailed(
                f"snapshot {plan.copy_id} in {plan.region} already exists and belongs to {whose}, not to "
                f"operation {plan.operation_id}; it was left alone. Delete or rename it if it is stale, "
                "or start the refresh with another operation_id",
                copy_id=plan.copy_id,
                owner=owner,
            )
        ctx.log.info(
            "copy adopted from an earlier attempt", copy_id=plan.copy_id, status=existing.get("Status")
        )
        return self._from_description(ctx, plan, existing, reused_from=None)

    def _reuse(self, ctx: StepContext, rds: Any, plan: CopyPlan, copy: dict[str, Any]) -> dict[str, Any]:
        """Mark another operation's copy as used by us, then wait on it instead of copying."""
        tags = snapshot_tags(rds, copy)
        owner = tags.get(OPERATION_TAG, "")
        used_by = USED_BY_TAG_PREFIX + plan.operation_id
        if used_by not in tags:
            rds.add_tags_to_resource(
                ResourceName=copy["DBClusterSnapshotArn"],
                Tags=[{"Key": used_by, "Value": iso_time(ctx.clock())}],
            )
        # Its owner's retention may have deleted it between our listing and our tag: look again.
        fresh = describe_snapshot(rds, copy["DBClusterSnapshotIdentifier"])
        if fresh is None:
            raise Retryable(
                f"copy {copy['DBClusterSnapshotIdentifier']} of operation {owner} vanished while being "
                "reused; the retry will copy or reuse afresh"
            )
        ctx.store.audit(
            plan.operation_id,
            "snapshot_copy_reused",
            step=self.name,
            copy_id=fresh["DBClusterSnapshotIdentifier"],
            reused_from=owner,
            region=plan.region,
            status=fresh.get("Status"),
        )
        ctx.log.info("copy reused", copy_id=fresh["DBClusterSnapshotIdentifier"], reused_from=owner)
        return self._from_description(ctx, plan, fresh, reused_from=owner)

    def _claim(self, ctx: StepContext, rds: Any, plan: CopyPlan) -> dict[str, Any]:
        """The claim on copying this source here with this key: ours, or another live operation's."""
        now = ctx.clock()
        claim = claim_copy(
            ctx.store,
            region=plan.region,
            source_arn=plan.source_arn,
            kms_key=plan.key_tag,
            operation_id=plan.operation_id,
            copy_id=plan.copy_id,
            now=now,
        )
        if claim["claim_owner"] == plan.operation_id:
            return claim
        stale = self._stale_because(ctx, rds, claim)
        if stale is None:
            return claim
        ctx.log.info("stale copy claim taken over", owner=claim["claim_owner"], why=stale)
        taken = take_over_copy_claim(
            ctx.store, claim, operation_id=plan.operation_id, copy_id=plan.copy_id, now=now
        )
        if taken["claim_owner"] == plan.operation_id:
            ctx.store.audit(
                plan.operation_id,
                "snapshot_copy_claim_taken_over",
                step=self.name,
                previous_owner=claim["claim_owner"],
                previous_copy_id=claim.get("copy_id"),
                reason=stale,
                region=plan.region,
            )
        return taken

    def _stale_because(self, ctx: StepContext, rds: Any, claim: dict[str, Any]) -> str | None:
        """Why another operation's claim no longer stands, or None when it does."""
        owner = str(claim["claim_owner"])
        state = ctx.store.get_operation(owner)
        if state is None or state.get("status") != STATUS_RUNNING:
            return f"operation {owner} is {state.get('status') if state else 'unknown'}, not RUNNING"
        copy = describe_snapshot(rds, str(claim.get("copy_id", "")))
        if copy is not None:
            if copy.get("Status") not in USABLE_STATUSES:
                return f"its copy {claim.get('copy_id')} is {copy.get('Status')}"
            return None
        if claim_age_seconds(claim, ctx.clock()) > COPY_CLAIM_GRACE_SECONDS:
            return f"its copy {claim.get('copy_id')} did not appear within {COPY_CLAIM_GRACE_SECONDS} s"
        return None

    def _reuse_claimed(
        self, ctx: StepContext, rds: Any, plan: CopyPlan, claim: dict[str, Any]
    ) -> dict[str, Any]:
        """Reuse the copy another operation claimed: as it is when it exists, else not yet made."""
        owner = str(claim["claim_owner"])
        copy_id = str(claim["copy_id"])
        existing = describe_snapshot(rds, copy_id)
        if existing is not None:
            return self._reuse(ctx, rds, plan, existing)
        ctx.store.audit(
            plan.operation_id,
            "snapshot_copy_reused",
            step=self.name,
            copy_id=copy_id,
            reused_from=owner,
            region=plan.region,
            status="claimed",
        )
        ctx.log.info("claimed copy reused before it exists", copy_id=copy_id, reused_from=owner)
        output = self._output(
            ctx,
            identifier=copy_id,
            # Known once the copy exists: check_copy_status fills it in.
            arn="",
            region=plan.region,
            copied=True,
            reason=plan.reason,
            reused_from=owner,
            kms_key_id=None if plan.key_tag == NO_KEY else plan.key_tag,
            status="claimed",
            percent=None,
            source_arn=plan.source_arn,
        )
        return {**output, "claimed_at": claim.get("claimed_at")}

    def _copy(self, ctx: StepContext, rds: Any, plan: CopyPlan) -> dict[str, Any]:
        """Start the copy; a copy that appeared meanwhile under our name is adopted or refused."""
        source_tags = read_source_tags(ctx, plan)
        params = plan.copy_parameters(source_tags)
        try:
            response = rds.copy_db_cluster_snapshot(**params)
        except rds.exceptions.ClientError as exc:
            code = error_code(exc)
            if code == "DBClusterSnapshotAlreadyExistsFault":
                existing = describe_snapshot(rds, plan.copy_id)
                if existing is None:
                    raise Retryable(
                        f"copy {plan.copy_id} was reported as existing but cannot be found yet"
                    ) from None
                return self._adopt(ctx, plan, existing)
            raise copy_error(exc, plan) from exc
        copy = response["DBClusterSnapshot"]
        ctx.store.audit(
            plan.operation_id,
            "snapshot_copy_started",
            step=self.name,
            copy_id=plan.copy_id,
            source=plan.source_arn,
            region=plan.region,
            reason=plan.reason,
            kms_key_id=plan.key_tag,
        )
        ctx.log.info("copy started", copy_id=plan.copy_id, reason=plan.reason, status=copy.get("Status"))
        return self._from_description(ctx, plan, copy, reused_from=None)

    # -- output --------------------------------------------------------------------------------------

    def _from_description(
        self, ctx: StepContext, plan: CopyPlan, copy: dict[str, Any], *, reused_from: str | None
    ) -> dict[str, Any]:
        return self._output(
            ctx,
            identifier=copy["DBClusterSnapshotIdentifier"],
            arn=copy["DBClusterSnapshotArn"],
            region=plan.region,
            copied=True,
            reason=plan.reason,
            reused_from=reused_from,
            kms_key_id=copy.get("KmsKeyId") or (None if plan.key_tag == NO_KEY else plan.key_tag),
            status=str(copy.get("Status", "copying")),
            percent=copy.get("PercentProgress"),
            source_arn=plan.source_arn,
        )

    def _output(
        self,
        ctx: StepContext,
        *,
        identifier: str,
        arn: str,
        region: str,
        copied: bool,
        reason: str | None,
        reused_from: str | None,
        kms_key_id: str | None,
        status: str,
        percent: Any,
        source_arn: str,
    ) -> dict[str, Any]:
        percent_progress = int(percent) if isinstance(percent, (int, float)) else None
        complete = status == "available"
        return {
            "identifier": identifier,
            "arn": arn,
            "region": region,
            "copied": copied,
            "reason": reason,
            "reused_from": reused_from,
            "source_arn": source_arn,
            "kms_key_id": kms_key_id,
            "status": status,
            "percent_progress": 100 if complete else percent_progress,
            **poll_fields(
                None,
                now=ctx.clock(),
                complete=complete,
                percent=100 if complete else percent_progress,
                max_wait_seconds=ctx.settings.copy_max_wait_seconds,
                settings=ctx.settings,
                what=f"copy {identifier} in {region}",
            ),
        }

    def check(self, ctx: StepContext) -> dict[str, Any]:
        """Return the copy output updated; ``CopyFailed`` when it failed or vanished,
        ``PollTimeout`` past ``copy_max_wait_seconds``."""
        copy = ctx.input("copy")
        if not copy.get("copied"):
            # The snapshot is used as it is: nothing to wait for.
            return {**copy, "complete": True, "next_poll_seconds": 0, "fallback_seconds": 0}
        identifier = str(copy["identifier"])
        region = str(copy.get("region") or request_of(ctx).target_region)
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

    def summarize_check(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        if output.get("complete"):
            return f"{output['identifier']} available after {output.get('polls')} polls"
        return (
            f"{output['identifier']} {output['status']} at {output.get('percent_progress')} %, next look in "
            f"{output['next_poll_seconds']} s"
        )

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        if not output.get("copied"):
            return f"{output['identifier']} used as it is"
        how = f"reusing the copy of {output['reused_from']}" if output.get("reused_from") else "copy"
        return f"{how} {output['identifier']} in {output['region']}: {output['status']} ({output['reason']})"


class CopyPlan:
    """What this operation's copy is: its name, its source, its key and its tags."""

    def __init__(self, request: RestoreRequest, snapshot: dict[str, Any], reason: str) -> None:
        self.request = request
        self.operation_id = request.operation_id
        self.region = request.target_region
        self.reason = reason
        # Another account's snapshot is copied from the copy shared out of that account.
        self.source_arn = str(snapshot.get("shared_copy_arn") or snapshot["arn"])
        self.source_identifier = str(snapshot["identifier"])
        self.encrypted = bool(snapshot.get("encrypted"))
        self.copy_id = names.copy_snapshot_id(self.source_identifier, self.operation_id)
        # The key passed to the copy: only for encrypted snapshots (an unencrypted one with a key is
        # an error). Without one an in-region copy keeps the source's key.
        self.kms_key_id: str | None = snapshot.get("target_kms_key_id") if self.encrypted else None
        self.key_tag = self.kms_key_id or (
            str(snapshot.get("kms_key_id") or "") if self.encrypted else NO_KEY
        )

    def our_tags(self) -> dict[str, str]:
        """The tags that make the copy ours and findable for reuse and retention."""
        return {
            MANAGED_TAG: "true",
            OPERATION_TAG: self.operation_id,
            SOURCE_SNAPSHOT_TAG: self.source_arn,
            TARGET_TAG: target_tag_value(self.region, self.request.target_cluster_id),
            KMS_KEY_TAG: self.key_tag,
        }

    def copy_parameters(self, source_tags: dict[str, str]) -> dict[str, Any]:
        """CopyDBClusterSnapshot's parameters.

        RDS ignores ``CopyTags`` when ``Tags`` are given (moto documents this as verified against
        AWS), so the source's own tags are passed explicitly; ``CopyTags`` stays on for accounts
        where it does merge, except when the source carries aurora-restore tags, which must never
        override this copy's.
        """
        tags = self.our_tags()
        for key, value in copyable_tags(source_tags).items():
            # Leave room for the restored-* and used-by tags added later (RDS allows 50).
            if len(tags) >= MAX_TAGS - TAG_SLOTS_KEPT_FREE:
                break
            tags.setdefault(key, value)
        own_tags_on_source = any(k.startswith(RESERVED_TAG_PREFIXES[1]) for k in source_tags)
        cross_account = self.reason == "shared"
        params: dict[str, Any] = {
            # A same-region snapshot of this account is named by id; anything else by its ARN.
            "SourceDBClusterSnapshotIdentifier": (
                self.source_arn if self.request.cross_region or cross_account else self.source_identifier
            ),
            "TargetDBClusterSnapshotIdentifier": self.copy_id,
            "CopyTags": not own_tags_on_source,
            "Tags": to_tag_list(tags),
        }
        if self.request.cross_region:
            # boto3 builds the pre-signed URL from SourceRegion.
            params["SourceRegion"] = self.request.source_region
        if self.kms_key_id:
            params["KmsKeyId"] = self.kms_key_id
        return params


def find_reusable_copy(rds: Any, plan: CopyPlan) -> dict[str, Any] | None:
    """Another operation's copy of the same source, in the same region, with the same key.

    Our own copy is not a candidate: it is found by name, and adopted, not reused.

    One this operation already marked as used wins (a retry keeps its choice), then an available
    one over one still copying, then the newest.
    """
    candidates: list[tuple[dict[str, Any], dict[str, str]]] = []
    for snapshot in iter_snapshots(rds, SnapshotType="manual"):
        if snapshot.get("Status") not in USABLE_STATUSES:
            continue
        tags = snapshot_tags(rds, snapshot)
        if (
            is_managed_tags(tags)
            and tags.get(SOURCE_SNAPSHOT_TAG) == plan.source_arn
            and tags.get(KMS_KEY_TAG) == plan.key_tag
            and tags.get(OPERATION_TAG) not in (None, "", plan.operation_id)
        ):
            candidates.append((snapshot, tags))
    if not candidates:
        return None

    def preference(item: tuple[dict[str, Any], dict[str, str]]) -> tuple[bool, bool, Any]:
        snapshot, tags = item
        return (
            USED_BY_TAG_PREFIX + plan.operation_id in tags,
            snapshot.get("Status") == "available",
            created_at(snapshot),
        )

    return max(candidates, key=preference)[0]


def read_source_tags(ctx: StepContext, plan: CopyPlan) -> dict[str, str]:
    """The source snapshot's tags; none when they cannot be read (e.g. another account's)."""
    rds = ctx.aws("rds", plan.request.source_region)
    try:
        return snapshot_tags(rds, {"DBClusterSnapshotArn": plan.source_arn})
    except rds.exceptions.ClientError as exc:
        ctx.log.warning("source snapshot tags not readable; not copied", code=error_code(exc))
        return {}


def copy_error(exc: Exception, plan: CopyPlan) -> Exception:
    """Copy refusals an operator can act on, in words; anything else as it is (translated later)."""
    code = error_code(exc)
    message = getattr(exc, "response", {}).get("Error", {}).get("Message", str(exc))
    hints = {
        "KMSKeyNotAccessibleFault": (
            f"the key {plan.kms_key_id or plan.key_tag} cannot be used for the copy in {plan.region}: "
            "aurora-restore needs kms:CreateGrant, kms:DescribeKey, kms:Decrypt, kms:Encrypt, kms:ReEncrypt* "
            "and kms:GenerateDataKey* on it, and kms:CreateGrant, kms:DescribeKey, kms:Decrypt on the "
            "source key"
        ),
        "SnapshotQuotaExceededFault": (
            f"the manual snapshot quota in {plan.region} is reached; delete old snapshots or ask AWS to "
            "raise the quota"
        ),
        "InvalidDBClusterSnapshotStateFault": (
            f"the source snapshot {plan.source_arn} cannot be copied in its current state"
        ),
        "DBClusterSnapshotNotFoundFault": f"the source snapshot {plan.source_arn} is gone",
    }
    if code in hints:
        return CopyFailed(
            f"copy of {plan.source_arn} to {plan.copy_id} refused: {hints[code]} ({message})", code=code
        )
    return exc
