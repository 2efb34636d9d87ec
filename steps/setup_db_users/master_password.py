"""Resetting the restored cluster's master password, and waiting until the change has applied.

A restored cluster keeps the source's master password: until it is reset, production's
credentials open the copy. Two ways, chosen by the request's ``master_password_storage``:

* ``rds-managed`` (default): ``ModifyDBCluster(ManageMasterUserPassword=True)``; RDS makes a new
  password and keeps it in its own Secrets Manager secret (``MasterUserSecret.SecretArn``). If
  the cluster already has an RDS-managed secret (restored from a cluster that had one), that
  secret is rotated instead (``RotateMasterUserPassword=True``): either way the old password stops
  working.
* ``stack-secret``: a password made here, kept in the stack's secret
  ``<secrets prefix><target cluster>/master`` (made or updated by this step, tagged as ours),
  then ``ModifyDBCluster(MasterUserPassword=...)``.

Retries: the cluster gets the tag ``aurora-restore:master-password-reset=<operation>`` once the
reset is asked for, and the stack secret records the operation that wrote it, so a retried step
waits for the change it already made instead of making another one.
"""

from __future__ import annotations

import json
import math
import secrets
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dispatcher.errors import ResourceBusy
from refresh.errors import DatabaseSetupFailed, UnsafeTarget
from refresh.request import MANAGED_TAG, OPERATION_TAG, request_of
from refresh.safety import describe_cluster, tags_of
from refresh.users_spec import secret_name_of
from steps.lib.master_secret import read_master_password

#: Read back where the checks read it too (steps/lib/master_secret.py).
__all__ = ["read_master_password"]

if TYPE_CHECKING:
    from collections.abc import Callable

    from dispatcher.context import StepContext

RESET_TAG = "aurora-restore:master-password-reset"
RDS_MANAGED = "rds-managed"
STACK_SECRET = "stack-secret"  # noqa: S105 (a mode, not a password)
#: Characters RDS accepts in a master password: printable ASCII but / ' " @ and space.
PASSWORD_ALPHABET = string.ascii_letters + string.digits + "!#$%&()*+,-.:;<=>?[]^_{|}~"
DEFAULT_SECRETS_PREFIX = "aurora-restore/"


@dataclass(frozen=True)
class MasterReset:
    """What was done to the master password (never the password itself)."""

    username: str
    storage: str
    secret_arn: str
    #: False when an earlier attempt of this operation already asked for the change.
    requested_now: bool
    call: str  # the ModifyDBCluster parameter used

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the step output and the audit trail."""
        return {
            "username": self.username,
            "storage": self.storage,
            "secret_arn": self.secret_arn,
            "reset": True,
            "requested_now": self.requested_now,
            "call": self.call,
        }


def generate_master_password(length: int = 40) -> str:
    """A random master password RDS accepts."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def stack_secret_name(secrets_prefix: str, target_cluster_id: str) -> str:
    """The stack secret holding the master password of ``target_cluster_id``: one per target."""
    prefix = secret_name_of(secrets_prefix) if secrets_prefix.startswith("arn:") else secrets_prefix
    return f"{prefix or DEFAULT_SECRETS_PREFIX}{target_cluster_id.lower()}/master"


def reset_master_password(ctx: StepContext, cluster: dict[str, Any]) -> MasterReset:
    """Ask RDS to change the master password of ``cluster`` (once per operation)."""
    request = request_of(ctx)
    rds = ctx.aws("rds", request.target_region)
    cluster_id = cluster["DBClusterIdentifier"]
    username = cluster["MasterUsername"]
    already_reset = tags_of(cluster).get(RESET_TAG) == ctx.operation_id

    if request.master_password_storage == STACK_SECRET:
        secret_arn, password, ours = _stack_secret(ctx, cluster)
        requested_now = not (already_reset and ours)
        if requested_now:
            extra: dict[str, Any] = {}
            if (cluster.get("MasterUserSecret") or {}).get("SecretArn"):
                # RDS refuses a password for a cluster whose password it manages: it has to stop
                # managing it (and deletes its secret) in the same call.
                extra["ManageMasterUserPassword"] = False
            rds.modify_db_cluster(
                DBClusterIdentifier=cluster_id, MasterUserPassword=password, ApplyImmediately=True, **extra
            )
        reset = MasterReset(username, STACK_SECRET, secret_arn, requested_now, "MasterUserPassword")
    else:
        managed = cluster.get("MasterUserSecret") or {}
        requested_now = not (already_reset and managed.get("SecretArn"))
        call = "ManageMasterUserPassword"
        if requested_now and managed.get("SecretArn"):
            # Restored with an RDS-managed secret already: rotating it is what changes the password.
            call = "RotateMasterUserPassword"
            response = rds.modify_db_cluster(
                DBClusterIdentifier=cluster_id, RotateMasterUserPassword=True, ApplyImmediately=True
            )
        elif requested_now:
            response = rds.modify_db_cluster(
                DBClusterIdentifier=cluster_id, ManageMasterUserPassword=True, ApplyImmediately=True
            )
        else:
            response = {"DBCluster": cluster}
        secret_arn = (response["DBCluster"].get("MasterUserSecret") or managed).get("SecretArn", "")
        reset = MasterReset(username, RDS_MANAGED, secret_arn, requested_now, call)

    if requested_now:
        rds.add_tags_to_resource(
            ResourceName=cluster["DBClusterArn"], Tags=[{"Key": RESET_TAG, "Value": ctx.operation_id}]
        )
        ctx.log.info(
            "master password reset requested", cluster_id=cluster_id, call=reset.call, storage=reset.storage
        )
    else:
        ctx.log.info("master password reset already requested by this operation", cluster_id=cluster_id)
    return reset


def _stack_secret(ctx: StepContext, cluster: dict[str, Any]) -> tuple[str, str, bool]:
    """The stack secret's ARN and password for this operation: (arn, password, made earlier by us)."""
    request = request_of(ctx)
    sm = ctx.aws("secretsmanager", request.target_region)
    name = stack_secret_name(ctx.settings.secrets_prefix, request.target_cluster_id)
    username = cluster["MasterUsername"]
    try:
        described = sm.describe_secret(SecretId=name)
    except sm.exceptions.ResourceNotFoundException:
        password = generate_master_password()
        made = sm.create_secret(
            Name=name,
            Description=f"Master user of Aurora cluster {request.target_cluster_id}, set by aurora-restore",
            SecretString=_secret_value(username, password, request.target_cluster_id, ctx.operation_id),
            Tags=[{"Key": MANAGED_TAG, "Value": "true"}, {"Key": OPERATION_TAG, "Value": ctx.operation_id}],
        )
        return str(made["ARN"]), password, False
    tags = {t["Key"]: t["Value"] for t in described.get("Tags", [])}
    if tags.get(MANAGED_TAG, "").lower() != "true":
        raise UnsafeTarget(
            f"secret {name} exists but was not made by aurora-restore (no tag {MANAGED_TAG}=true); "
            "it is never overwritten: delete or rename it, or set another secrets prefix",
            secret_name=name,
            rule="managed-secret",
        )
    arn = str(described["ARN"])
    try:
        current = json.loads(sm.get_secret_value(SecretId=arn).get("SecretString") or "{}")
    except (ValueError, TypeError):
        current = {}
    except sm.exceptions.ResourceNotFoundException:
        current = {}  # a secret with no current version yet
    if (
        isinstance(current, dict)
        and current.get("operation_id") == ctx.operation_id
        and current.get("password")
    ):
        return arn, str(current["password"]), True
    password = generate_master_password()
    sm.put_secret_value(
        SecretId=arn,
        SecretString=_secret_value(username, password, request.target_cluster_id, ctx.operation_id),
    )
    sm.tag_resource(SecretId=arn, Tags=[{"Key": OPERATION_TAG, "Value": ctx.operation_id}])
    return arn, password, False


def _secret_value(username: str, password: str, cluster_id: str, operation_id: str) -> str:
    # The shape RDS and the rotation functions use, plus the operation that wrote it.
    return json.dumps(
        {
            "engine": "postgres",
            "username": username,
            "password": password,
            "dbClusterIdentifier": cluster_id,
            "operation_id": operation_id,
        }
    )


def password_change_pending(cluster: dict[str, Any], storage: str) -> str:
    """Why the password change has not applied yet, or '' when it has."""
    status = cluster.get("Status", "")
    if status != "available":
        return f"cluster status is {status}"
    if (cluster.get("PendingModifiedValues") or {}).get("MasterUserPassword"):
        return "the password change is still pending"
    if storage == RDS_MANAGED:
        managed = cluster.get("MasterUserSecret") or {}
        if not managed.get("SecretArn"):
            return "RDS has not made the master user secret yet"
        if managed.get("SecretStatus", "active") != "active":
            return f"the master user secret is {managed['SecretStatus']}"
    return ""


def wait_until_applied(
    ctx: StepContext,
    cluster_id: str,
    storage: str,
    *,
    poll_seconds: float,
    sleep: Callable[[float], None],
) -> tuple[dict[str, Any], int]:
    """Describe the cluster until the password change has applied; return it and the polls made.

    Bounded by ``password_reset_max_wait_seconds`` (counted in polls, so a fake clock cannot make
    it spin); past that ``ResourceBusy`` lets the state machine retry the step, which then waits
    for the same change again instead of making another.
    """
    request = request_of(ctx)
    rds = ctx.aws("rds", request.target_region)
    max_wait = ctx.settings.password_reset_max_wait_seconds
    max_polls = max(1, math.ceil(max_wait / poll_seconds)) if poll_seconds > 0 else 1
    started = ctx.clock()
    polls = 0
    while True:
        cluster = describe_cluster(rds, cluster_id)
        if cluster is None:
            raise DatabaseSetupFailed(
                f"cluster {cluster_id} in {request.target_region} disappeared while its master "
                "password was reset",
                cluster_id=cluster_id,
            )
        pending = password_change_pending(cluster, storage)
        if not pending:
            return cluster, polls
        waited = (ctx.clock() - started).total_seconds()
        if polls >= max_polls or waited >= max_wait:
            raise ResourceBusy(
                f"the master password change on cluster {cluster_id} has not applied after {polls} checks "
                f"({waited:.0f} s): {pending}; the step will be retried and waits for the same change",
                cluster_id=cluster_id,
                reason=pending,
            )
        ctx.log.info(
            "waiting for the master password change", cluster_id=cluster_id, reason=pending, polls=polls
        )
        sleep(poll_seconds)
        polls += 1
