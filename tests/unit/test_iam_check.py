"""The IAM evaluator the policy check relies on decides as IAM's policy evaluation logic documents.

(IAM User Guide, "Policy evaluation logic" and "IAM JSON policy elements: Condition operators":
an explicit deny wins, no matching allow is an implicit deny, a missing key fails every operator
but the negated ones and ``...IfExists``, ``ForAnyValue`` needs one value to match.)
"""

from __future__ import annotations

from typing import Any

import pytest

from tests import iam_check

KEY = "arn:aws:kms:eu-central-1:123456789012:key/k1"


def request(action: str = "kms:DescribeKey", resource: str = KEY) -> iam_check.Request:
    return iam_check.Request("call #0 kms.DescribeKey", action, resource, {})


def allow(**fields: Any) -> dict[str, Any]:
    return {"Sid": "Allow", "Effect": "Allow", "Action": "kms:*", "Resource": "*", **fields}


def test_an_explicit_deny_beats_any_allow() -> None:
    statements = [allow(), {"Sid": "NoKms", "Effect": "Deny", "Action": "kms:Describe*", "Resource": KEY}]
    decision = iam_check.evaluate(statements, request())
    assert not decision.allowed and decision.statement == "NoKms"
    assert "denied explicitly by NoKms" in decision.describe()


def test_no_matching_allow_is_an_implicit_deny_naming_the_action() -> None:
    decision = iam_check.evaluate([allow(Action="sns:Publish")], request())
    assert not decision.allowed
    assert "no statement grants kms:DescribeKey" in decision.describe()
    assert KEY in decision.describe() and "call #0" in decision.describe()


def test_not_action_and_not_resource_exclude_what_they_list() -> None:
    not_action = {"Sid": "All", "Effect": "Allow", "NotAction": "kms:Describe*", "Resource": "*"}
    assert not iam_check.evaluate([not_action], request()).allowed
    assert iam_check.evaluate([not_action], request(action="kms:Decrypt")).allowed
    not_resource = {"Sid": "Others", "Effect": "Allow", "Action": "kms:*", "NotResource": KEY}
    assert not iam_check.evaluate([not_resource], request()).allowed
    assert iam_check.evaluate([not_resource], request(resource=KEY + "x")).allowed


def test_actions_match_case_insensitively_resources_by_glob() -> None:
    statement = allow(Action="KMS:describe*", Resource="arn:aws:kms:*:123456789012:key/*")
    assert iam_check.evaluate([statement], request()).allowed
    assert not iam_check.evaluate([statement], request(resource=KEY.replace("123456789012", "999"))).allowed


@pytest.mark.parametrize(
    ("condition", "context", "allowed"),
    [
        (
            {"StringEquals": {"aws:RequestedRegion": ["eu-central-1", "eu-west-1"]}},
            {"aws:RequestedRegion": "eu-west-1"},
            True,
        ),
        (
            {"StringEquals": {"aws:RequestedRegion": "eu-central-1"}},
            {"aws:RequestedRegion": "us-east-1"},
            False,
        ),
        ({"StringEquals": {"aws:RequestedRegion": "eu-central-1"}}, {}, False),
        ({"StringNotEquals": {"aws:RequestedRegion": "eu-central-1"}}, {}, True),
        ({"StringEqualsIfExists": {"aws:RequestedRegion": "eu-central-1"}}, {}, True),
        (
            {"StringLike": {"kms:ViaService": "rds.*.amazonaws.com"}},
            {"kms:ViaService": "rds.eu-central-1.amazonaws.com"},
            True,
        ),
        ({"Bool": {"kms:GrantIsForAWSResource": "true"}}, {"kms:GrantIsForAWSResource": "true"}, True),
        ({"Bool": {"kms:GrantIsForAWSResource": "true"}}, {}, False),
        (
            {"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/aws/secretsmanager"}},
            {"kms:ResourceAliases": ("alias/x", "alias/aws/secretsmanager")},
            True,
        ),
        (
            {"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/aws/secretsmanager"}},
            {"kms:ResourceAliases": ("alias/x",)},
            False,
        ),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ("a", "c")}, False),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:*:123456789012:alarm:*"}},
            {"aws:SourceArn": "arn:aws:cloudwatch:eu-central-1:123456789012:alarm:x"},
            True,
        ),
    ],
)
def test_condition_operators(condition: dict[str, Any], context: dict[str, Any], allowed: bool) -> None:
    req = iam_check.Request(
        "call #0",
        "kms:DescribeKey",
        KEY,
        {k: v if isinstance(v, tuple) else (v,) for k, v in context.items()},
    )
    assert iam_check.evaluate([allow(Condition=condition)], req).allowed is allowed


def test_every_condition_key_must_hold() -> None:
    condition = {"StringEquals": {"aws:RequestedRegion": "eu-central-1", "aws:RequestTag/managed": "true"}}
    half = iam_check.Request("call #0", "kms:DescribeKey", KEY, {"aws:RequestedRegion": ("eu-central-1",)})
    decision = iam_check.evaluate([allow(Sid="Tagged", Condition=condition)], half)
    assert not decision.allowed
    # The statement that should allow it is named, with the condition that failed.
    assert "Tagged grants it but its condition StringEquals aws:RequestTag/managed" in decision.describe()


def test_an_operator_the_check_does_not_know_is_an_error_not_a_pass() -> None:
    with pytest.raises(iam_check.IamCheckError, match="NumericLessThan"):
        iam_check.evaluate([allow(Condition={"NumericLessThan": {"x": "1"}})], request())


def test_action_names_and_arn_formats_come_from_the_iam_database() -> None:
    assert iam_check.privilege("stepfunctions", "StartExecution")["prefix"] == "states"
    assert "cluster-snapshot" in iam_check.privilege("rds", "CopyDBClusterSnapshot")["resource_types"]
    assert (
        iam_check.arn_format("rds", "cluster")
        == "arn:${Partition}:rds:${Region}:${Account}:cluster:${DbClusterInstanceName}"
    )
    with pytest.raises(iam_check.IamCheckError, match="rds:RefreshTheCluster"):
        iam_check.privilege("rds", "RefreshTheCluster")


def test_a_write_whose_resource_the_check_cannot_name_is_an_error() -> None:
    # A call added later whose identifier parameter the check does not know must not pass on "*".
    call = {
        "service": "rds",
        "operation": "RebootDBCluster",
        "region": "eu-central-1",
        "params": {"Name": "x"},
    }
    state = iam_check.WorldState("123456789012")
    with pytest.raises(iam_check.IamCheckError, match="cannot name its cluster"):
        iam_check.requests_for(0, call, state)


def test_tags_follow_renames_so_resource_tags_are_those_at_call_time() -> None:
    world = {
        "clusters": [
            {"id": "orders-dev", "region": "eu-central-1", "tags": {"managed": "true"}, "instances": ["i1"]}
        ]
    }
    state = iam_check.WorldState.from_report(world, "123456789012")
    rename = {
        "DBClusterIdentifier": "orders-dev",
        "NewDBClusterIdentifier": "orders-dev-old",
        "ApplyImmediately": True,
    }
    call = {"service": "rds", "operation": "ModifyDBCluster", "region": "eu-central-1", "params": rename}
    state.apply(call)
    delete = {
        "service": "rds",
        "operation": "DeleteDBCluster",
        "region": "eu-central-1",
        "params": {"DBClusterIdentifier": "orders-dev-old", "SkipFinalSnapshot": True},
    }
    (request,) = iam_check.requests_for(1, delete, state)
    assert request.resource.endswith(":cluster:orders-dev-old")
    assert request.context["aws:ResourceTag/managed"] == ("true",)
    assert request.context["aws:RequestedRegion"] == ("eu-central-1",)
