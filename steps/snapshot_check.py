"""snapshot_check: lock the target, find the snapshot, and refuse early what cannot work.

Everything that can be known before a multi-hour copy starts is checked here: the snapshot
exists, is an available aurora-postgresql cluster snapshot; the target and each of its instances
may be replaced under the safety rules; a new target has a subnet group and security groups; the
users spec's S3 scripts are under the stack's ScriptsS3Prefix; an encrypted snapshot that must be
copied has a usable key in the target region, and one used as it is has a key the function can
use. Where the old target lives and how it is sized is recorded (``target.placement``) for the
restore, before delete-first removes it. Nothing is created or changed except the target's lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.aws import error_code
from dispatcher.errors import ValidationError
from dispatcher.registry import Step, register
from dispatcher.settings import PREFIX
from refresh.errors import SnapshotNotFound
from refresh.request import request_of
from refresh.safety import (
    check_members_replaceable,
    check_replaceable,
    describe_cluster,
    is_managed,
    member_descriptions,
)
from refresh.source_accounts import assume, check_shareable_key, role_for, shareable_key_for
from refresh.sources import (
    CLUSTER_KINDS,
    RESTORE_TYPES,
    check_clone_key,
    check_clone_quota,
    check_restore_window,
    check_source_cluster,
    clones_of,
)
from refresh.target_lock import take_lock
from steps.lib.restoring import check_new_target_placement, target_placement
from steps.lib.snapshot_export import check_export_settings
from steps.lib.snapshots import (
    ENGINE,
    copy_reason,
    created_at,
    describe_snapshot,
    iter_snapshots,
)

if TYPE_CHECKING:
    from dispatcher.context import StepContext
    from dispatcher.settings import Settings
    from refresh.request import RestoreRequest


@register("snapshot_check", state_name="SnapshotCheck")
class SnapshotCheck(Step):
    """Take the target's lock, resolve the snapshot and check the target and the KMS key."""

    aws_actions = (
        "rds:DescribeDBClusterSnapshots",
        "rds:DescribeDBSnapshots",
        "rds:DescribeDBClusters",
        "rds:DescribeDBInstances",
        "rds:DescribeDBSubnetGroups",
        "rds:ListTagsForResource",
        "kms:DescribeKey",
        # A snapshot of another account is read through that account's role.
        "sts:AssumeRole",
    )
    run_after = "validate_request"
    reads = ("request",)
    result_key = "snapshot"
    output_doc = (
        "source snapshot facts (`arn`, `identifier`, `engine`, `engine_version`, `encrypted`, "
        "`kms_key_id`, `size_gb`, `source_cluster_id`, `source_region`, `snapshot_type`, `account`, "
        "`shared`, `created_at`), `source_kind` (`snapshot`, or `clone` / `pitr` for a live cluster, "
        "with `restore_type`, `restore_to_time`, `restorable_window` and `clones`), "
        "`copy_reason` (`cross-region`, `automated`, `shared` or null), "
        "`target_kms_key_id` (verified key ARN a copy uses, or null), `target` (`exists`, `cluster_id`, "
        "`managed`, `deletion_protection`, `status`; when it exists also `disable_deletion_protection`, "
        "`engine_version`, `arn` and `placement`: its `db_subnet_group`, `vpc_security_group_ids`, "
        "`db_cluster_parameter_group`, `port`, writer's `instance_class` and `db_parameter_group`, "
        "`reader_count`); takes the target lock first; refuses an old target's member instance the "
        "safety rules do not cover, an `s3://` script outside `ScriptsS3Prefix`, a new target nobody "
        "places, and an encrypted snapshot used as it is whose key the function cannot use; "
        "`source_share_required` (the snapshot is in another account and is shared through a copy there) "
        "with `source_share` (`account`, `role_arn`, `key_arn`, `target_account`) or null"
    )
    outputs = ("arn", "source_kind", "target.exists", "source_share_required")
    mutating = True

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Return the snapshot's facts, the target's state and the key a copy will use.

        Raises ``TargetLocked`` (before any RDS call), ``SnapshotNotFound``,
        ``ValidationError`` (wrong kind or engine, missing or unusable key, export settings)
        or ``UnsafeTarget``.
        """
        request = request_of(ctx)
        take_lock(ctx.store, request.target_region, request.target_cluster_id, request.operation_id)
        check_export_settings(ctx.settings)
        check_scripts_prefix(request, ctx.settings)

        if request.snapshot.kind in CLUSTER_KINDS:
            if request.source_account:
                raise ValidationError(
                    "source_account",
                    request.source_account,
                    "applies to snapshots only: a clone or point-in-time restore reads a cluster of the "
                    "stack's own account; name a snapshot of that account instead",
                )
            # A live cluster: nothing to copy or archive; its own rules (refresh.sources).
            facts = cluster_source_facts(ctx, request)
            facts["target"] = check_target(ctx, request, facts)
            facts["target_kms_key_id"] = check_cluster_source_key(ctx, request, facts)
            # A clone or point-in-time restore reads a cluster of the stack's own account.
            facts.setdefault("source_share_required", False)
            facts.setdefault("source_share", None)
        else:
            share = source_account_of(ctx, request)
            if share is None:
                source = resolve_snapshot(ctx.aws("rds", request.source_region), request)
                facts = snapshot_facts(source, request)
            else:
                facts = check_source_account(ctx, request, share)
            facts["target"] = check_target(ctx, request, facts)
            facts["copy_reason"] = copy_reason(
                cross_region=request.cross_region,
                snapshot_type=facts["snapshot_type"],
                shared=facts["shared"],
            )
            facts["target_kms_key_id"] = check_kms_key(ctx, request, facts)
        ctx.log.info(
            "snapshot resolved",
            snapshot=facts["arn"],
            snapshot_type=facts["snapshot_type"],
            encrypted=facts["encrypted"],
            copy_reason=facts["copy_reason"],
            target_exists=facts["target"]["exists"],
        )
        return facts

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        target = output.get("target", {})
        state = f"exists ({target.get('status')})" if target.get("exists") else "does not exist"
        if output.get("source_kind") in CLUSTER_KINDS:
            when = output.get("restore_to_time") or "latest restorable time"
            return (
                f"{output['source_kind']} of cluster {output['identifier']} ({output['restore_type']}, "
                f"as of {when}), no copy; target {state}"
            )
        copy = f"copy needed: {output['copy_reason']}" if output.get("copy_reason") else "used as is"
        size = f"{output['snapshot_type']}, {output['size_gb']} GiB"
        return f"{output['identifier']} ({size}), {copy}; target {state}"


def check_scripts_prefix(request: RestoreRequest, settings: Settings) -> None:
    """A script outside ScriptsS3Prefix would be refused by S3 after the copy and restore: refuse now.

    The role may read ``s3://`` objects only under that prefix (empty: none at all).
    """
    prefix = settings.scripts_s3_prefix
    for index, script in enumerate((request.users or {}).get("scripts") or []):
        uri = script.get("s3_uri") if isinstance(script, dict) else None
        if not uri:
            continue
        # A plain string prefix of bucket/key, exactly as the role's s3:GetObject resource
        # (arn:aws:s3:::<prefix>*) matches it.
        if not prefix or not str(uri).removeprefix("s3://").startswith(prefix):
            allowed = f"s3://{prefix}..." if prefix else "none: the stack's ScriptsS3Prefix is empty"
            raise ValidationError(
                f"users.scripts[{index}].s3_uri",
                uri,
                f"is outside the S3 prefix the function may read scripts from ({allowed}); move the "
                f"script under it, inline it as sql, or set the stack's ScriptsS3Prefix "
                f"({PREFIX}SCRIPTS_S3_PREFIX)",
            )


# -- another account's snapshot --------------------------------------------------------------------


def source_account_of(ctx: StepContext, request: RestoreRequest) -> str | None:
    """The account to reach through its role: ``source_account``, or a snapshot ARN's account that
    has a role. None for the stack's own account and for a snapshot already shared with it."""
    if request.source_account:
        return request.source_account
    ref = request.snapshot
    if ref.kind == "arn" and role_for(ctx.settings, ref.account):
        return ref.account
    return None


def check_source_account(ctx: StepContext, request: RestoreRequest, account: str) -> dict[str, Any]:
    """Resolve the snapshot in ``account`` through its role and check it can reach this account.

    Nothing changes in either account: the role, the snapshot and the shareable key (its key policy
    must let this account use it) are only read.
    """
    region = request.source_region
    clients = assume(ctx, account, region)
    source = resolve_snapshot(clients("rds", region), request)
    facts = snapshot_facts(source, request)
    target_account = str(ctx.aws("sts", request.target_region).get_caller_identity()["Account"])
    key_arn = check_shareable_key(
        clients("kms", region),
        shareable_key_for(ctx.settings, account, region),
        account=account,
        region=region,
        target_account=target_account,
        snapshot=facts,
    )
    facts["shared"] = True
    facts["source_share_required"] = True
    facts["source_share"] = {
        "account": account,
        "role_arn": role_for(ctx.settings, account),
        "key_arn": key_arn,
        "target_account": target_account,
    }
    return facts


# -- the snapshot --------------------------------------------------------------------------------


def resolve_snapshot(rds: Any, request: RestoreRequest) -> dict[str, Any]:
    """The source snapshot's description, with ``_shared`` set when another account owns it."""
    ref = request.snapshot
    region = request.source_region
    if ref.kind == "latest":
        return newest_snapshot(rds, ref.cluster_id, region)
    if ref.kind == "identifier":
        found = describe_snapshot(rds, ref.value)
        if found is None:
            raise not_found(rds, ref.value, region)
        return {**found, "_shared": False}
    # An ARN: our own account's snapshot, or one shared with us.
    identifier = ref.value.split(":cluster-snapshot:", 1)[1]
    found = describe_snapshot(rds, identifier)
    if found is not None and found.get("DBClusterSnapshotArn") == ref.value:
        return {**found, "_shared": False}
    for shared in iter_snapshots(rds, SnapshotType="shared"):
        if shared.get("DBClusterSnapshotArn") == ref.value:
            return {**shared, "_shared": True}
    raise SnapshotNotFound(
        f"cluster snapshot {ref.value} was not found in {region}: it is neither this account's nor "
        "shared with it; share it with this account (ModifyDBClusterSnapshotAttribute restore) or "
        "check the ARN",
        snapshot_id=ref.value,
        region=region,
    )


def newest_snapshot(rds: Any, cluster_id: str, region: str) -> dict[str, Any]:
    """``latest:<cluster>``: the newest available automated or manual snapshot, across all pages.

    Copies aurora-restore made are left out: their creation time is the copy's, not the data's.
    """
    try:
        snapshots = list(iter_snapshots(rds, DBClusterIdentifier=cluster_id))
    except rds.exceptions.DBClusterNotFoundFault:
        snapshots = []
    own = [s for s in snapshots if not is_managed(s)]
    available = [s for s in own if s.get("Status") == "available"]
    if not available:
        seen = ", ".join(f"{s['DBClusterSnapshotIdentifier']} ({s.get('Status')})" for s in own[:5])
        raise SnapshotNotFound(
            f"latest:{cluster_id}: cluster {cluster_id} in {region} has no available cluster snapshot"
            + (f"; found {len(own)}, none available: {seen}" if own else "; it has none at all")
            + ". Name a snapshot explicitly or wait for one to become available",
            snapshot_id=f"latest:{cluster_id}",
            region=region,
            found=len(own),
        )
    newest = max(available, key=created_at)
    return {**newest, "_shared": False}


def not_found(rds: Any, identifier: str, region: str) -> Exception:
    """The right error for an identifier with no cluster snapshot: a DB snapshot, or nothing."""
    try:
        instance = rds.describe_db_snapshots(DBSnapshotIdentifier=identifier).get("DBSnapshots", [])
    except rds.exceptions.DBSnapshotNotFoundFault:
        instance = []
    if instance:
        return ValidationError(
            "snapshot_id",
            identifier,
            f"is a DB instance snapshot (engine {instance[0].get('Engine')}) in {region}; Aurora restores "
            "from cluster snapshots only: name an Aurora PostgreSQL cluster snapshot",
        )
    return SnapshotNotFound(
        f"no cluster snapshot {identifier} in {region}; check the name and the source region "
        "(a snapshot shared from another account must be named by its ARN)",
        snapshot_id=identifier,
        region=region,
    )


def snapshot_facts(snapshot: dict[str, Any], request: RestoreRequest) -> dict[str, Any]:
    """Check the snapshot is usable and return what later steps need to know about it."""
    identifier = snapshot["DBClusterSnapshotIdentifier"]
    arn = snapshot["DBClusterSnapshotArn"]
    status = snapshot.get("Status")
    if status != "available":
        progress = snapshot.get("PercentProgress")
        raise SnapshotNotFound(
            f"cluster snapshot {identifier} in {request.source_region} is {status}"
            + (f" ({progress} %)" if progress is not None else "")
            + ", not available; start the refresh again once it is available",
            snapshot_id=identifier,
            status=status,
        )
    engine = snapshot.get("Engine")
    if engine != ENGINE:
        raise ValidationError(
            "snapshot_id",
            request.snapshot_id,
            f"resolves to {identifier}, a snapshot of engine {engine}; aurora-restore restores "
            f"{ENGINE} cluster snapshots only",
        )
    return {
        "source_kind": "snapshot",
        "arn": arn,
        "identifier": identifier,
        "engine": engine,
        "engine_version": snapshot.get("EngineVersion"),
        "encrypted": bool(snapshot.get("StorageEncrypted")),
        "kms_key_id": snapshot.get("KmsKeyId"),
        "size_gb": snapshot.get("AllocatedStorage"),
        "source_cluster_id": snapshot.get("DBClusterIdentifier"),
        "source_region": request.source_region,
        "snapshot_type": snapshot.get("SnapshotType") or "manual",
        "account": arn.split(":")[4],
        "shared": bool(snapshot.get("_shared")),
        "created_at": _iso(snapshot.get("SnapshotCreateTime")),
        "source_share_required": False,
        "source_share": None,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else value


# -- the target ----------------------------------------------------------------------------------


def check_target(ctx: StepContext, request: RestoreRequest, facts: dict[str, Any]) -> dict[str, Any]:
    """The target's state; an existing target must pass the safety rules now, before any copy."""
    rds = ctx.aws("rds", request.target_region)
    cluster = describe_cluster(rds, request.target_cluster_id)
    if cluster is None:
        check_new_target_placement(request, ctx.settings, request.target_region)
        return {
            "exists": False,
            "cluster_id": request.target_cluster_id,
            "managed": False,
            "deletion_protection": False,
            "status": None,
        }
    engine = cluster.get("Engine")
    if engine != ENGINE:
        raise ValidationError(
            "target_cluster_id",
            request.target_cluster_id,
            f"is an existing {engine} cluster in {request.target_region}; only an {ENGINE} target can "
            "be refreshed from an aurora-postgresql snapshot",
        )
    will_unprotect = check_replaceable(
        cluster,
        region=request.target_region,
        source_cluster_id=str(facts.get("source_cluster_id") or ""),
        source_region=request.source_region,
        settings=ctx.settings,
        allow_disable_deletion_protection=request.allow_disable_deletion_protection,
    )
    members = member_descriptions(rds, cluster)
    check_members_replaceable(cluster, members, region=request.target_region, settings=ctx.settings)
    return {
        "exists": True,
        "cluster_id": cluster["DBClusterIdentifier"],
        "managed": is_managed(cluster),
        "deletion_protection": bool(cluster.get("DeletionProtection")),
        "disable_deletion_protection": will_unprotect,
        "status": cluster.get("Status"),
        "engine_version": cluster.get("EngineVersion"),
        "arn": cluster.get("DBClusterArn"),
        # What the restore inherits unless the request overrides it.
        "placement": target_placement(cluster, members),
    }


# -- the key -------------------------------------------------------------------------------------


def check_kms_key(ctx: StepContext, request: RestoreRequest, facts: dict[str, Any]) -> str | None:
    """The ARN of the target-region key a copy will use, verified; None when no key is used.

    An encrypted snapshot copied across regions or out of another account needs a key in the
    target region ("Must specify new KMS key"): refused here, before any copy starts.
    """
    key = request.kms_key_id or ctx.settings.default_kms_key_id or None
    where = (
        "the request's kms_key_id"
        if request.kms_key_id
        else f"the stack default ({PREFIX}DEFAULT_KMS_KEY_ID)"
    )
    needs_key = facts["encrypted"] and facts["copy_reason"] in ("cross-region", "shared")
    if needs_key and not key:
        why = (
            f"to {request.target_region}"
            if facts["copy_reason"] == "cross-region"
            else f"out of account {facts['account']}"
        )
        raise ValidationError(
            "kms_key_id",
            None,
            f"snapshot {facts['identifier']} is encrypted and must be copied {why}; the copy needs a KMS "
            f"key in {request.target_region}: set kms_key_id in the request or the stack's DefaultKmsKeyId",
        )
    if facts["encrypted"] and facts["copy_reason"] is None:
        check_snapshot_key(ctx, request, facts)
    if not key or not (facts["encrypted"] or request.kms_key_id):
        return None
    if key.startswith("arn:") and key.split(":")[3] != request.target_region:
        raise ValidationError(
            "kms_key_id",
            key,
            f"({where}) is a key in {key.split(':')[3]}; KMS keys are regional, it must be a key "
            f"in the target region {request.target_region}",
        )
    kms = ctx.aws("kms", request.target_region)
    try:
        metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
    except kms.exceptions.ClientError as exc:
        code = error_code(exc)
        if code in ("NotFoundException", "InvalidArnException"):
            raise ValidationError(
                "kms_key_id", key, f"({where}) does not exist in {request.target_region}; name a key there"
            ) from None
        if code in ("AccessDeniedException", "KMSInvalidStateException", "DisabledException"):
            raise ValidationError(
                "kms_key_id",
                key,
                f"({where}) cannot be used in {request.target_region}: {code}; aurora-restore needs "
                "kms:DescribeKey, kms:CreateGrant, kms:Decrypt, kms:Encrypt, kms:ReEncrypt* and "
                "kms:GenerateDataKey* on it",
            ) from None
        raise
    state = metadata.get("KeyState", "Enabled")
    if state != "Enabled" or metadata.get("Enabled") is False:
        raise ValidationError(
            "kms_key_id", key, f"({where}) is {state} in {request.target_region}; it must be Enabled"
        )
    return str(metadata["Arn"])


def check_snapshot_key(ctx: StepContext, request: RestoreRequest, facts: dict[str, Any]) -> None:
    """The key of an encrypted snapshot restored as it is (no copy) must be usable by the function.

    RDS decrypts the snapshot with the caller's permissions on that key (kms:DescribeKey and
    kms:CreateGrant); without them the restore fails after the target may already be gone. The
    snapshot's key is in the target region (no copy means the same region).
    """
    key = str(facts.get("kms_key_id") or "")
    if not key:
        return
    kms = ctx.aws("kms", request.target_region)
    try:
        metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
    except kms.exceptions.ClientError as exc:
        code = error_code(exc)
        if code in ("NotFoundException", "InvalidArnException", "AccessDeniedException"):
            raise ValidationError(
                "snapshot_id",
                request.snapshot_id,
                f"is encrypted with KMS key {key}, which the function cannot use in {request.target_region} "
                f"({code}); restoring it as it is needs kms:DescribeKey and kms:CreateGrant on that key: "
                "add it to the stack's SourceKmsKeyArns and let the key policy allow the function's role",
            ) from None
        raise
    state = metadata.get("KeyState", "Enabled")
    if state != "Enabled" or metadata.get("Enabled") is False:
        raise ValidationError(
            "snapshot_id",
            request.snapshot_id,
            f"is encrypted with KMS key {key}, which is {state} in {request.target_region}; RDS cannot "
            "restore it until the key is Enabled",
        )


# -- a live cluster as the source ------------------------------------------------------------------


def cluster_source_facts(ctx: StepContext, request: RestoreRequest) -> dict[str, Any]:
    """``clone:`` / ``pitr:``: the source cluster's facts, refused early as RDS would refuse it.

    Same keys as a snapshot's facts (the later steps and the notification read them), plus what
    the restore needs: ``restore_type``, ``restore_to_time`` (None for the latest restorable time),
    the ``restorable_window`` and, for a clone, the ``clones`` already sharing the source's storage.
    """
    ref = request.snapshot
    region = request.source_region
    rds = ctx.aws("rds", region)
    source = describe_cluster(rds, ref.cluster_id)
    if source is None:
        raise SnapshotNotFound(
            f"{ref.value}: no cluster {ref.cluster_id} in {region} (this account); check the id and the "
            "source_region",
            snapshot_id=ref.value,
            region=region,
        )
    check_source_cluster(ref.value, ref.kind, source, region=region)
    engine = source.get("Engine")
    if engine != ENGINE:
        raise ValidationError(
            "snapshot_id",
            ref.value,
            f"names a cluster of engine {engine}; aurora-restore refreshes from {ENGINE} only",
        )
    if request.engine_version and request.engine_version != source.get("EngineVersion"):
        raise ValidationError(
            "engine_version",
            request.engine_version,
            f"differs from source cluster {ref.cluster_id}'s {source.get('EngineVersion')}; a clone or "
            "point-in-time restore keeps the source's engine version (RestoreDBClusterToPointInTime has "
            "none to give): drop engine_version and upgrade afterwards",
        )
    window = check_restore_window(ref.value, ref.restore_to, source)
    clones: list[str] = []
    if ref.kind == "clone":
        clones = clones_of(source, list(iter_clusters(rds)))
        check_clone_quota(ref.value, ref.cluster_id, clones)
    arn = str(source.get("DBClusterArn") or "")
    return {
        "source_kind": ref.kind,
        "arn": arn,
        "identifier": source["DBClusterIdentifier"],
        "engine": engine,
        "engine_version": source.get("EngineVersion"),
        "encrypted": bool(source.get("StorageEncrypted")),
        # Only an encrypted cluster has a key (moto reports a placeholder on the others).
        "kms_key_id": source.get("KmsKeyId") if source.get("StorageEncrypted") else None,
        "size_gb": source.get("AllocatedStorage"),
        "source_cluster_id": source["DBClusterIdentifier"],
        "source_region": region,
        "snapshot_type": ref.kind,
        "account": arn.split(":")[4] if arn.count(":") >= 4 else None,
        "shared": False,
        "created_at": None,
        "restore_type": RESTORE_TYPES[ref.kind],
        "restore_to_time": None if ref.restore_to == "latest" else ref.restore_to,
        "restorable_window": window,
        "clones": clones,
        "copy_reason": None,
    }


def iter_clusters(rds: Any) -> Any:
    """Every cluster of the region, across all pages (clone groups span them)."""
    for page in rds.get_paginator("describe_db_clusters").paginate():
        yield from page.get("DBClusters", [])


def check_cluster_source_key(ctx: StepContext, request: RestoreRequest, facts: dict[str, Any]) -> str | None:
    """The key the new cluster is encrypted with, verified; None when it is not encrypted.

    A clone keeps the source's key: the function must be able to use it (RDS acts with the
    caller's kms:CreateGrant on it), and a different requested key is refused. A point-in-time
    restore is a full copy: it takes the request's key (never the stack default, which is a copy's
    key) or keeps the source's.
    """
    source_key = str(facts.get("kms_key_id") or "") or None
    if facts["source_kind"] == "clone":
        requested = _key_arn(ctx, request, request.kms_key_id) if request.kms_key_id else None
        check_clone_key(request.snapshot_id, source_key, requested)
    elif request.kms_key_id:
        if not source_key:
            # RestoreDBClusterToPointInTime's KmsKeyId: "If DBClusterIdentifier refers to a DB cluster
            # that isn't encrypted, then the restore request is rejected."
            raise ValidationError(
                "kms_key_id",
                request.kms_key_id,
                f"cannot encrypt a point-in-time restore of {facts['identifier']}, which is not encrypted "
                "(RDS rejects a key for an unencrypted source): drop kms_key_id, or refresh from an "
                "encrypted snapshot copy",
            )
        return _key_arn(ctx, request, request.kms_key_id)
    if source_key:
        check_snapshot_key(ctx, request, facts)
    return source_key


def _key_arn(ctx: StepContext, request: RestoreRequest, key: str) -> str:
    """The ARN of the request's key in the target region, or a ValidationError naming it."""
    kms = ctx.aws("kms", request.target_region)
    try:
        metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
    except kms.exceptions.ClientError as exc:
        raise ValidationError(
            "kms_key_id",
            key,
            f"cannot be used in {request.target_region}: {error_code(exc)}; name a key there",
        ) from None
    if metadata.get("KeyState", "Enabled") != "Enabled":
        raise ValidationError(
            "kms_key_id", key, f"is {metadata.get('KeyState')} in {request.target_region}; it must be Enabled"
        )
    return str(metadata["Arn"])
