"""The stack's parameters: what an operator sets when deploying (grouped for the console).

Defaults come from ``dispatcher.settings.Settings`` so the stack and a local run agree; the upper
bounds of the wait parameters come from ``infra.pipeline`` so the state machine's TimeoutSeconds is
always longer than the steps' own bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import Parameter, Template

from dispatcher.settings import Settings
from infra.pipeline import MAX_WAIT_LIMITS_SECONDS

#: CloudWatch Logs' allowed retention periods, in days.
# fmt: off
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
# fmt: on


@dataclass
class Parameters:
    """The stack parameters, kept as objects so resources Ref them instead of repeating names."""

    stage: Parameter
    table_name_suffix: Parameter
    log_retention_days: Parameter
    log_level: Parameter
    notification_email: Parameter
    reserved_concurrency: Parameter
    target_kms_key_arn: Parameter
    source_kms_key_arns: Parameter
    source_regions: Parameter
    allowed_target_pattern: Parameter
    unmanaged_target_prefix: Parameter
    default_instance_class: Parameter
    default_subnet_group: Parameter
    default_security_group_ids: Parameter
    default_cluster_parameter_group: Parameter
    secrets_prefix: Parameter
    allow_rds_managed_secrets: Parameter
    secrets_kms_key_arns: Parameter
    export_bucket: Parameter
    export_role_arn: Parameter
    export_kms_key_arn: Parameter
    scripts_s3_prefix: Parameter
    db_ca_bundle: Parameter
    db_tls_verify: Parameter
    poll_min_seconds: Parameter
    poll_max_seconds: Parameter
    copy_max_wait_seconds: Parameter
    restore_max_wait_seconds: Parameter
    audit_ttl_days: Parameter
    schedule_expression: Parameter
    schedule_timezone: Parameter
    schedule_input: Parameter
    source_account_role_arns: Parameter
    source_account_external_id: Parameter


def add_parameters(template: Template, stage: str) -> Parameters:
    """Every parameter, grouped for the console."""
    defaults = Settings()

    def add(name: str, **kwargs: Any) -> Parameter:
        return template.add_parameter(Parameter(name, **kwargs))

    def seconds(name: str, default: int, minimum: int, maximum: int, what: str) -> Parameter:
        return add(name, Type="Number", Default=default, MinValue=minimum, MaxValue=maximum, Description=what)

    params = Parameters(
        stage=add(
            "Stage",
            Type="String",
            Default=stage,
            AllowedPattern=r"^[a-z][a-z0-9-]{0,19}$",
            Description="Environment name, part of every resource name (lower case, at most 20 characters)",
        ),
        table_name_suffix=add(
            "TableNameSuffix",
            Type="String",
            Default="",
            AllowedPattern=r"^$|^-[a-z0-9-]{1,20}$",
            Description="Empty: the tables are aurora-restore-state and aurora-restore-audit, the names the "
            "runbook's AWS CLI commands use. Set it (e.g. -stg) only for a second stack in the same account "
            "and region",
        ),
        log_retention_days=add(
            "LogRetentionDays",
            Type="Number",
            Default=365,
            AllowedValues=list(LOG_RETENTION_DAYS),
            Description="Days to keep the function's and the state machine's logs",
        ),
        log_level=add(
            "LogLevel",
            Type="String",
            Default="INFO",
            AllowedValues=["DEBUG", "INFO", "WARNING", "ERROR"],
            Description="Log level of the dispatcher function",
        ),
        notification_email=add(
            "NotificationEmail",
            Type="String",
            Default="",
            AllowedPattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$",
            Description="Optional: subscribe this address to the notification topic (confirm the e-mail)",
        ),
        reserved_concurrency=add(
            "ReservedConcurrency",
            Type="Number",
            Default=-1,
            MinValue=-1,
            MaxValue=1000,
            Description="Concurrent executions reserved for the function; -1 reserves none (accounts with "
            "the minimum concurrency quota cannot reserve any)",
        ),
        target_kms_key_arn=add(
            "TargetKmsKeyArn",
            Type="String",
            Default="",
            AllowedPattern=r"^$|^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$",
            Description="KMS key ARN in the target region for encrypted copies and restores (the default "
            "when a request names none); the function may use only this key and the source keys",
        ),
        source_kms_key_arns=add(
            "SourceKmsKeyArns",
            Type="CommaDelimitedList",
            Default="",
            Description="KMS key ARNs that encrypt the source snapshots (read for copies)",
        ),
        source_regions=add(
            "SourceRegions",
            Type="CommaDelimitedList",
            Default="",
            Description="Regions the source snapshots may be copied from. A cross-region copy is also "
            "authorized in the source region, on the source snapshot. Empty: any region, and IAM then "
            "no longer limits where a copy lands (ValidateRequest still does); set it in production",
        ),
        allowed_target_pattern=add(
            "AllowedTargetPattern",
            Type="String",
            Default="",
            Description="Regex: clusters whose id, and each of whose instances' ids, matches it in full may "
            "be replaced without the aurora-restore:managed tag (also set UnmanagedTargetPrefix, or tag "
            "them once)",
        ),
        unmanaged_target_prefix=add(
            "UnmanagedTargetPrefix",
            Type="String",
            Default="",
            AllowedPattern=r"^$|^[A-Za-z][A-Za-z0-9-]{2,62}$",
            Description="IAM side of AllowedTargetPattern: the role may delete/rename untagged clusters and "
            "instances whose id starts with this (at least 3 characters); empty: managed resources only",
        ),
        default_instance_class=add(
            "DefaultInstanceClass",
            Type="String",
            Default=defaults.default_instance_class,
            AllowedPattern=r"^db\.(serverless|[a-z0-9]+\.[a-z0-9]+)$",
            Description="Instance class of restored clusters when the request names none",
        ),
        default_subnet_group=add(
            "DefaultSubnetGroup",
            Type="String",
            Default="",
            Description="DB subnet group of restored clusters when the request names none",
        ),
        default_security_group_ids=add(
            "DefaultSecurityGroupIds",
            Type="CommaDelimitedList",
            Default="",
            Description="VPC security groups of restored clusters when the request names none",
        ),
        default_cluster_parameter_group=add(
            "DefaultClusterParameterGroup",
            Type="String",
            Default="",
            Description="DB cluster parameter group of restored clusters when the request names none",
        ),
        secrets_prefix=add(
            "SecretsPrefix",
            Type="String",
            Default="aurora-restore/",
            AllowedPattern=r"^[A-Za-z0-9/_+=.@-]{3,256}$",
            Description="Secrets Manager names the users spec may read (and the stack-secret master password "
            "is written under) start with this",
        ),
        allow_rds_managed_secrets=add(
            "AllowRdsManagedSecrets",
            Type="String",
            Default="true",
            AllowedValues=["true", "false"],
            Description="Let RDS manage the restored cluster's master password (the default "
            "master_password_storage): the role may create and read rds!cluster-* secrets in the "
            "target regions. false: only stack-secret mode works",
        ),
        secrets_kms_key_arns=add(
            "SecretsKmsKeyArns",
            Type="CommaDelimitedList",
            Default="",
            Description="KMS key ARNs of customer managed keys that encrypt the users' password secrets "
            "(empty: they use aws/secretsmanager, which needs no grant)",
        ),
        export_bucket=add(
            "ExportBucket",
            Type="String",
            Default="",
            Description="Optional: S3 bucket for snapshot exports after a refresh",
        ),
        export_role_arn=add(
            "ExportRoleArn",
            Type="String",
            Default="",
            AllowedPattern=r"^$|^arn:aws[a-z-]*:iam::\d{12}:role/.+$",
            Description="IAM role RDS export uses to write to ExportBucket (required with ExportBucket)",
        ),
        export_kms_key_arn=add(
            "ExportKmsKeyArn",
            Type="String",
            Default="",
            AllowedPattern=r"^$|^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$",
            Description="KMS key ARN for snapshot exports (required with ExportBucket)",
        ),
        scripts_s3_prefix=add(
            "ScriptsS3Prefix",
            Type="String",
            Default="",
            AllowedPattern=r"^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$",
            Description="Optional: bucket/prefix/ the users spec's s3:// SQL scripts may be read from "
            "(the role may read objects under it); empty: inline scripts only",
        ),
        db_ca_bundle=add(
            "DbCaBundle",
            Type="String",
            Default="",
            Description="Path in the function of the PEM bundle that verifies the restored cluster's TLS "
            "certificate: /var/task/certs/global-bundle.pem after python -m infra.package --ca-bundle "
            "global-bundle.pem. Required while DbTlsVerify is true",
        ),
        db_tls_verify=add(
            "DbTlsVerify",
            Type="String",
            Default="true",
            AllowedValues=["true", "false"],
            Description="Verify the restored cluster's certificate chain and host name against DbCaBundle. "
            "false: TLS is still required, but the server is not authenticated",
        ),
        poll_min_seconds=seconds(
            "PollMinSeconds", defaults.poll_min_seconds, 1, 3600, "Shortest wait between two status checks"
        ),
        poll_max_seconds=seconds(
            "PollMaxSeconds", defaults.poll_max_seconds, 1, 3600, "Longest wait between two status checks"
        ),
        copy_max_wait_seconds=seconds(
            "CopyMaxWaitSeconds",
            defaults.copy_max_wait_seconds,
            60,
            MAX_WAIT_LIMITS_SECONDS["copy_max_wait_seconds"],
            "A copy not done after this long fails with PollTimeout",
        ),
        restore_max_wait_seconds=seconds(
            "RestoreMaxWaitSeconds",
            defaults.restore_max_wait_seconds,
            60,
            MAX_WAIT_LIMITS_SECONDS["restore_max_wait_seconds"],
            "A restore, delete or rename not done after this long fails with PollTimeout",
        ),
        audit_ttl_days=add(
            "AuditTtlDays",
            Type="Number",
            Default=defaults.audit_ttl_days,
            MinValue=1,
            MaxValue=3650,
            Description="Days an audit event is kept",
        ),
        schedule_expression=add(
            "ScheduleExpression",
            Type="String",
            Default="",
            Description="Optional: start a refresh on this EventBridge Scheduler expression, "
            "e.g. cron(0 2 ? * MON-FRI *); empty: no schedule",
        ),
        schedule_timezone=add(
            "ScheduleTimezone",
            Type="String",
            Default="UTC",
            Description="Time zone of ScheduleExpression, e.g. Europe/Berlin",
        ),
        schedule_input=add(
            "ScheduleInput",
            Type="String",
            Default="",
            Description='The request the schedule starts (JSON, the seed\'s {"body": ...} or unwrapped; '
            "leave out operation_id so each run gets its own)",
        ),
        source_account_role_arns=add(
            "SourceAccountRoleArns",
            Type="CommaDelimitedList",
            Default="",
            Description="Roles of the source-account stacks (infra/build_template.py --source-account), "
            "one per account that owns source snapshots: the account id in each ARN maps the account to "
            "its role. Add each such account's ShareableKeyArn to SourceKmsKeyArns",
        ),
        source_account_external_id=add(
            "SourceAccountExternalId",
            Type="String",
            Default="",
            NoEcho=True,
            AllowedPattern=r"^$|^[\w+=,.@:/-]{16,1224}$",
            Description="The ExternalId the source-account stacks were deployed with (16 characters or more)",
        ),
    )
    template.set_metadata(
        {
            "AWS::CloudFormation::Interface": {
                "ParameterGroups": [
                    _group(
                        "Deployment",
                        params.stage,
                        params.log_retention_days,
                        params.log_level,
                        params.notification_email,
                        params.reserved_concurrency,
                    ),
                    _group(
                        "Targets and safety",
                        params.allowed_target_pattern,
                        params.unmanaged_target_prefix,
                        params.target_kms_key_arn,
                        params.source_kms_key_arns,
                        params.source_regions,
                        params.source_account_role_arns,
                        params.source_account_external_id,
                    ),
                    _group(
                        "Restored clusters",
                        params.default_instance_class,
                        params.default_subnet_group,
                        params.default_security_group_ids,
                        params.default_cluster_parameter_group,
                    ),
                    _group(
                        "Credentials",
                        params.secrets_prefix,
                        params.allow_rds_managed_secrets,
                        params.secrets_kms_key_arns,
                    ),
                    _group(
                        "Database connection",
                        params.db_ca_bundle,
                        params.db_tls_verify,
                        params.scripts_s3_prefix,
                    ),
                    _group(
                        "Snapshot export",
                        params.export_bucket,
                        params.export_role_arn,
                        params.export_kms_key_arn,
                    ),
                    _group(
                        "Waits",
                        params.poll_min_seconds,
                        params.poll_max_seconds,
                        params.copy_max_wait_seconds,
                        params.restore_max_wait_seconds,
                        params.audit_ttl_days,
                    ),
                    _group(
                        "Schedule",
                        params.schedule_expression,
                        params.schedule_timezone,
                        params.schedule_input,
                    ),
                ]
            }
        }
    )
    return params


def _group(label: str, *members: Parameter) -> dict[str, Any]:
    return {"Label": {"default": label}, "Parameters": [p.title for p in members]}
