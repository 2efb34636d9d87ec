"""Snapshots that live in another account: which role reaches it, which key shares, what is refused.

The refresh stack's ``SourceAccountRoleArns`` maps each source account to the role its
source-account stack made (the account id is in the ARN); the account's key in the source region
among ``SourceKmsKeyArns`` is the shareable key. AWS refuses to share an automated snapshot or one
encrypted with the AWS managed key ``aws/rds`` (RDS User Guide, "Sharing a DB cluster snapshot"),
and an account can copy a shared encrypted snapshot only when the key's policy lets it use the key
("Sharing encrypted snapshots"). So the tool never shares the source snapshot itself: it copies it
inside the source account under the shareable key, shares that copy with the target account only,
and unshares and deletes it once the target account has its own copy. Every trap is found before
any change, with the fix named.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dispatcher.aws import error_code
from dispatcher.errors import ValidationError
from dispatcher.settings import PREFIX

if TYPE_CHECKING:
    from dispatcher.aws import Clients
    from dispatcher.context import StepContext
    from dispatcher.settings import Settings

#: The session name in the source account's CloudTrail: who assumed the role, for which operation.
SESSION_PREFIX = "aurora-restore-"
#: Tag on everything the tool makes in a source account: the account its copy is shared with.
SHARED_WITH_TAG = "aurora-restore:shared-with"
#: KMS actions the target account needs on the shareable key to copy a snapshot encrypted with it.
NEEDED_BY_TARGET = ("kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant")


def role_for(settings: Settings, account: str) -> str | None:
    """The configured role ARN of ``account``, or None."""
    for arn in settings.source_account_role_arns:
        parts = arn.split(":")
        if len(parts) > 4 and parts[4] == account:
            return arn
    return None


def shareable_key_for(settings: Settings, account: str, region: str) -> str | None:
    """The key of ``account`` in ``region`` among the stack's SourceKmsKeyArns, or None."""
    for arn in settings.source_kms_key_arns:
        parts = arn.split(":")
        if len(parts) > 5 and parts[3] == region and parts[4] == account:
            return arn
    return None


def require_role(settings: Settings, account: str) -> str:
    """The role of ``account``; refused, naming the parameter to set, when there is none."""
    role = role_for(settings, account)
    if role is None:
        configured = ", ".join(a.split(":")[4] for a in settings.source_account_role_arns) or "none"
        raise ValidationError(
            "source_account",
            account,
            f"has no role in the stack's SourceAccountRoleArns ({PREFIX}SOURCE_ACCOUNT_ROLE_ARNS; accounts "
            f"configured: {configured}); deploy the source-account stack in {account} "
            "(python infra/build_template.py --source-account) and add its SourceAccountRoleArn",
        )
    return role


def assume(ctx: StepContext, account: str, region: str) -> Clients:
    """Clients in ``account`` through its role; refused, naming trust and external id, when denied."""
    role = require_role(ctx.settings, account)
    sts = ctx.aws("sts", region)
    try:
        credentials = sts.assume_role(
            RoleArn=role,
            RoleSessionName=(SESSION_PREFIX + ctx.operation_id)[:64],
            ExternalId=ctx.settings.source_account_external_id or "none-configured",
            DurationSeconds=900,
        )["Credentials"]
    except sts.exceptions.ClientError as exc:
        code = error_code(exc)
        if code in ("AccessDenied", "AccessDeniedException", "NoSuchEntity", "InvalidClientTokenId"):
            raise ValidationError(
                "source_account",
                account,
                f"role {role} cannot be assumed ({code}): its trust policy must name this stack's "
                "DispatcherRoleArn and its ExternalId must equal the stack's SourceAccountExternalId "
                f"({'set' if ctx.settings.source_account_external_id else 'empty here'}); redeploy the "
                "source-account stack with both",
            ) from None
        raise
    return ctx.aws.assumed(credentials, account)


def restore_accounts(rds: Any, copy_id: str) -> list[str]:
    """The accounts a snapshot is shared with (its ``restore`` attribute)."""
    result = rds.describe_db_cluster_snapshot_attributes(DBClusterSnapshotIdentifier=copy_id)
    attributes = result["DBClusterSnapshotAttributesResult"]["DBClusterSnapshotAttributes"]
    return list(next((a["AttributeValues"] for a in attributes if a["AttributeName"] == "restore"), []))


def retire_shared_copy(
    ctx: StepContext,
    *,
    share: dict[str, Any],
    copy_id: str,
    region: str,
    operation_id: str = "",
    rds: Any = None,
) -> dict[str, Any]:
    """Unshare, then delete, this operation's copy in the source account; a copy already gone is done.

    A snapshot of that name not tagged with this operation is left alone (never touch what this
    operation, or ``operation_id``, did not make). Returns ``account``, ``copy_id``, ``unshared``,
    ``deleted`` and
    ``existed`` (False: nothing was there any more).
    """
    from refresh.request import OPERATION_TAG

    operation_id = operation_id or ctx.operation_id
    rds = rds or assume(ctx, share["account"], region)("rds", region)
    result = {"account": share["account"], "copy_id": copy_id, "unshared": False, "deleted": False}
    try:
        found = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=copy_id)["DBClusterSnapshots"]
    except rds.exceptions.DBClusterSnapshotNotFoundFault:
        found = []
    if not found:
        return {**result, "deleted": True, "existed": False}
    tags = rds.list_tags_for_resource(ResourceName=found[0]["DBClusterSnapshotArn"])["TagList"]
    if {t["Key"]: t["Value"] for t in tags}.get(OPERATION_TAG) != operation_id:
        ctx.log.warning("source-account copy not this operation's; left alone", copy_id=copy_id)
        return result
    if share["target_account"] in restore_accounts(rds, copy_id):
        rds.modify_db_cluster_snapshot_attribute(
            DBClusterSnapshotIdentifier=copy_id,
            AttributeName="restore",
            ValuesToRemove=[share["target_account"]],
        )
        result["unshared"] = True
    try:
        rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=copy_id)
    except rds.exceptions.ClientError as exc:
        if error_code(exc) != "DBClusterSnapshotNotFoundFault":
            raise
    return {**result, "deleted": True, "existed": True}


def leftover_copies(rds: Any, target_account: str, *, except_operation: str) -> list[tuple[str, str]]:
    """(copy id, operation id) of every copy aurora-restore made in this source account for
    ``target_account`` under another operation: what a run that died without its failure handler
    (aborted, timed out) left there."""
    from refresh.request import MANAGED_TAG, OPERATION_TAG

    found = []
    for page in rds.get_paginator("describe_db_cluster_snapshots").paginate(SnapshotType="manual"):
        for snapshot in page["DBClusterSnapshots"]:
            tags = rds.list_tags_for_resource(ResourceName=snapshot["DBClusterSnapshotArn"])["TagList"]
            tag = {t["Key"]: t["Value"] for t in tags}
            owner = tag.get(OPERATION_TAG, "")
            if tag.get(MANAGED_TAG) == "true" and tag.get(SHARED_WITH_TAG) == target_account and owner:
                if owner != except_operation:
                    found.append((str(snapshot["DBClusterSnapshotIdentifier"]), owner))
    return found


def check_shareable_key(
    kms: Any, key_arn: str | None, *, account: str, region: str, target_account: str, snapshot: dict[str, Any]
) -> str:
    """The shareable key's ARN once it is a usable customer key whose policy grants the target account.

    Without one the snapshot cannot reach the target account: refused with the reason AWS gives.
    """
    if not key_arn:
        kind = snapshot_kind(snapshot)
        raise ValidationError(
            "snapshot_id",
            snapshot.get("identifier"),
            f"is {kind} in account {account}, which AWS does not share as it is; aurora-restore copies it "
            f"there under a shareable customer-managed key first, and the stack names none for account "
            f"{account} in {region}: add the source-account stack's ShareableKeyArn to SourceKmsKeyArns",
        )
    try:
        metadata = kms.describe_key(KeyId=key_arn)["KeyMetadata"]
        policy_text = kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"]
    except kms.exceptions.ClientError as exc:
        raise ValidationError(
            "SourceKmsKeyArns",
            key_arn,
            f"the shareable key of account {account} cannot be read through its role ({error_code(exc)}): it "
            "must exist in the source region and the role may DescribeKey and GetKeyPolicy on it",
        ) from None
    if metadata.get("KeyManager") == "AWS":
        raise ValidationError(
            "SourceKmsKeyArns",
            key_arn,
            "is an AWS managed key; snapshots encrypted with it cannot be shared: name a "
            "customer-managed key",
        )
    if metadata.get("KeyState", "Enabled") != "Enabled":
        raise ValidationError(
            "SourceKmsKeyArns", key_arn, f"is {metadata.get('KeyState')}; it must be Enabled"
        )
    missing = [
        action for action in NEEDED_BY_TARGET if not policy_grants(policy_text, target_account, action)
    ]
    if missing:
        raise ValidationError(
            "SourceKmsKeyArns",
            key_arn,
            f"its key policy does not let account {target_account} use it ({', '.join(missing)} missing), "
            "so the shared copy could not be copied into that account: add a statement allowing "
            f"arn:aws:iam::{target_account}:root {', '.join(NEEDED_BY_TARGET)} (the source-account stack's "
            "own key has it)",
        )
    return str(metadata.get("Arn") or key_arn)


def snapshot_kind(snapshot: dict[str, Any]) -> str:
    """Why the snapshot itself cannot be shared, in AWS's words."""
    if snapshot.get("snapshot_type") == "automated":
        return "an automated snapshot"
    if snapshot.get("encrypted"):
        return "an encrypted snapshot"
    return "a snapshot"


def policy_grants(policy_text: str, account: str, action: str) -> bool:
    """True when an Allow statement of the key policy names ``account`` (root, a principal of it, or
    ``*``) for ``action``. Conditions other than kms:GrantIsForAWSResource are taken as not holding."""
    try:
        policy = json.loads(policy_text)
    except ValueError:
        return False
    statements = policy.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if not any(_action_matches(a, action) for a in actions):
            continue
        condition = statement.get("Condition") or {}
        if any(k != "Bool" for k in condition) or any(
            key != "kms:GrantIsForAWSResource" for key in condition.get("Bool", {})
        ):
            continue
        principal = statement.get("Principal", {})
        names = principal.get("AWS", []) if isinstance(principal, dict) else principal
        names = [names] if isinstance(names, str) else names
        if any(n == "*" or n == account or f":iam::{account}:" in str(n) for n in names):
            return True
    return False


def _action_matches(pattern: str, action: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(action.lower(), pattern.lower())
