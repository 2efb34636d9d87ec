"""What an operator needs to run a refresh from the command line, and nothing more.

The stack outputs this as a managed policy (output ``OperatorPolicyArn``) to attach to the
people or roles on call. Each statement serves commands of ``aurora-restore`` (whose calls are
listed in ``aurora_restore.operator.OPERATOR_ACTIONS``; a test holds this policy to that list) and
their AWS CLI equivalents in docs/runbook.md:

- every command reads the stack's outputs (``cloudformation:DescribeStacks`` on this stack);
- ``start`` and ``retry`` start executions of this state machine, ``status``, ``watch`` and
  ``history`` read them, and stopping one (the runbook's ``aws stepfunctions stop-execution``) is
  the operator's way out of a hung refresh;
- ``status``, ``history`` and ``unlock`` read the state and audit tables;
- ``unlock`` deletes a lock item (only keys starting ``lock#``, never an operation's state) and
  writes its ``lock_force_released`` event to the audit table (only that event's attributes);
- the tables are encrypted with the stack's key, and DynamoDB uses it with the caller's
  permissions, so the key is usable through DynamoDB only.

``unlock`` also asks STS who is acting (``GetCallerIdentity``), which needs no permission. Nothing
here can change a cluster, read a secret or start anything but this state machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from troposphere import Sub

if TYPE_CHECKING:
    from troposphere import AWSHelperFn

#: Attributes of the audit event ``unlock`` writes (``refresh.target_lock.force_release_lock``): the audit
#: table's keys and common fields, and the event's own.
UNLOCK_AUDIT_ATTRIBUTES = (
    "operation_id",
    "event_id",
    "at",
    "event",
    "step",
    "expires_at",
    "target_region",
    "target_cluster_id",
    "released_by",
    "reason",
)
#: The state table's lock items (``refresh.target_lock.lock_key``).
LOCK_KEY_PATTERN = "lock#*"
#: What parliament reports of these statements, and why they are right as they are
#: (tests/functional/test_parliament.py).
PARLIAMENT_EXPLAINED = {
    ("RESOURCE_MISMATCH", "StartAndListRefreshes"): "states:ListExecutions also lists a Map Run's "
    "child executions (resource type mapRun); the operator lists only this state machine's executions",
    ("RESOURCE_MISMATCH", "FollowAndStopRefreshes"): "the execution actions also apply to Express "
    "executions (resource type express); this state machine is Standard, its executions are "
    "execution:<name>:*",
}


def operator_statements(
    *,
    state_machine_arn: AWSHelperFn,
    state_machine_name: AWSHelperFn,
    state_table_arn: AWSHelperFn,
    audit_table_arn: AWSHelperFn,
    stack_key_arn: AWSHelperFn,
) -> list[dict[str, Any]]:
    """Statements of the operators' managed policy (one ``Sid`` per reason)."""
    executions = Sub(
        "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${Name}:*",
        Name=state_machine_name,
    )
    return [
        {
            "Sid": "ReadTheStackOutputs",
            "Effect": "Allow",
            "Action": ["cloudformation:DescribeStacks"],
            "Resource": [
                Sub(
                    "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/${AWS::StackName}/*"
                )
            ],
        },
        {
            "Sid": "StartAndListRefreshes",
            "Effect": "Allow",
            "Action": ["states:StartExecution", "states:ListExecutions"],
            "Resource": [state_machine_arn],
        },
        {
            "Sid": "FollowAndStopRefreshes",
            "Effect": "Allow",
            "Action": ["states:DescribeExecution", "states:GetExecutionHistory", "states:StopExecution"],
            "Resource": [executions],
        },
        {
            "Sid": "ReadOperationsLocksAndAudit",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:Query"],
            "Resource": [state_table_arn, audit_table_arn],
        },
        {
            "Sid": "ReleaseLocksOnly",
            "Effect": "Allow",
            "Action": ["dynamodb:DeleteItem"],
            "Resource": [state_table_arn],
            "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [LOCK_KEY_PATTERN]}},
        },
        {
            "Sid": "AuditLockReleases",
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem"],
            "Resource": [audit_table_arn],
            "Condition": {
                "ForAllValues:StringEquals": {"dynamodb:Attributes": list(UNLOCK_AUDIT_ATTRIBUTES)}
            },
        },
        {
            "Sid": "StackKeyThroughDynamoDbOnly",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:DescribeKey"],
            "Resource": [stack_key_arn],
            "Condition": {"StringEquals": {"kms:ViaService": Sub("dynamodb.${AWS::Region}.amazonaws.com")}},
        },
    ]
