"""AWS's own linters on the generated template: cfn-lint (correctness) and checkov (security).

checkov lives in its own virtualenv (it pins an old boto3): found through ``CHECKOV_BIN``, then
``PATH``, then ``/root/.cache/checkov-venv/bin/checkov``. With ``AURORA_RESTORE_REQUIRE_CHECKOV=1``
(tox -e template) a missing checkov fails the run instead of skipping.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.contract import contract_template

pytestmark = pytest.mark.template

CHECKOV_CACHE = Path("/root/.cache/checkov-venv/bin/checkov")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return contract_template()


def every_option_on(template: dict[str, Any]) -> dict[str, Any]:
    """The template with each conditional policy statement and property present.

    checkov does not evaluate a statement inside ``Fn::If``; this variant shows it the
    worst case, every optional permission granted.
    """

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Fn::If"}:
                return resolve(value["Fn::If"][1])
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    variant = copy.deepcopy(template)
    variant["Resources"] = {name: resolve(r) for name, r in variant["Resources"].items()}
    for resource in variant["Resources"].values():
        resource.pop("Condition", None)
    return variant


# -- cfn-lint ----------------------------------------------------------------------------------------
def test_cfn_lint_reports_nothing(template: dict[str, Any]) -> None:
    from cfnlint.api import ManualArgs, lint

    matches = lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"]))

    assert [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches] == []


def test_the_only_cfn_lint_suppression_is_the_package_workflow(template: dict[str, Any]) -> None:
    suppressed = {
        name: resource["Metadata"]["cfn-lint"]
        for name, resource in template["Resources"].items()
        if "cfn-lint" in resource.get("Metadata", {})
    }
    # W3002 "may only work with the package command": the local zip path is meant for exactly that.
    assert suppressed == {"DispatcherFunction": {"config": {"ignore_checks": ["W3002"]}}}


# -- checkov -----------------------------------------------------------------------------------------
def find_checkov() -> str | None:
    """CHECKOV_BIN, else checkov on PATH, else the machine's checkov virtualenv."""
    configured = os.environ.get("CHECKOV_BIN")
    if configured:
        return configured
    return shutil.which("checkov") or (str(CHECKOV_CACHE) if CHECKOV_CACHE.exists() else None)


@pytest.fixture(scope="module")
def checkov_report(
    template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    checkov = find_checkov()
    if checkov is None:
        if os.environ.get("AURORA_RESTORE_REQUIRE_CHECKOV") == "1":
            pytest.fail("checkov is required (AURORA_RESTORE_REQUIRE_CHECKOV=1) but was not found")
        pytest.skip("checkov not found (CHECKOV_BIN, PATH, /root/.cache/checkov-venv) and not required")
    folder = tmp_path_factory.mktemp("checkov")
    (folder / "template.json").write_text(json.dumps(template))
    (folder / "template-every-option.json").write_text(json.dumps(every_option_on(template)))
    result = subprocess.run(
        [
            checkov,
            "--directory",
            str(folder),
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
    return report if isinstance(report, list) else [report]


def test_checkov_passes_both_as_deployed_and_with_every_option_on(
    checkov_report: list[dict[str, Any]],
) -> None:
    (report,) = checkov_report
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['resource']} in {Path(c['file_path']).name})"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 60  # both files really were checked
    checked = {Path(c["file_path"]).name for c in report["results"]["passed_checks"]}
    assert checked == {"template.json", "template-every-option.json"}


def test_every_checkov_skip_is_justified_in_the_resources_metadata(
    checkov_report: list[dict[str, Any]], template: dict[str, Any]
) -> None:
    (report,) = checkov_report
    for skipped in report["results"]["skipped_checks"]:
        resource = skipped["resource"].split(".")[-1]
        declared = {
            s["id"]: s["comment"] for s in template["Resources"][resource]["Metadata"]["checkov"]["skip"]
        }
        assert skipped["check_id"] in declared, skipped["check_id"]
        assert len(declared[skipped["check_id"]]) > 40  # a reason, not a placeholder
