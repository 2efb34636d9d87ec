"""Print the aurora-restore CloudFormation template, built with troposphere.

    python infra/build_template.py                      # JSON on stdout, stage dev
    python infra/build_template.py --format yaml -o template.yaml --stage prod
    python infra/build_template.py -o tests/golden/template.json   # refresh the golden copy
    python infra/build_template.py --diagram            # Mermaid flowchart of the state machine
    python infra/build_template.py --update-docs        # rewrite the diagrams and the architecture's table
    python infra/build_template.py --source-account     # the source-account stack (docs/deploy.md)

The state machine is generated from the registered steps (``infra/state_machine.py``); the
function's code is the local zip ``build/lambda.zip`` (``python -m infra.package``), which
``aws cloudformation package`` uploads. See docs/deploy.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    # Run as a script (python infra/build_template.py): make the checkout importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from troposphere import (
    And,
    Equals,
    Export,
    GetAtt,
    If,
    Join,
    Not,
    NoValue,
    Output,
    Parameter,
    Ref,
    Sub,
    Tags,
    Template,
    awslambda,
    cloudwatch,
    dynamodb,
    events,
    iam,
    kms,
    logs,
    scheduler,
    sns,
    stepfunctions,
)

from dispatcher.settings import PREFIX as SETTINGS_PREFIX
from dispatcher.settings import Settings
from dispatcher.store import AUDIT_TABLE_KEYS, AUDIT_TTL_ATTRIBUTE, STATE_TABLE_KEYS
from infra import policies
from infra.network import Network, add_network
from infra.operator_policy import operator_statements
from infra.parameters import Parameters, add_parameters
from infra.pipeline import FUNCTION_TIMEOUT_SECONDS
from infra.state_machine import (
    DISPATCHER_ARN_VARIABLE,
    PipelineError,
    build_definition,
    dispatcher_steps,
    to_mermaid,
)
from infra.state_table import to_state_table, update_state_table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dispatcher.registry import Registry

#: The Lambda runtime and architecture; infra/package.py builds the zip for exactly these.
LAMBDA_RUNTIME = "python3.12"
LAMBDA_ARCHITECTURE = "arm64"
LAMBDA_HANDLER = "dispatcher.handler.lambda_handler"
LAMBDA_MEMORY_MB = 512
#: Where ``python -m infra.package`` writes the zip; ``aws cloudformation package`` uploads it.
DEFAULT_CODE = "build/lambda.zip"

# Condition names (kept as constants: resources refer to them by name).
HAS_TARGET_KEY = "HasTargetKmsKey"
HAS_SOURCE_KEYS = "HasSourceKmsKeys"
HAS_SOURCE_REGIONS = "HasSourceRegions"
HAS_SECRETS_KEYS = "HasSecretsKmsKeys"
HAS_UNMANAGED_PREFIX = "HasUnmanagedTargetPrefix"
HAS_EMAIL = "HasNotificationEmail"
HAS_SCHEDULE = "HasSchedule"
HAS_EXPORT = "HasExport"
HAS_EXPORT_KEY = "HasExportKmsKey"
ALLOWS_RDS_MANAGED_SECRETS = "AllowsRdsManagedSecrets"
HAS_RESERVED_CONCURRENCY = "HasReservedConcurrency"
HAS_SCRIPTS_PREFIX = "HasScriptsS3Prefix"
HAS_SOURCE_ACCOUNTS = "HasSourceAccountRoles"


def main(argv: Sequence[str] | None = None) -> int:
    """Build the template (or the diagram) and print it or write it to ``-o``."""
    args = parse_args(argv)
    if args.update_docs:
        try:
            changed = update_diagrams(to_mermaid(build_definition()))
            table_changed = update_state_table(builtin_state_table(), ROOT / STATE_TABLE_DOCUMENT)
        except PipelineError as exc:
            print(f"build_template: {exc}", file=sys.stderr)
            return 1
        for path in changed:
            print(f"updated the state machine diagram in {path.relative_to(ROOT)}")
        if table_changed:
            print(f"updated the table of the execution's data in {STATE_TABLE_DOCUMENT}")
        return 0
    try:
        text = _build_text(args)
    except PipelineError as exc:
        print(f"build_template: {exc}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _build_text(args: argparse.Namespace) -> str:
    """The template (or the diagram) as text, for the built-in steps (and plugins when asked)."""
    registry = None
    if args.plugins:
        from dispatcher.registry import load_builtin_steps

        registry = load_builtin_steps()
        registry.load_plugins()
    if args.diagram:
        return to_mermaid(build_definition(registry))
    if args.source_account:
        from infra.source_account import build_source_account_template

        return render(build_source_account_template(stage=args.stage), args.format)
    template = build_template(stage=args.stage, code=args.code, registry=registry, plugins=args.plugins)
    return render(template, args.format)


#: The checkout's root, where the documents embedding the diagram live.
ROOT = Path(__file__).resolve().parents[1]
#: The documents that show the state machine diagram (``--update-docs`` rewrites each copy).
DIAGRAM_DOCUMENTS = ("README.md", "docs/deploy.md")
#: The document with the generated table of the execution's data (``--update-docs`` rewrites it).
STATE_TABLE_DOCUMENT = "docs/architecture.md"
#: A copy of the state machine diagram in a document: the only Mermaid flowchart from ``start``.
_DIAGRAM_BLOCK = re.compile(r"```mermaid\nflowchart TD\n    start\(\(start\)\).*?```", re.DOTALL)


def builtin_state_table(registry: Registry | None = None) -> str:
    """docs/architecture.md's table of the execution's data for the built-in steps (or ``registry``)."""
    from dispatcher.registry import load_builtin_steps

    registry = registry or load_builtin_steps()
    return to_state_table(build_definition(registry), registry)


def update_diagrams(diagram: str, root: Path = ROOT) -> list[Path]:
    """Rewrite every copy of the state machine diagram in :data:`DIAGRAM_DOCUMENTS`; the changed files.

    A document without a copy is an error: the documents promise the diagram.
    """
    changed = []
    block = "```mermaid\n" + diagram + "```"
    for name in DIAGRAM_DOCUMENTS:
        path = root / name
        text = path.read_text()
        if not _DIAGRAM_BLOCK.search(text):
            raise PipelineError(f"{name} has no state machine diagram (a ```mermaid flowchart TD from start)")
        updated = _DIAGRAM_BLOCK.sub(lambda _: block, text)
        if updated != text:
            path.write_text(updated)
            changed.append(path)
    return changed


def render(template: Template, fmt: str = "json") -> str:
    """The template as text, exactly as written to stdout or ``-o`` (the golden copy is this)."""
    return template.to_yaml() if fmt == "yaml" else template.to_json(indent=2) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--format", choices=("json", "yaml"), default="json", help="output format (json)")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    parser.add_argument("--stage", default="dev", help="default of the Stage parameter (dev)")
    parser.add_argument(
        "--code",
        default=DEFAULT_CODE,
        help="the function's code: a local zip for `aws cloudformation package` (default "
        f"{DEFAULT_CODE}), or s3://bucket/key of a zip already uploaded",
    )
    parser.add_argument(
        "--plugins",
        action="store_true",
        help="include third-party steps from the aurora_restore.steps entry point (and load them in Lambda)",
    )
    parser.add_argument(
        "--diagram", action="store_true", help="print a Mermaid flowchart of the state machine"
    )
    parser.add_argument(
        "--source-account",
        action="store_true",
        help="print the source-account stack instead: the role and key the production account lends the "
        "refresh stack for cross-account snapshots",
    )
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="rewrite the state machine diagram in README.md and docs/deploy.md and the table of the "
        f"execution's data in {STATE_TABLE_DOCUMENT} from the built-in steps",
    )
    return parser.parse_args(argv)


def build_template(
    *, stage: str = "dev", code: str = DEFAULT_CODE, registry: Registry | None = None, plugins: bool = False
) -> Template:
    """The whole stack: parameters, the dispatcher, tables, topic, state machine, alarms, schedule."""
    template = Template()
    template.set_version("2010-09-09")
    template.set_description(
        "aurora-restore: refresh an Aurora PostgreSQL cluster from a snapshot, across regions, safely "
        "(Step Functions + one dispatcher Lambda). Generated by infra/build_template.py; do not edit."
    )
    params = add_parameters(template, stage)
    add_conditions(template, params)
    add_rules(template, params)
    key = add_stack_key(template, params)
    state_table, audit_table = add_tables(template, params, key)
    topic = add_topic(template, params, key)
    network = add_network(template, params.stage)
    if registry is None:
        from dispatcher.registry import load_builtin_steps

        registry = load_builtin_steps()
    function, function_logs = add_dispatcher(
        template, params, key, state_table, audit_table, topic, network, registry, code=code, plugins=plugins
    )
    state_machine = add_state_machine(template, params, key, function, registry)
    add_rds_events(template, params, function)
    add_alarms(template, params, state_machine, function, topic)
    add_schedule(template, params, state_machine)
    operator_policy = add_operator_policy(template, params, state_machine, state_table, audit_table, key)
    add_outputs(
        template,
        state_machine,
        function,
        function_logs,
        state_table,
        audit_table,
        topic,
        key,
        operator_policy,
    )
    return template


# -- conditions and rules ---------------------------------------------------------------------------
def _given(parameter: Parameter) -> Not:
    """The parameter is not empty (for a list: joined, it is not empty)."""
    value = (
        Join("", Ref(parameter)) if parameter.properties["Type"] == "CommaDelimitedList" else Ref(parameter)
    )
    return Not(Equals(value, ""))


def add_conditions(template: Template, params: Parameters) -> None:
    """Conditions for the optional parts."""
    template.add_condition(HAS_TARGET_KEY, _given(params.target_kms_key_arn))
    template.add_condition(HAS_SOURCE_KEYS, _given(params.source_kms_key_arns))
    template.add_condition(HAS_SOURCE_REGIONS, _given(params.source_regions))
    template.add_condition(HAS_SECRETS_KEYS, _given(params.secrets_kms_key_arns))
    template.add_condition(HAS_UNMANAGED_PREFIX, _given(params.unmanaged_target_prefix))
    template.add_condition(HAS_EMAIL, _given(params.notification_email))
    template.add_condition(
        HAS_SCHEDULE, And(_given(params.schedule_expression), _given(params.schedule_input))
    )
    template.add_condition(HAS_EXPORT, And(_given(params.export_bucket), _given(params.export_role_arn)))
    template.add_condition(
        HAS_EXPORT_KEY, And(_given(params.export_bucket), _given(params.export_kms_key_arn))
    )
    template.add_condition(ALLOWS_RDS_MANAGED_SECRETS, Equals(Ref(params.allow_rds_managed_secrets), "true"))
    template.add_condition(HAS_SCRIPTS_PREFIX, _given(params.scripts_s3_prefix))
    template.add_condition(HAS_SOURCE_ACCOUNTS, _given(params.source_account_role_arns))
    template.add_condition(HAS_RESERVED_CONCURRENCY, Not(Equals(Ref(params.reserved_concurrency), "-1")))


def _given_in_rule(parameter: Parameter) -> Not | dict[str, Any]:
    """``_given`` for the Rules section, which has no Fn::Join: a list has a non-empty member."""
    if parameter.properties["Type"] == "CommaDelimitedList":
        return Not({"Fn::EachMemberEquals": [Ref(parameter), ""]})
    return _given(parameter)


def add_rules(template: Template, params: Parameters) -> None:
    """Parameter combinations CloudFormation refuses before creating anything."""
    template.add_rule(
        "ScheduleNeedsAnInput",
        {
            "RuleCondition": _given_in_rule(params.schedule_expression),
            "Assertions": [
                {
                    "Assert": _given_in_rule(params.schedule_input),
                    "AssertDescription": "ScheduleExpression is set: ScheduleInput must hold the request",
                }
            ],
        },
    )
    template.add_rule(
        "ExportNeedsARoleAndAKey",
        {
            "RuleCondition": _given_in_rule(params.export_bucket),
            "Assertions": [
                {
                    "Assert": And(
                        _given_in_rule(params.export_role_arn), _given_in_rule(params.export_kms_key_arn)
                    ),
                    "AssertDescription": "ExportBucket needs ExportRoleArn and ExportKmsKeyArn",
                }
            ],
        },
    )
    template.add_rule(
        "TlsVerificationNeedsACaBundle",
        {
            "RuleCondition": Equals(Ref(params.db_tls_verify), "true"),
            "Assertions": [
                {
                    "Assert": _given_in_rule(params.db_ca_bundle),
                    "AssertDescription": "DbTlsVerify is true: DbCaBundle must name the CA bundle shipped in "
                    "the zip (/var/task/certs/global-bundle.pem after python -m infra.package --ca-bundle "
                    "global-bundle.pem); DbTlsVerify=false connects without verifying the server",
                }
            ],
        },
    )


# -- data, encryption, notifications ---------------------------------------------------------------
def _name(params: Parameters, pattern: str) -> Sub:
    """A resource name with the stage in it, e.g. ``aurora-restore-pipeline-${Stage}``."""
    return Sub(pattern, Stage=Ref(params.stage))


def _table_name(params: Parameters, base: str) -> Sub:
    """Fixed table names, so the documented ``aws dynamodb`` commands work; a suffix for a second stack."""
    return Sub(base + "${Suffix}", Suffix=Ref(params.table_name_suffix))


def _tags(params: Parameters, **extra: Any) -> Tags:
    return Tags(
        {"aurora-restore:stage": Ref(params.stage), "aurora-restore:component": "aurora-restore", **extra}
    )


#: What parliament (``tests/functional/test_parliament.py``) still reports on the stack key's
#: policy, keyed by finding and statement Sid, with why the statement is right as it is.
KEY_POLICY_PARLIAMENT_EXPLAINED = {
    ("RESOURCE_STAR", "AccountAdministersTheKeyThroughIam"): 'in a key policy Resource "*" is this '
    "key; the account delegates its use to IAM policies (KMS Developer Guide, default key policy)",
    ("RESOURCE_STAR", "CloudWatchLogsEncryptsThisAccountsLogGroups"): 'in a key policy "*" is this key',
    ("RESOURCE_STAR", "CloudWatchAlarmsPublishToTheTopic"): 'in a key policy "*" is this key',
    ("UNKNOWN_CONDITION_FOR_ACTION", "CloudWatchLogsEncryptsThisAccountsLogGroups"): "the statement is "
    "CloudWatch Logs' documented one (kms:Describe* with the kms:EncryptionContext:aws:logs:arn "
    "condition, encrypt-log-data-kms.html); the describe actions carry no encryption context",
    ("MISMATCHED_TYPE", "CloudWatchLogsEncryptsThisAccountsLogGroups"): "CloudWatch Logs documents "
    "ArnLike on kms:EncryptionContext:aws:logs:arn, whose value is the log group's ARN",
}


def add_stack_key(template: Template, params: Parameters) -> kms.Key:
    """The stack's own KMS key: tables, topic, log groups and the function's environment.

    Retained with the tables: deleting it would make the retained tables unreadable.
    """
    key = template.add_resource(
        kms.Key(
            "StackKey",
            Description=_name(params, "aurora-restore ${Stage}: state, audit, notifications and logs"),
            EnableKeyRotation=True,
            PendingWindowInDays=30,
            DeletionPolicy="Retain",
            UpdateReplacePolicy="Retain",
            KeyPolicy={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        # The account's IAM policies decide who uses the key (the roles below).
                        "Sid": "AccountAdministersTheKeyThroughIam",
                        "Effect": "Allow",
                        "Principal": {"AWS": Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
                        "Action": "kms:*",
                        "Resource": "*",
                    },
                    {
                        "Sid": "CloudWatchLogsEncryptsThisAccountsLogGroups",
                        "Effect": "Allow",
                        "Principal": {"Service": Sub("logs.${AWS::Region}.amazonaws.com")},
                        "Action": [
                            "kms:Encrypt*",
                            "kms:Decrypt*",
                            "kms:ReEncrypt*",
                            "kms:GenerateDataKey*",
                            "kms:Describe*",
                        ],
                        "Resource": "*",
                        "Condition": {
                            "ArnLike": {
                                "kms:EncryptionContext:aws:logs:arn": Sub(
                                    "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"
                                )
                            }
                        },
                    },
                    {
                        # Alarms publish to the encrypted topic; CloudWatch cannot use the AWS managed
                        # SNS key, so the topic uses this one.
                        "Sid": "CloudWatchAlarmsPublishToTheTopic",
                        "Effect": "Allow",
                        "Principal": {"Service": "cloudwatch.amazonaws.com"},
                        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                        "Resource": "*",
                        # Only this stack's alarms, so no other account's alarm can make CloudWatch
                        # use the key (confused deputy; SNS Developer Guide, "Key management",
                        # sns-key-management.html#compatibility-with-aws-services).
                        "Condition": {
                            "StringEquals": {"aws:SourceAccount": Ref("AWS::AccountId")},
                            "ArnLike": {
                                "aws:SourceArn": Sub(
                                    "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:"
                                    "alarm:aurora-restore-${Stage}-*",
                                    Stage=Ref(params.stage),
                                )
                            },
                        },
                    },
                ],
            },
        )
    )
    template.add_resource(
        kms.Alias(
            "StackKeyAlias", AliasName=_name(params, "alias/aurora-restore-${Stage}"), TargetKeyId=Ref(key)
        )
    )
    return key


def _table(
    title: str, name: Sub, keys: dict[str, str], key: kms.Key, params: Parameters, ttl: str | None = None
) -> dynamodb.Table:
    table = dynamodb.Table(
        title,
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[dynamodb.KeySchema(AttributeName=k, KeyType=t) for k, t in keys.items()],
        AttributeDefinitions=[dynamodb.AttributeDefinition(AttributeName=k, AttributeType="S") for k in keys],
        PointInTimeRecoverySpecification=dynamodb.PointInTimeRecoverySpecification(
            PointInTimeRecoveryEnabled=True
        ),
        SSESpecification=dynamodb.SSESpecification(SSEEnabled=True, SSEType="KMS", KMSMasterKeyId=Ref(key)),
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
        Tags=_tags(params),
    )
    if ttl:
        table.TimeToLiveSpecification = dynamodb.TimeToLiveSpecification(AttributeName=ttl, Enabled=True)
    return table


def add_tables(template: Template, params: Parameters, key: kms.Key) -> tuple[dynamodb.Table, dynamodb.Table]:
    """State and audit tables (keys from ``dispatcher.store``), kept when the stack is deleted."""
    state = template.add_resource(
        _table("StateTable", _table_name(params, "aurora-restore-state"), STATE_TABLE_KEYS, key, params)
    )
    audit = template.add_resource(
        _table(
            "AuditTable",
            _table_name(params, "aurora-restore-audit"),
            AUDIT_TABLE_KEYS,
            key,
            params,
            ttl=AUDIT_TTL_ATTRIBUTE,
        )
    )
    return state, audit


def add_topic(template: Template, params: Parameters, key: kms.Key) -> sns.Topic:
    """The notification topic, encrypted, with an optional e-mail subscription."""
    topic = template.add_resource(
        sns.Topic(
            "NotificationTopic",
            TopicName=_name(params, "aurora-restore-${Stage}"),
            DisplayName="aurora-restore",
            KmsMasterKeyId=Ref(key),
            Tags=_tags(params),
        )
    )
    template.add_resource(
        sns.SubscriptionResource(
            "NotificationEmailSubscription",
            Condition=HAS_EMAIL,
            TopicArn=Ref(topic),
            Protocol="email",
            Endpoint=Ref(params.notification_email),
        )
    )
    return topic


# -- the dispatcher function -----------------------------------------------------------------------
def function_environment(
    params: Parameters,
    state_table: dynamodb.Table,
    audit_table: dynamodb.Table,
    topic: sns.Topic,
    plugins: bool,
) -> dict[str, Any]:
    """``AURORA_RESTORE_*`` variables read by ``dispatcher.settings.Settings.from_env``.

    Every setting but ``db_endpoint_override``, the local rehearsal's seam, which a deployed
    function must never have, and ``stack_region``, which Lambda itself sets (``AWS_REGION``).
    """
    defaults = Settings()
    values: dict[str, Any] = {
        "stage": Ref(params.stage),
        "state_table": Ref(state_table),
        "audit_table": Ref(audit_table),
        "topic_arn": Ref(topic),
        "default_kms_key_id": Ref(params.target_kms_key_arn),
        "allowed_target_pattern": Ref(params.allowed_target_pattern),
        "default_instance_class": Ref(params.default_instance_class),
        "default_subnet_group": Ref(params.default_subnet_group),
        "default_security_group_ids": Join(",", Ref(params.default_security_group_ids)),
        "default_cluster_parameter_group": Ref(params.default_cluster_parameter_group),
        "secrets_prefix": Ref(params.secrets_prefix),
        "scripts_s3_prefix": Ref(params.scripts_s3_prefix),
        "export_bucket": Ref(params.export_bucket),
        "export_role_arn": Ref(params.export_role_arn),
        "export_kms_key_id": Ref(params.export_kms_key_arn),
        "poll_min_seconds": Ref(params.poll_min_seconds),
        "poll_max_seconds": Ref(params.poll_max_seconds),
        "copy_max_wait_seconds": Ref(params.copy_max_wait_seconds),
        "restore_max_wait_seconds": Ref(params.restore_max_wait_seconds),
        "audit_ttl_days": Ref(params.audit_ttl_days),
        "db_connect_timeout_seconds": str(int(defaults.db_connect_timeout_seconds)),
        "db_connect_attempts": str(defaults.db_connect_attempts),
        "db_ca_bundle": Ref(params.db_ca_bundle),
        "db_tls_verify": Ref(params.db_tls_verify),
        "password_reset_max_wait_seconds": str(defaults.password_reset_max_wait_seconds),
        "load_plugins": "true" if plugins else "false",
        "log_level": Ref(params.log_level),
        "source_kms_key_arns": Join(",", Ref(params.source_kms_key_arns)),
        "source_account_role_arns": Join(",", Ref(params.source_account_role_arns)),
        "source_account_external_id": Ref(params.source_account_external_id),
    }
    return {SETTINGS_PREFIX + name.upper(): value for name, value in values.items()}


def add_dispatcher(
    template: Template,
    params: Parameters,
    key: kms.Key,
    state_table: dynamodb.Table,
    audit_table: dynamodb.Table,
    topic: sns.Topic,
    network: Network,
    steps: Registry,
    *,
    code: str,
    plugins: bool,
) -> tuple[awslambda.Function, logs.LogGroup]:
    """The one Lambda function every Task invokes, its log group and its role.

    The role allows what the registered steps declare they call (``aws_actions``).
    """
    log_group = template.add_resource(
        logs.LogGroup(
            "DispatcherLogGroup",
            LogGroupName=_name(params, "/aws/lambda/aurora-restore-dispatcher-${Stage}"),
            RetentionInDays=Ref(params.log_retention_days),
            KmsKeyId=GetAtt(key, "Arn"),
            Tags=_tags(params),
        )
    )
    # One region per stack, its own: one regional KMS key and one VPC cannot serve another, and
    # validate_request refuses a request for any other region before anything starts.
    target_regions = [Ref("AWS::Region")]
    role = template.add_resource(
        iam.Role(
            "DispatcherRole",
            Description=_name(params, "aurora-restore ${Stage}: the dispatcher function"),
            AssumeRolePolicyDocument=policies.assume_role_policy(
                "lambda.amazonaws.com", source_account=False
            ),
            Policies=[
                iam.Policy(
                    PolicyName="aurora-restore-dispatcher",
                    PolicyDocument={
                        "Version": "2012-10-17",
                        "Statement": policies.for_declared_actions(
                            policies.dispatcher_statements(
                                target_regions=target_regions,
                                state_table_arn=GetAtt(state_table, "Arn"),
                                audit_table_arn=GetAtt(audit_table, "Arn"),
                                topic=Ref(topic),
                                stack_key_arn=GetAtt(key, "Arn"),
                                log_group_arn=GetAtt(log_group, "Arn"),
                                target_kms_key=Ref(params.target_kms_key_arn),
                                source_kms_keys=Ref(params.source_kms_key_arns),
                                source_regions=Ref(params.source_regions),
                                secrets_kms_keys=Ref(params.secrets_kms_key_arns),
                                unmanaged_prefix=Ref(params.unmanaged_target_prefix),
                                secrets_prefix=Ref(params.secrets_prefix),
                                export_role_arn=Ref(params.export_role_arn),
                                export_kms_key=Ref(params.export_kms_key_arn),
                                scripts_prefix=Ref(params.scripts_s3_prefix),
                                conditions={
                                    "unmanaged_prefix": HAS_UNMANAGED_PREFIX,
                                    "export": HAS_EXPORT,
                                    "export_key": HAS_EXPORT_KEY,
                                    "target_key": HAS_TARGET_KEY,
                                    "source_keys": HAS_SOURCE_KEYS,
                                    "source_regions": HAS_SOURCE_REGIONS,
                                    "secrets_keys": HAS_SECRETS_KEYS,
                                    "rds_managed_secrets": ALLOWS_RDS_MANAGED_SECRETS,
                                    "scripts": HAS_SCRIPTS_PREFIX,
                                    "source_accounts": HAS_SOURCE_ACCOUNTS,
                                },
                                source_account_roles=Ref(params.source_account_role_arns),
                            ),
                            dispatcher_steps(steps),
                            target_regions=target_regions,
                        ),
                    },
                ),
                iam.Policy(
                    PolicyName="aurora-restore-dispatcher-network",
                    PolicyDocument={
                        "Version": "2012-10-17",
                        "Statement": policies.network_interface_statements(),
                    },
                ),
            ],
            Tags=_tags(params),
        )
    )
    function = awslambda.Function(
        "DispatcherFunction",
        FunctionName=_name(params, "aurora-restore-dispatcher-${Stage}"),
        Description="aurora-restore: runs the step named in the event (one function for every state)",
        Runtime=LAMBDA_RUNTIME,
        Architectures=[LAMBDA_ARCHITECTURE],
        Handler=LAMBDA_HANDLER,
        MemorySize=LAMBDA_MEMORY_MB,
        Timeout=FUNCTION_TIMEOUT_SECONDS,
        Role=GetAtt(role, "Arn"),
        TracingConfig=awslambda.TracingConfig(Mode="Active"),
        KmsKeyArn=GetAtt(key, "Arn"),
        LoggingConfig=awslambda.LoggingConfig(LogGroup=Ref(log_group)),
        Environment=awslambda.Environment(
            Variables=function_environment(params, state_table, audit_table, topic, plugins)
        ),
        VpcConfig=network.vpc_config(),
        ReservedConcurrentExecutions=If(HAS_RESERVED_CONCURRENCY, Ref(params.reserved_concurrency), NoValue),
        Tags=_tags(params),
        Metadata={
            "checkov": {
                "skip": [
                    {
                        "id": "CKV_AWS_116",
                        "comment": "Invoked synchronously by Step Functions, which retries and catches every "
                        "failure into HandleFailure; a dead-letter queue only serves asynchronous invokes",
                    },
                    {
                        "id": "CKV_AWS_115",
                        "comment": "ReservedConcurrency parameter; reserving by default fails in "
                        "accounts with the minimum concurrency quota",
                    },
                ]
            },
        },
    )
    _set_code(function, code)
    template.add_resource(function)
    return function, log_group


def _set_code(function: awslambda.Function, code: str) -> None:
    """A local path for ``aws cloudformation package``, or an uploaded ``s3://bucket/key``."""
    if code.startswith("s3://"):
        bucket, _, key = code.removeprefix("s3://").partition("/")
        function.Code = awslambda.Code(S3Bucket=bucket, S3Key=key)
        return
    # troposphere models Code as an object only; the package command wants the local path as a string.
    function.properties["Code"] = code
    metadata = function.resource.setdefault("Metadata", {})
    metadata["cfn-lint"] = {
        "config": {
            # W3002 "may only work with package": exactly the intended workflow (docs/deploy.md).
            "ignore_checks": ["W3002"]
        }
    }


# -- the state machine -------------------------------------------------------------------------------
def add_state_machine(
    template: Template,
    params: Parameters,
    key: kms.Key,
    function: awslambda.Function,
    registry: Registry | None,
) -> stepfunctions.StateMachine:
    """The generated state machine, its role, logs (to an encrypted log group) and tracing."""
    log_group = template.add_resource(
        logs.LogGroup(
            "StateMachineLogGroup",
            # /aws/vendedlogs/ keeps Step Functions off the account's log resource policy size limit.
            LogGroupName=_name(params, "/aws/vendedlogs/states/aurora-restore-pipeline-${Stage}"),
            RetentionInDays=Ref(params.log_retention_days),
            KmsKeyId=GetAtt(key, "Arn"),
            Tags=_tags(params),
        )
    )
    role = template.add_resource(
        iam.Role(
            "StateMachineRole",
            Description=_name(params, "aurora-restore ${Stage}: the state machine"),
            AssumeRolePolicyDocument=policies.assume_role_policy("states.amazonaws.com"),
            Policies=[
                iam.Policy(
                    PolicyName="aurora-restore-state-machine",
                    PolicyDocument={
                        "Version": "2012-10-17",
                        "Statement": policies.state_machine_statements(function_arn=GetAtt(function, "Arn")),
                    },
                )
            ],
            Tags=_tags(params),
        )
    )
    return template.add_resource(
        stepfunctions.StateMachine(
            "StateMachine",
            StateMachineName=_name(params, "aurora-restore-pipeline-${Stage}"),
            StateMachineType="STANDARD",
            RoleArn=GetAtt(role, "Arn"),
            Definition=build_definition(registry),
            DefinitionSubstitutions={DISPATCHER_ARN_VARIABLE: GetAtt(function, "Arn")},
            LoggingConfiguration=stepfunctions.LoggingConfiguration(
                Level="ALL",
                # The execution data holds requests and step outputs, never a secret (the steps
                # return none), and is what an operator needs to see why a refresh failed.
                IncludeExecutionData=True,
                Destinations=[
                    stepfunctions.LogDestination(
                        CloudWatchLogsLogGroup=stepfunctions.CloudWatchLogsLogGroup(
                            LogGroupArn=GetAtt(log_group, "Arn")
                        )
                    )
                ],
            ),
            TracingConfiguration=stepfunctions.TracingConfiguration(Enabled=True),
            Tags=_tags(params),
        )
    )


# -- RDS events ----------------------------------------------------------------------------------------
#: What the stack's rule matches: RDS's own events about clusters, cluster snapshots and instances.
RDS_EVENT_PATTERN = {
    "source": ["aws.rds"],
    "detail-type": ["RDS DB Cluster Event", "RDS DB Cluster Snapshot Event", "RDS DB Instance Event"],
}
#: The rule's input transformer: the whole event under ``event``, beside the step to route it to.
RDS_EVENT_INPUT_TEMPLATE = '{"step": "rds_event", "event": <aws.events.event.json>}'


def add_rds_events(template: Template, params: Parameters, function: awslambda.Function) -> None:
    """RDS's events about clusters, snapshots and instances, sent to the dispatcher as hints.

    The event step checks the resource an event names for whoever waits on it; with no rule (or
    events lost) the waiting Tasks fall back to polling. The pattern does not filter by name: the
    stack's clusters keep their operators' names, and an event nobody waits on costs one read.
    """
    rule = template.add_resource(
        events.Rule(
            "RdsEventsRule",
            Name=_name(params, "aurora-restore-rds-events-${Stage}"),
            Description="aurora-restore: RDS cluster, cluster snapshot and instance events end waits early",
            EventPattern=RDS_EVENT_PATTERN,
            State="ENABLED",
            Targets=[
                events.Target(
                    Id="dispatcher",
                    Arn=GetAtt(function, "Arn"),
                    InputTransformer=events.InputTransformer(
                        InputPathsMap={}, InputTemplate=RDS_EVENT_INPUT_TEMPLATE
                    ),
                    # A lost event costs only latency (the fallback poll); no point retrying for a day.
                    RetryPolicy=events.RetryPolicy(MaximumEventAgeInSeconds=600, MaximumRetryAttempts=3),
                )
            ],
        )
    )
    template.add_resource(
        awslambda.Permission(
            "RdsEventsInvokeDispatcher",
            Action="lambda:InvokeFunction",
            FunctionName=GetAtt(function, "Arn"),
            Principal="events.amazonaws.com",
            SourceArn=GetAtt(rule, "Arn"),
            SourceAccount=Ref("AWS::AccountId"),
        )
    )


# -- alarms, schedule, outputs -------------------------------------------------------------------------
def add_alarms(
    template: Template,
    params: Parameters,
    state_machine: stepfunctions.StateMachine,
    function: awslambda.Function,
    topic: sns.Topic,
) -> None:
    """A failed or timed-out refresh, or a failing function, sends an alarm to the topic."""

    def alarm(title: str, namespace: str, metric: str, dimension: str, value: Any, what: str) -> None:
        template.add_resource(
            cloudwatch.Alarm(
                title,
                AlarmName=Sub("aurora-restore-${Stage}-" + title, Stage=Ref(params.stage)),
                AlarmDescription=what,
                Namespace=namespace,
                MetricName=metric,
                Dimensions=[cloudwatch.MetricDimension(Name=dimension, Value=value)],
                Statistic="Sum",
                Period=300,
                EvaluationPeriods=1,
                Threshold=1,
                ComparisonOperator="GreaterThanOrEqualToThreshold",
                TreatMissingData="notBreaching",
                AlarmActions=[Ref(topic)],
            )
        )

    alarm(
        "ExecutionsFailedAlarm",
        "AWS/States",
        "ExecutionsFailed",
        "StateMachineArn",
        Ref(state_machine),
        "A refresh failed (HandleFailure reported it, or could not): see the failure notification",
    )
    alarm(
        "ExecutionsTimedOutAlarm",
        "AWS/States",
        "ExecutionsTimedOut",
        "StateMachineArn",
        Ref(state_machine),
        "A refresh hit the state machine's TimeoutSeconds: no failure handler ran, the target lock is held",
    )
    alarm(
        "FunctionErrorsAlarm",
        "AWS/Lambda",
        "Errors",
        "FunctionName",
        Ref(function),
        "The dispatcher function raised errors (retried ones included)",
    )


def add_schedule(template: Template, params: Parameters, state_machine: stepfunctions.StateMachine) -> None:
    """Optional: start a refresh with a fixed input on a schedule (a nightly dev refresh)."""
    role = template.add_resource(
        iam.Role(
            "ScheduleRole",
            Condition=HAS_SCHEDULE,
            Description=_name(params, "aurora-restore ${Stage}: the refresh schedule"),
            AssumeRolePolicyDocument=policies.assume_role_policy("scheduler.amazonaws.com"),
            Policies=[
                iam.Policy(
                    PolicyName="aurora-restore-schedule",
                    PolicyDocument={
                        "Version": "2012-10-17",
                        "Statement": policies.schedule_statements(state_machine_arn=Ref(state_machine)),
                    },
                )
            ],
        )
    )
    template.add_resource(
        scheduler.Schedule(
            "RefreshSchedule",
            Condition=HAS_SCHEDULE,
            Name=_name(params, "aurora-restore-${Stage}"),
            Description="Starts a refresh with the fixed ScheduleInput",
            ScheduleExpression=Ref(params.schedule_expression),
            ScheduleExpressionTimezone=Ref(params.schedule_timezone),
            FlexibleTimeWindow=scheduler.FlexibleTimeWindow(Mode="OFF"),
            State="ENABLED",
            Target=scheduler.Target(
                Arn=Ref(state_machine),
                RoleArn=GetAtt(role, "Arn"),
                Input=Ref(params.schedule_input),
                # A missed start is reported by the missing notification; a retried start could
                # run two refreshes of the same target (the lock would refuse the second).
                RetryPolicy=scheduler.RetryPolicy(MaximumRetryAttempts=0),
            ),
            Metadata={
                "checkov": {
                    "skip": [
                        {
                            "id": "CKV_AWS_297",
                            "comment": "The schedule's input is the refresh request, which holds no secret "
                            "(the request refuses plain passwords); the AWS owned key suffices",
                        }
                    ]
                }
            },
        )
    )


def add_operator_policy(
    template: Template,
    params: Parameters,
    state_machine: stepfunctions.StateMachine,
    state_table: dynamodb.Table,
    audit_table: dynamodb.Table,
    key: kms.Key,
) -> iam.ManagedPolicy:
    """The operators' least privilege for the aurora-restore commands (``infra/operator_policy.py``).

    Unnamed, so the stack deploys with ``CAPABILITY_IAM`` (a named one needs ``CAPABILITY_NAMED_IAM``);
    attach it by the ARN in the ``OperatorPolicyArn`` output.
    """
    return template.add_resource(
        iam.ManagedPolicy(
            "OperatorPolicy",
            Description=_name(params, "aurora-restore ${Stage}: start, follow, retry and unlock refreshes"),
            PolicyDocument={
                "Version": "2012-10-17",
                "Statement": operator_statements(
                    state_machine_arn=Ref(state_machine),
                    state_machine_name=GetAtt(state_machine, "Name"),
                    state_table_arn=GetAtt(state_table, "Arn"),
                    audit_table_arn=GetAtt(audit_table, "Arn"),
                    stack_key_arn=GetAtt(key, "Arn"),
                ),
            },
        )
    )


def add_outputs(
    template: Template,
    state_machine: stepfunctions.StateMachine,
    function: awslambda.Function,
    function_logs: logs.LogGroup,
    state_table: dynamodb.Table,
    audit_table: dynamodb.Table,
    topic: sns.Topic,
    key: kms.Key,
    operator_policy: iam.ManagedPolicy,
) -> None:
    """What operators and the aurora-restore CLI look up."""

    def output(title: str, value: Any, what: str) -> None:
        template.add_output(
            Output(
                title,
                Description=what,
                Value=value,
                Export=Export(Sub("${AWS::StackName}-" + title)),
            )
        )

    output("StateMachineArn", Ref(state_machine), "Start refreshes here (aws stepfunctions start-execution)")
    output("StateMachineName", GetAtt(state_machine, "Name"), "Name of the state machine")
    output("DispatcherFunctionName", Ref(function), "The dispatcher Lambda function")
    output("DispatcherFunctionArn", GetAtt(function, "Arn"), "ARN of the dispatcher Lambda function")
    output("DispatcherLogGroupName", Ref(function_logs), "The dispatcher's log group")
    output("StateTableName", Ref(state_table), "DynamoDB table of operation state and target locks")
    output("AuditTableName", Ref(audit_table), "DynamoDB table of the audit trail")
    output("NotificationTopicArn", Ref(topic), "SNS topic of success, failure and alarm notifications")
    output("StackKeyArn", GetAtt(key, "Arn"), "KMS key encrypting the tables, topic and logs")
    output(
        "DispatcherRoleArn",
        GetAtt("DispatcherRole", "Arn"),
        "The dispatcher's role: the DispatcherRoleArn of a source-account stack",
    )
    output(
        "OperatorPolicyArn",
        Ref(operator_policy),
        "Managed policy to attach to operators: the aurora-restore commands on this stack, nothing more",
    )


if __name__ == "__main__":
    sys.exit(main())
