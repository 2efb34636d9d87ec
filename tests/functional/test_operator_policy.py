"""The operators' managed policy: what the aurora-restore commands call, and nothing more.

IAM is not evaluated by moto, so the policy is held to the calls by reading both: the statements
in the generated template, and what the store really writes when ``unlock`` releases a lock (the
policy's attribute condition must let exactly that item through, or the command is denied in AWS).
"""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.store import Store
from infra.operator_policy import LOCK_KEY_PATTERN, UNLOCK_AUDIT_ATTRIBUTES
from refresh.target_lock import force_release_lock, lock_key, take_lock
from tests.contract import contract_template

pytestmark = pytest.mark.template


@pytest.fixture(scope="module")
def statements() -> dict[str, dict[str, Any]]:
    template = contract_template()
    policy = template["Resources"]["OperatorPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_the_policy_allows_only_the_commands_calls(statements: dict[str, dict[str, Any]]) -> None:
    actions = {a for s in statements.values() for a in s["Action"]}

    assert actions == {
        "cloudformation:DescribeStacks",
        "states:StartExecution",
        "states:ListExecutions",
        "states:DescribeExecution",
        "states:GetExecutionHistory",
        "states:StopExecution",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:GenerateDataKey*",
        "kms:DescribeKey",
    }
    assert all(s["Effect"] == "Allow" for s in statements.values())
    # Every statement names its resources: no "*", and the stack's own ones only.
    assert all("*" not in s["Resource"] for s in statements.values())
    assert statements["ReadTheStackOutputs"]["Resource"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/${AWS::StackName}/*"
        }
    ]
    assert statements["StartAndListRefreshes"]["Resource"] == [{"Ref": "StateMachine"}]


def test_the_policy_allows_what_the_commands_call_and_only_the_runbooks_stop_besides(
    statements: dict[str, dict[str, Any]],
) -> None:
    from aurora_restore.operator import OPERATOR_ACTIONS

    allowed = {a for s in statements.values() for a in s["Action"]}
    called = {a for actions in OPERATOR_ACTIONS.values() for a in actions}

    # GetCallerIdentity needs no permission (STS answers every authenticated caller).
    assert called - allowed == {"sts:GetCallerIdentity"}
    extra = {a for a in allowed - called if not a.startswith("kms:")}
    assert extra == {"states:StopExecution"}  # the runbook stops a hung execution before unlock/retry


def test_writes_are_fenced_to_locks_and_the_unlock_event(statements: dict[str, dict[str, Any]]) -> None:
    delete = statements["ReleaseLocksOnly"]
    put = statements["AuditLockReleases"]

    assert delete["Action"] == ["dynamodb:DeleteItem"]
    assert delete["Resource"] == [{"Fn::GetAtt": ["StateTable", "Arn"]}]
    assert delete["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["lock#*"]}}
    assert put["Action"] == ["dynamodb:PutItem"]
    assert put["Resource"] == [{"Fn::GetAtt": ["AuditTable", "Arn"]}]
    key = statements["StackKeyThroughDynamoDbOnly"]
    assert key["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}}
    }


def test_the_lock_pattern_matches_the_stores_lock_keys_and_no_operation() -> None:
    from fnmatch import fnmatchcase

    assert fnmatchcase(lock_key("eu-central-1", "orders-dev"), LOCK_KEY_PATTERN)
    assert not fnmatchcase("op-orders-dev-1", LOCK_KEY_PATTERN)


def test_the_unlock_event_is_within_the_allowed_attributes(store: Store) -> None:
    # GIVEN a lock held by an operation
    take_lock(store, "eu-central-1", "orders-dev", "op-orders-dev-1")

    # WHEN an operator releases it (what `aurora-restore unlock` does)
    released = force_release_lock(
        store, "eu-central-1", "orders-dev", released_by="arn:aws:iam::123456789012:user/dba", reason="stuck"
    )

    # THEN the one item it wrote carries only attributes the policy's PutItem condition allows
    assert released == "op-orders-dev-1"
    (event,) = [e for e in store.audit_trail("op-orders-dev-1") if e["event"] == "lock_force_released"]
    assert set(event) <= set(UNLOCK_AUDIT_ATTRIBUTES), set(event) - set(UNLOCK_AUDIT_ATTRIBUTES)
