"""Deployment settings, read once from the Lambda's environment (the template sets them)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from dispatcher.errors import ValidationError

PREFIX = "AURORA_RESTORE_"


@dataclass(frozen=True)
class Settings:
    """What the stack configures: table names, topic, defaults and bounds."""

    stage: str = "dev"
    #: The one region the stack serves: where the function runs (Lambda's own ``AWS_REGION``), the
    #: region of its KMS key and its VPC. Empty only outside Lambda when AWS_REGION is unset.
    stack_region: str = ""
    state_table: str = "aurora-restore-state"
    audit_table: str = "aurora-restore-audit"
    topic_arn: str = ""
    #: Default KMS key in the target region for encrypted copies and restores.
    default_kms_key_id: str = ""
    #: Regex; a cluster whose id matches it may be replaced even without the managed tag.
    allowed_target_pattern: str = ""
    default_instance_class: str = "db.r6g.large"
    default_subnet_group: str = ""
    default_security_group_ids: tuple[str, ...] = ()
    default_cluster_parameter_group: str = ""
    #: Secrets Manager names/ARNs the users spec may read must start with this prefix.
    secrets_prefix: str = ""
    #: ``bucket/prefix/`` the users spec's ``s3://`` scripts must be under (the role reads only
    #: there); empty: inline scripts only.
    scripts_s3_prefix: str = ""
    export_bucket: str = ""
    export_role_arn: str = ""
    export_kms_key_id: str = ""
    poll_min_seconds: int = 30
    poll_max_seconds: int = 900
    copy_max_wait_seconds: int = 8 * 24 * 3600
    restore_max_wait_seconds: int = 24 * 3600
    audit_ttl_days: int = 90
    db_connect_timeout_seconds: float = 10.0
    db_connect_attempts: int = 8
    #: PEM bundle the restored cluster's TLS certificate is verified against (the RDS CA bundle,
    #: shipped with the function). Needed while ``db_tls_verify`` is on.
    db_ca_bundle: str = ""
    #: Verify the cluster's certificate chain and host name. Off only when the stack says so
    #: explicitly (``DbTlsVerify=false``): TLS is then still required but the server not authenticated.
    db_tls_verify: bool = True
    #: ``host:port`` to reach instead of the restored cluster's endpoint. The local rehearsal and
    #: the tests point it at a local PostgreSQL; it is the only simulation seam of setup_db_users.
    db_endpoint_override: str = ""
    #: How long setup_db_users waits in one invocation for a master password change to apply.
    password_reset_max_wait_seconds: int = 300
    #: Third-party steps from the ``aurora_restore.steps`` entry point are loaded only when set.
    load_plugins: bool = False
    #: KMS keys the source snapshots are encrypted with (the stack's SourceKmsKeyArns); a source
    #: account's key in the source region is the one its shared copies are encrypted with.
    source_kms_key_arns: tuple[str, ...] = ()
    #: Roles of the source-account stacks (SourceAccountRoleArns): the account in each ARN is the
    #: account the role serves.
    source_account_role_arns: tuple[str, ...] = ()
    #: The external id those roles' trust policies require.
    source_account_external_id: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``AURORA_RESTORE_*`` variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        defaults = cls()

        def text(name: str, default: str) -> str:
            return env.get(PREFIX + name, default).strip()

        def number(name: str, default: int) -> int:
            raw = text(name, str(default))
            try:
                value = int(raw)
            except ValueError:
                raise ValidationError(PREFIX + name, raw, "must be a whole number") from None
            if value < 0:
                raise ValidationError(PREFIX + name, raw, "must be zero or more")
            return value

        def boolean(name: str, *, default: bool) -> bool:
            raw = text(name, "true" if default else "false").lower()
            if raw not in {"true", "false"}:
                raise ValidationError(PREFIX + name, raw, "must be true or false")
            return raw == "true"

        pattern = text("ALLOWED_TARGET_PATTERN", "")
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValidationError(
                    PREFIX + "ALLOWED_TARGET_PATTERN", pattern, f"must be a regular expression ({exc})"
                ) from None
        groups = tuple(g for g in text("DEFAULT_SECURITY_GROUP_IDS", "").split(",") if g.strip())
        settings = cls(
            stage=text("STAGE", defaults.stage),
            stack_region=env.get("AWS_REGION", "").strip(),
            state_table=text("STATE_TABLE", defaults.state_table),
            audit_table=text("AUDIT_TABLE", defaults.audit_table),
            topic_arn=text("TOPIC_ARN", ""),
            default_kms_key_id=text("DEFAULT_KMS_KEY_ID", ""),
            allowed_target_pattern=pattern,
            default_instance_class=text("DEFAULT_INSTANCE_CLASS", defaults.default_instance_class),
            default_subnet_group=text("DEFAULT_SUBNET_GROUP", ""),
            default_security_group_ids=tuple(g.strip() for g in groups),
            default_cluster_parameter_group=text("DEFAULT_CLUSTER_PARAMETER_GROUP", ""),
            secrets_prefix=text("SECRETS_PREFIX", ""),
            scripts_s3_prefix=text("SCRIPTS_S3_PREFIX", ""),
            export_bucket=text("EXPORT_BUCKET", ""),
            export_role_arn=text("EXPORT_ROLE_ARN", ""),
            export_kms_key_id=text("EXPORT_KMS_KEY_ID", ""),
            poll_min_seconds=number("POLL_MIN_SECONDS", defaults.poll_min_seconds),
            poll_max_seconds=number("POLL_MAX_SECONDS", defaults.poll_max_seconds),
            copy_max_wait_seconds=number("COPY_MAX_WAIT_SECONDS", defaults.copy_max_wait_seconds),
            restore_max_wait_seconds=number("RESTORE_MAX_WAIT_SECONDS", defaults.restore_max_wait_seconds),
            audit_ttl_days=number("AUDIT_TTL_DAYS", defaults.audit_ttl_days),
            db_connect_timeout_seconds=float(
                number("DB_CONNECT_TIMEOUT_SECONDS", int(defaults.db_connect_timeout_seconds))
            ),
            db_connect_attempts=number("DB_CONNECT_ATTEMPTS", defaults.db_connect_attempts),
            db_ca_bundle=text("DB_CA_BUNDLE", ""),
            db_tls_verify=boolean("DB_TLS_VERIFY", default=True),
            db_endpoint_override=endpoint_override(text("DB_ENDPOINT_OVERRIDE", "")),
            password_reset_max_wait_seconds=number(
                "PASSWORD_RESET_MAX_WAIT_SECONDS", defaults.password_reset_max_wait_seconds
            ),
            load_plugins=text("LOAD_PLUGINS", "false").lower() in {"1", "true", "yes"},
            source_kms_key_arns=_listed(text("SOURCE_KMS_KEY_ARNS", "")),
            source_account_role_arns=_listed(text("SOURCE_ACCOUNT_ROLE_ARNS", "")),
            source_account_external_id=text("SOURCE_ACCOUNT_EXTERNAL_ID", ""),
            extra={k: v for k, v in env.items() if k.startswith(PREFIX)},
        )
        if settings.poll_max_seconds < settings.poll_min_seconds:
            raise ValidationError(
                PREFIX + "POLL_MAX_SECONDS",
                settings.poll_max_seconds,
                f"must be at least AURORA_RESTORE_POLL_MIN_SECONDS ({settings.poll_min_seconds})",
            )
        return settings


def _listed(value: str) -> tuple[str, ...]:
    """A comma-separated setting as its non-empty members."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def endpoint_override(value: str) -> str:
    """Check ``AURORA_RESTORE_DB_ENDPOINT_OVERRIDE`` (``host:port``, ``[v6]:port``); empty is allowed."""
    if value:
        host, _, port = value.rpartition(":")
        if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValidationError(
                PREFIX + "DB_ENDPOINT_OVERRIDE", value, "must be host:port, e.g. 127.0.0.1:54321"
            )
    return value


def split_endpoint(value: str) -> tuple[str, int]:
    """``host:port`` as (host, port); ``[::1]:5432`` gives ('::1', 5432)."""
    host, _, port = endpoint_override(value).rpartition(":")
    return host.strip("[]"), int(port)
