"""The source-account template: linted, checked by checkov, its golden copy, and its role held to its calls.

The IAM part records every call the functional cross-account run makes with the role's credentials
(the whole way: copy under the shareable key, share, unshare, delete), adds what AWS checks on the
role when RDS copies under a key on its behalf, and evaluates each against the template's role
policy resolved for a deployed stack (``tests/iam_check.py``). It also asks what the role must never
do: touch a cluster, or share or delete a snapshot aurora-restore did not make.

Regenerate the golden copy after an intended change:

    python infra/build_template.py --source-account -o tests/golden/source-account.json
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.build_template import render
from infra.source_account import build_source_account_template
from tests import iam_check
from tests.functional.test_template_linters import find_checkov

pytestmark = pytest.mark.template

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "source-account.json"
REGENERATE = "python infra/build_template.py --source-account -o tests/golden/source-account.json"
SOURCE = "111111111111"
TARGET = "123456789012"
REGION = "us-east-1"
KEY = f"arn:aws:kms:{REGION}:{SOURCE}:key/shareablekey-0000"
AWS_RDS_KEY = f"arn:aws:kms:{REGION}:{SOURCE}:key/aws-rds-0000"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads(render(build_source_account_template()))


def test_the_template_matches_its_golden_copy() -> None:
    assert render(build_source_account_template()) == GOLDEN.read_text(), (
        f"the source-account template changed; if intended, run `{REGENERATE}` and commit it"
    )


def test_the_documented_command_writes_it(tmp_path: Path) -> None:
    output = tmp_path / "source-account.json"
    subprocess.run(
        [sys.executable, "infra/build_template.py", "--source-account", "-o", str(output)], cwd=ROOT, check=True
    )
    assert output.read_text() == GOLDEN.read_text()


def test_cfn_lint_reports_nothing(template: dict[str, Any]) -> None:
    from cfnlint.api import ManualArgs, lint

    matches = lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"]))
    assert [f"{m.rule.id} {m.message}" for m in matches] == []


def test_checkov_passes_with_and_without_the_stacks_own_key(template: dict[str, Any], tmp_path: Path) -> None:
    checkov = find_checkov()
    if checkov is None:
        pytest.skip("checkov not found (CHECKOV_BIN, PATH, /root/.cache/checkov-venv)")
    (tmp_path / "source-account.json").write_text(json.dumps(template))
    result = subprocess.run(
        [
            checkov,
            "--directory",
            str(tmp_path),
            "--framework",
            "cloudformation",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["results"]["failed_checks"] == []
    assert report["summary"]["passed"] >= 5 and report["summary"]["parsing_errors"] == 0


def role_statements(template: dict[str, Any], *, existing_key: str = "") -> list[dict[str, Any]]:
    stack = iam_check.Stack(
        template,
        REGION,
        SOURCE,
        {
            "TargetAccountId": TARGET,
            "DispatcherRoleArn": f"arn:aws:iam::{TARGET}:role/aurora-restore-dispatcher",
            "ExternalId": "rehearsal-external-id-0001",
            "ShareableKmsKeyArn": existing_key,
        },
    )
    return iam_check.resolve_policy(stack, role="SourceAccountRole")


def snapshot(name: str) -> str:
    return f"arn:aws:rds:{REGION}:{SOURCE}:cluster-snapshot:{name}"


def request(action: str, resource: str, **context: tuple[str, ...]) -> iam_check.Request:
    return iam_check.Request(call=action, action=action, resource=resource, context=context)


OURS = {"aws:ResourceTag/aurora-restore:managed": ("true",)}
#: What the share and retire steps ask of the role, whole way (see test_cross_account), with the
#: tags each resource carries then, plus what RDS checks on the role when it copies under a key.
NEEDED = [
    request("rds:DescribeDBClusterSnapshots", snapshot("rds:orders-2026-11-29-03-00")),
    request("rds:DescribeDBClusterSnapshots", "*"),
    request("rds:DescribeDBClusterSnapshotAttributes", snapshot("ar-share-copy")),
    request("rds:ListTagsForResource", snapshot("ar-share-copy"), **OURS),
    request("rds:CopyDBClusterSnapshot", snapshot("rds:orders-2026-11-29-03-00")),
    request("rds:CopyDBClusterSnapshot", snapshot("ar-share-copy")),
    request("rds:AddTagsToResource", snapshot("ar-share-copy")),
    request("rds:ModifyDBClusterSnapshotAttribute", snapshot("ar-share-copy"), **OURS),
    request("rds:DeleteDBClusterSnapshot", snapshot("ar-share-copy"), **OURS),
    request("kms:DescribeKey", KEY),
    request("kms:GetKeyPolicy", KEY),
    request("kms:DescribeKey", AWS_RDS_KEY),
    request("kms:CreateGrant", KEY, **{"kms:GrantIsForAWSResource": ("true",)}),
    request("kms:Encrypt", KEY),
    request("kms:GenerateDataKeyWithoutPlaintext", KEY),
    request("kms:Decrypt", AWS_RDS_KEY, **{"kms:ViaService": ("rds.us-east-1.amazonaws.com",)}),
    request(
        "kms:CreateGrant",
        AWS_RDS_KEY,
        **{"kms:ViaService": ("rds.us-east-1.amazonaws.com",), "kms:GrantIsForAWSResource": ("true",)},
    ),
]
#: What the role must never be able to do.
NEVER = [
    request("rds:ModifyDBClusterSnapshotAttribute", snapshot("rds:orders-2026-11-29-03-00")),
    request("rds:ModifyDBClusterSnapshotAttribute", snapshot("orders-manual")),
    request("rds:DeleteDBClusterSnapshot", snapshot("orders-manual")),
    request("rds:DeleteDBCluster", f"arn:aws:rds:{REGION}:{SOURCE}:cluster:orders"),
    request("rds:ModifyDBCluster", f"arn:aws:rds:{REGION}:{SOURCE}:cluster:orders"),
    request("rds:RestoreDBClusterFromSnapshot", f"arn:aws:rds:{REGION}:{SOURCE}:cluster:orders"),
    request("kms:Decrypt", AWS_RDS_KEY),  # not outside RDS
    request("kms:ScheduleKeyDeletion", KEY),
    request("kms:PutKeyPolicy", KEY),
]


def test_the_role_allows_every_call_of_the_share_and_retire_steps(template: dict[str, Any]) -> None:
    statements = role_statements(template)
    assert [d.describe() for d in iam_check.refusals(statements, NEEDED)] == []


def test_the_role_never_touches_a_cluster_or_a_snapshot_it_did_not_make(template: dict[str, Any]) -> None:
    statements = role_statements(template)
    allowed = [r.describe() for r in NEVER if iam_check.evaluate(statements, r).allowed]
    assert allowed == []


def test_an_existing_key_replaces_the_stacks_own(template: dict[str, Any]) -> None:
    other = f"arn:aws:kms:{REGION}:{SOURCE}:key/existing-0000"
    statements = role_statements(template, existing_key=other)
    assert iam_check.evaluate(statements, request("kms:Encrypt", other)).allowed
    assert not iam_check.evaluate(statements, request("kms:Encrypt", KEY)).allowed


def test_removing_any_statement_refuses_a_needed_call(template: dict[str, Any]) -> None:
    statements = role_statements(template)
    for index, removed in enumerate(statements):
        rest = statements[:index] + statements[index + 1 :]
        assert list(iam_check.refusals(rest, NEEDED)), f"{removed['Sid']} is needed by no call"


def test_trust_is_the_dispatcher_role_with_the_external_id(template: dict[str, Any]) -> None:
    trust = template["Resources"]["SourceAccountRole"]["Properties"]["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"AWS": {"Ref": "DispatcherRoleArn"}}
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
    assert template["Parameters"]["ExternalId"]["NoEcho"] is True


def test_the_key_policy_grants_the_target_account_what_a_copy_needs(template: dict[str, Any]) -> None:
    from refresh.source_accounts import NEEDED_BY_TARGET, policy_grants

    stack = iam_check.Stack(template, REGION, SOURCE, {"TargetAccountId": TARGET})
    policy = stack.resolve(template["Resources"]["ShareableKey"]["Properties"]["KeyPolicy"])
    assert all(policy_grants(json.dumps(policy), TARGET, action) for action in NEEDED_BY_TARGET)
    assert not policy_grants(json.dumps(policy), "999999999999", "kms:Decrypt")
