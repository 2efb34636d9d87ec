"""setup_db_users: lock production's credentials out of the restored copy and set up its own users.

A restored cluster opens with production's master password and production's roles. This step,
on the cluster this operation restored (``$.restore.cluster_id``):

1. reads everything it will need first: the role passwords from Secrets Manager and the S3
   scripts, so a wrong secret or URI fails before anything changes;
2. resets the master password (RDS-managed secret by default, or the stack's own secret) and
   waits until the change has applied: the old password no longer works;
3. connects with asyncpg to the writer endpoint over TLS, with retries, as the master user;
4. applies the request's users spec (docs/users-spec.md) in one transaction, then its scripts,
   each in its own transaction.

The output lists what changed and where the master password is kept (a secret ARN), never a
password. ``AURORA_RESTORE_DB_ENDPOINT_OVERRIDE`` sends the connection to another server (the
local rehearsal's and the tests'); nothing else differs there.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from dispatcher import tracing
from dispatcher.aws import error_code
from dispatcher.errors import ValidationError
from dispatcher.registry import Step, register
from dispatcher.settings import split_endpoint
from refresh.errors import DatabaseSetupFailed, UnsafeTarget
from refresh.request import MANAGED_TAG, OPERATION_TAG, request_of
from refresh.safety import describe_cluster, is_managed, tags_of
from refresh.users_spec import check_secret_prefix, validate_users_spec
from steps.lib.pg_connect import (
    Endpoint,
    RetryPolicy,
    can_log_in,
    check_ca_bundle,
    connect,
    tls_context,
)
from steps.setup_db_users.db_users import Changes, Script, SpecApplier, existing_login_roles, run_scripts
from steps.setup_db_users.master_password import (
    RDS_MANAGED,
    read_master_password,
    reset_master_password,
    wait_until_applied,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatcher.context import StepContext
    from steps.setup_db_users.master_password import MasterReset

MAX_S3_SCRIPT_BYTES = 10 * 1024 * 1024
#: Entries kept of each list in the output (roles created, grants...); ``counts`` has their lengths.
OUTPUT_LIST_LIMIT = 25


@register("setup_db_users", state_name="SetupDBUsers")
class SetupDBUsers(Step):
    """Reset the restored cluster's master password, then apply the request's users spec."""

    aws_actions = (
        "rds:DescribeDBClusters",
        "rds:ModifyDBCluster",
        "rds:AddTagsToResource",
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:TagResource",
        "secretsmanager:RotateSecret",
        "kms:DescribeKey",
        "kms:Decrypt",
        "s3:GetObject",
    )
    run_after = "restore_snapshot"
    reads = ("request", "restore")
    result_key = "users"
    output_doc = (
        "master password reset, roles created/altered/disabled/dropped, grants, scripts run (no secret "
        "values)"
    )
    outputs = ("cluster_id", "changed", "counts")
    mutating = True

    #: Seconds between checks while a master password change applies.
    password_poll_seconds: ClassVar[float] = 10.0
    #: Backoff between connection attempts: doubles from the base, capped.
    connect_backoff_base_seconds: ClassVar[float] = 1.0
    connect_backoff_max_seconds: ClassVar[float] = 20.0

    def __init__(self) -> None:
        # Replaceable in tests, so waiting costs no wall-clock time there.
        self.sleep = time.sleep

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Reset the master password, connect, apply the spec; return what changed."""
        request = request_of(ctx)
        restore = ctx.input("restore")
        cluster_id = restore.get("cluster_id")
        if not isinstance(cluster_id, str) or not cluster_id:
            raise ValidationError(
                "restore.cluster_id", cluster_id, "the restore step's output must name the cluster"
            )
        spec = validate_users_spec(request.users or {})
        check_secret_prefix(spec, ctx.settings.secrets_prefix)
        # A bundle that is not there fails here, not after the master password was reset.
        check_ca_bundle(ctx.settings.db_ca_bundle, verify=ctx.settings.db_tls_verify)

        rds = ctx.aws("rds", request.target_region)
        cluster = describe_cluster(rds, cluster_id)
        if cluster is None:
            raise DatabaseSetupFailed(
                f"cluster {cluster_id} in {request.target_region} does not exist; nothing to set up",
                cluster_id=cluster_id,
            )
        self._ensure_restored_by_this_operation(ctx, cluster)
        _refuse_master_user_in_spec(spec, cluster["MasterUsername"])

        # Everything the database work needs is read before anything changes.
        passwords = self._role_passwords(ctx, spec)
        scripts = self._load_scripts(ctx, spec)

        reset = reset_master_password(ctx, cluster)
        cluster, polls = wait_until_applied(
            ctx, cluster_id, reset.storage, poll_seconds=self.password_poll_seconds, sleep=self.sleep
        )
        if reset.storage == RDS_MANAGED:
            reset = replace(reset, secret_arn=cluster["MasterUserSecret"]["SecretArn"])
        if reset.requested_now:
            ctx.store.audit(
                ctx.operation_id,
                "master_password_reset",
                step=self.name,
                cluster_id=cluster_id,
                region=request.target_region,
                storage=reset.storage,
                secret_arn=reset.secret_arn,
                call=reset.call,
            )
        master_password = read_master_password(ctx, reset.secret_arn)
        endpoint, overridden = self._endpoint(ctx, restore, cluster)

        changes = asyncio.run(
            self._database_work(ctx, endpoint, reset, master_password, spec, passwords, scripts)
        )
        output = {
            "cluster_id": cluster_id,
            "endpoint": endpoint.host,
            "port": endpoint.port,
            "database": endpoint.database,
            "endpoint_overridden": overridden,
            "master_user": {**reset.to_dict(), "polls": polls},
            **bounded_lists(changes.to_dict()),
        }
        ctx.log.info(
            "database users set up",
            cluster_id=cluster_id,
            changed=changes.changed,
            roles_created=len(changes.roles_created),
            roles_altered=len(changes.roles_altered),
            roles_disabled=len(changes.roles_disabled),
            roles_dropped=len(changes.roles_dropped),
            grants=len(changes.grants),
            scripts_run=len(changes.scripts_run),
        )
        return output

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises (no secret: the master password's place is an ARN)."""
        master = output.get("master_user", {})

        def count(key: str) -> int:
            counts = output.get("counts") or {}
            return int(counts.get(key, len(output.get(key) or [])))

        return (
            f"master password of {output.get('cluster_id')} reset ({master.get('storage')}); "
            f"roles: {count('roles_created')} created, {count('roles_altered')} altered, "
            f"{count('roles_disabled')} disabled, {count('roles_dropped')} dropped; "
            f"{count('grants')} grants; {count('scripts_run')} scripts run"
        )

    # -- before anything changes ------------------------------------------------------------------
    def _ensure_restored_by_this_operation(self, ctx: StepContext, cluster: dict[str, Any]) -> None:
        tags = tags_of(cluster)
        if not is_managed(cluster) or tags.get(OPERATION_TAG) != ctx.operation_id:
            raise UnsafeTarget(
                f"cluster {cluster['DBClusterIdentifier']} was not restored by operation {ctx.operation_id} "
                f"(tags {MANAGED_TAG}={tags.get(MANAGED_TAG)!r}, "
                f"{OPERATION_TAG}={tags.get(OPERATION_TAG)!r}); "
                "setup_db_users only changes the cluster its own operation restored",
                cluster_id=cluster["DBClusterIdentifier"],
                rule="restored-by-this-operation",
            )

    def _role_passwords(self, ctx: StepContext, spec: Mapping[str, Any]) -> dict[str, str]:
        """Role name -> password, from each role's secret (a JSON object with a 'password' field)."""
        request = request_of(ctx)
        passwords: dict[str, str] = {}
        for index, role in enumerate(spec.get("roles", [])):
            reference = role.get("password_secret_arn")
            if not reference:
                continue
            where = f"users.roles[{index}].password_secret_arn"
            region = reference.split(":")[3] if reference.startswith("arn:") else request.target_region
            sm = ctx.aws("secretsmanager", region)
            try:
                value = sm.get_secret_value(SecretId=reference)
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    raise ValidationError(
                        where,
                        reference,
                        f"no such secret in Secrets Manager in {region}; create it or fix the name",
                    ) from None
                raise
            rule = 'the secret must hold a JSON object with a non-empty "password" field'
            try:
                data = json.loads(value.get("SecretString") or "")
            except ValueError:
                raise ValidationError(where, reference, rule + "; it is not JSON") from None
            password = data.get("password") if isinstance(data, dict) else None
            if not isinstance(password, str) or not password:
                raise ValidationError(where, reference, rule + "; it has no password field")
            if "\x00" in password:
                raise ValidationError(
                    where, reference, "the password contains a NUL character, which PostgreSQL refuses"
                )
            passwords[role["name"]] = password
        return passwords

    def _load_scripts(self, ctx: StepContext, spec: Mapping[str, Any]) -> list[Script]:
        """The scripts' text: inline, or read from S3 now (a missing object fails before any change)."""
        request = request_of(ctx)
        scripts: list[Script] = []
        for index, entry in enumerate(spec.get("scripts", [])):
            if "sql" in entry:
                scripts.append(Script(entry["name"], "inline", entry["sql"]))
                continue
            where = f"users.scripts[{index}].s3_uri"
            uri = entry["s3_uri"]
            bucket, _, key = uri[len("s3://") :].partition("/")
            s3 = ctx.aws("s3", request.target_region)
            try:
                head = s3.head_object(Bucket=bucket, Key=key)
                if int(head.get("ContentLength", 0)) > MAX_S3_SCRIPT_BYTES:
                    raise ValidationError(
                        where, uri, f"the object is larger than {MAX_S3_SCRIPT_BYTES} bytes"
                    )
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ValidationError:
                raise
            except Exception as exc:
                if error_code(exc) in {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}:
                    raise ValidationError(
                        where, uri, "no such S3 object; upload the script or fix the URI"
                    ) from None
                raise
            try:
                sql = body.decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError(where, uri, "the script must be UTF-8 text") from None
            if not sql.strip() or "\x00" in sql:
                raise ValidationError(where, uri, "the script is empty or contains a NUL character")
            scripts.append(Script(entry["name"], uri, sql))
        return scripts

    def _endpoint(
        self, ctx: StepContext, restore: dict[str, Any], cluster: dict[str, Any]
    ) -> tuple[Endpoint, bool]:
        database = request_of(ctx).database
        if ctx.settings.db_endpoint_override:
            host, port = split_endpoint(ctx.settings.db_endpoint_override)
            ctx.log.warning("connecting to the endpoint override, not the cluster", endpoint=f"{host}:{port}")
            return Endpoint(host, port, database), True
        cluster_host = restore.get("endpoint") or cluster.get("Endpoint")
        cluster_port = restore.get("port") or cluster.get("Port") or 5432
        if not cluster_host:
            raise DatabaseSetupFailed(
                f"cluster {cluster['DBClusterIdentifier']} has no endpoint yet; "
                "it is not ready for connections",
                cluster_id=cluster["DBClusterIdentifier"],
            )
        return Endpoint(str(cluster_host), int(cluster_port), database), False

    # -- the database -----------------------------------------------------------------------------
    async def _database_work(
        self,
        ctx: StepContext,
        endpoint: Endpoint,
        reset: MasterReset,
        master_password: str,
        spec: Mapping[str, Any],
        passwords: dict[str, str],
        scripts: list[Script],
    ) -> Changes:
        """Connect, apply the spec (one transaction), run the scripts (one transaction each)."""
        context = tls_context(ctx.settings.db_ca_bundle, verify=ctx.settings.db_tls_verify)
        policy = RetryPolicy(
            attempts=ctx.settings.db_connect_attempts,
            timeout_seconds=ctx.settings.db_connect_timeout_seconds,
            backoff_base_seconds=self.connect_backoff_base_seconds,
            backoff_max_seconds=self.connect_backoff_max_seconds,
        )
        async with tracing.subsegment_async(
            "setup_db_users.database",
            cluster_id=ctx.input("restore").get("cluster_id"),
            database=endpoint.database,
        ):
            connection = await connect(
                endpoint,
                user=reset.username,
                password=master_password,
                context=context,
                policy=policy,
                log=ctx.log,
            )
            try:
                current: set[str] = set()
                for name in sorted(await existing_login_roles(connection, list(passwords))):
                    if await can_log_in(
                        endpoint,
                        user=name,
                        password=passwords[name],
                        context=context,
                        timeout=policy.timeout_seconds,
                    ):
                        current.add(name)
                changes = await SpecApplier(
                    connection, spec, passwords=passwords, passwords_current=current, log=ctx.log
                ).apply()
                if changes.changed:
                    ctx.store.audit(
                        ctx.operation_id,
                        "users_spec_applied",
                        step=self.name,
                        roles_created=changes.roles_created,
                        roles_altered=changes.roles_altered,
                        roles_disabled=changes.roles_disabled,
                        roles_dropped=changes.roles_dropped,
                        grants=changes.grants,
                    )
                ran = await run_scripts(connection, scripts, operation_id=ctx.operation_id, log=ctx.log)
                changes.scripts_run, changes.scripts_skipped = ran.scripts_run, ran.scripts_skipped
                if ran.scripts_run:
                    ctx.store.audit(ctx.operation_id, "scripts_run", step=self.name, scripts=ran.scripts_run)
            finally:
                await connection.close(timeout=5)
        return changes


def bounded_lists(changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` with each list cut to :data:`OUTPUT_LIST_LIMIT` entries, and every list's length.

    The output travels through every later state beside the request (Step Functions ends an
    execution whose state data passes 256 KiB); 500 roles and 499 grants listed in full would be
    about 95 KB. The audit trail's ``users_spec_applied`` and ``scripts_run`` events keep them all.
    """
    bounded: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for key, value in changes.items():
        if isinstance(value, list):
            bounded[key] = value[:OUTPUT_LIST_LIMIT]
            counts[key] = len(value)
        else:
            bounded[key] = value
    bounded["counts"] = counts
    bounded["lists_truncated"] = any(n > OUTPUT_LIST_LIMIT for n in counts.values())
    return bounded


def _refuse_master_user_in_spec(spec: Mapping[str, Any], master_username: str) -> None:
    """The master user's password is this step's own business; the spec may not touch that role."""
    for section in ("roles", "disable", "drop"):
        for index, entry in enumerate(spec.get(section, [])):
            if entry["name"] == master_username:
                raise ValidationError(
                    f"users.{section}[{index}].name",
                    entry["name"],
                    "is the cluster's master user, whose password this step resets itself; "
                    "leave it out of the spec",
                )
