"""parliament lints every IAM policy of the template; what it still reports is explained in the code.

The explanations live next to the statements (``infra.policies.PARLIAMENT_EXPLAINED`` for the roles,
``infra.build_template.KEY_POLICY_PARLIAMENT_EXPLAINED`` for the stack key), keyed by the finding
and the statement's Sid. A new finding fails until it is fixed or explained; an explanation that no
longer matches a finding fails too, so the list cannot rot.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.build_template import KEY_POLICY_PARLIAMENT_EXPLAINED, build_template
from infra.operator_policy import PARLIAMENT_EXPLAINED as OPERATOR_PARLIAMENT_EXPLAINED
from infra.policies import PARLIAMENT_EXPLAINED
from tests import iam_check

pytestmark = pytest.mark.template

ACCOUNT = "123456789012"
#: A stack with every optional part on, so every conditional statement is linted.
EVERYTHING_ON = {
    "TargetRegions": ["eu-central-1"],
    "TargetKmsKeyArn": f"arn:aws:kms:eu-central-1:{ACCOUNT}:key/target",
    "SourceKmsKeyArns": [f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/source"],
    "SourceRegions": ["eu-west-1"],
    "SecretsKmsKeyArns": [f"arn:aws:kms:eu-central-1:{ACCOUNT}:key/secrets"],
    "UnmanagedTargetPrefix": "legacy-",
    "ExportBucket": "aurora-restore-exports",
    "ExportRoleArn": f"arn:aws:iam::{ACCOUNT}:role/aurora-restore-export",
    "ExportKmsKeyArn": f"arn:aws:kms:eu-central-1:{ACCOUNT}:key/export",
    "ScriptsS3Prefix": "aurora-restore-scripts/sql/",
    "SubnetIds": ["subnet-0123456789abcdef0"],
    "SecurityGroupIds": ["sg-0123456789abcdef0"],
    "ScheduleExpression": "cron(0 2 * * ? *)",
    "ScheduleInput": "{}",
}
#: Policy documents by where they sit in a resource of each type.
DOCUMENTS = {
    "AWS::IAM::Role": lambda p: [policy["PolicyDocument"] for policy in p.get("Policies", [])],
    "AWS::IAM::Policy": lambda p: [p["PolicyDocument"]],
    "AWS::IAM::ManagedPolicy": lambda p: [p["PolicyDocument"]],
    "AWS::KMS::Key": lambda p: [p["KeyPolicy"]],
}


def findings() -> set[tuple[str, str]]:
    """(finding, Sid) for every statement of every policy document in the template."""
    from parliament import analyze_policy_string

    template: dict[str, Any] = json.loads(build_template().to_json())
    stack = iam_check.Stack(template, "eu-central-1", ACCOUNT, EVERYTHING_ON)
    found: set[tuple[str, str]] = set()
    linted = 0
    for resource in template["Resources"].values():
        documents = DOCUMENTS.get(resource["Type"], lambda _: [])(resource.get("Properties", {}))
        for document in documents:
            for statement in stack.resolve(document["Statement"]):
                linted += 1
                policy = analyze_policy_string(
                    json.dumps({"Version": "2012-10-17", "Statement": [statement]})
                )
                found |= {(f.issue, str(statement.get("Sid"))) for f in policy.findings}
    # Trust policies are left out: parliament reads a statement as an identity policy, and a trust
    # statement has no Resource by design (tests/unit/test_template.py checks them).
    assert linted > 30, "the template's policies were not found"
    return found


def test_every_parliament_finding_is_explained_next_to_its_statement() -> None:
    # GIVEN every policy, every optional statement present; WHEN parliament lints each statement
    found = findings()
    explained = {**PARLIAMENT_EXPLAINED, **KEY_POLICY_PARLIAMENT_EXPLAINED, **OPERATOR_PARLIAMENT_EXPLAINED}
    # THEN each finding is explained, and each explanation still matches a finding
    unexplained = sorted(found - set(explained))
    assert unexplained == [], f"parliament findings without an explanation: {unexplained}"
    stale = sorted(set(explained) - found)
    assert stale == [], f"explanations of findings parliament no longer reports: {stale}"
