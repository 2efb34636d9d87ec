"""parliament lints every IAM policy of the template; what it still reports is explained in the code.

The explanations live next to the statements (``infra.policies.PARLIAMENT_EXPLAINED``, keyed by the
finding and the statement's Sid). A new finding fails until it is fixed or explained; an explanation
that no longer matches a finding fails too, so the list cannot rot.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.build_template import build_template
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


def findings() -> set[tuple[str, str]]:
    """(finding, Sid) for every statement of every role's inline policies."""
    from parliament import analyze_policy_string

    template: dict[str, Any] = json.loads(build_template().to_json())
    stack = iam_check.Stack(template, "eu-central-1", ACCOUNT, EVERYTHING_ON)
    found: set[tuple[str, str]] = set()
    roles = [name for name, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    assert {"DispatcherRole", "StateMachineRole", "ScheduleRole"} <= set(roles)
    for role in roles:
        for statement in iam_check.resolve_policy(stack, role):
            policy = analyze_policy_string(json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
            found |= {(f.issue, f"{role}/{statement.get('Sid')}") for f in policy.findings}
    return found


def test_every_parliament_finding_is_explained_next_to_its_statement() -> None:
    # GIVEN every role policy, every optional statement present; WHEN parliament lints each statement
    found = {(issue, where.split("/", 1)[1]) for issue, where in findings()}
    # THEN each finding is explained, and each explanation still matches a finding
    unexplained = sorted(found - set(PARLIAMENT_EXPLAINED))
    assert unexplained == [], f"parliament findings without an explanation: {unexplained}"
    stale = sorted(set(PARLIAMENT_EXPLAINED) - found)
    assert stale == [], f"explanations of findings parliament no longer reports: {stale}"
