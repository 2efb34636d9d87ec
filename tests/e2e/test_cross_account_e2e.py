"""Production in another account: the cross-account example rehearses end to end, each trap is refused.

The example (``aurora_restore/examples/cross-account-*.json``) refreshes a development cluster from
the newest snapshot of production in account 111111111111: an automated snapshot encrypted with
``aws/rds``, which AWS shares neither as automated nor under that key. The rehearsal plays both
accounts (moto held to AWS's trust, sharing and key-policy rules by ``moto_compat``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from aurora_restore.simulate.world import load_world

EXAMPLES = Path(__file__).resolve().parents[2] / "aurora_restore" / "examples"
SOURCE = "111111111111"
READ_PREFIXES = ("Describe", "List", "Get")


@pytest.fixture
def example() -> tuple[dict[str, Any], Any]:
    raw = json.loads((EXAMPLES / "cross-account-input.json").read_text())
    world = load_world((EXAMPLES / "cross-account-world.json").read_text())
    return raw, world


def source_side(world: dict[str, Any]) -> dict[str, Any]:
    """The source account as the report shows it: clusters and snapshots with tags and shares."""
    return {
        "clusters": [c for c in world["clusters"] if c.get("account") == SOURCE],
        "snapshots": [s for s in world["snapshots"] if s.get("account") == SOURCE],
    }


def changes(report: Any, *, account: str | None = None) -> list[str]:
    """The calls that changed something (tables and the notification left out), in one account."""
    return [
        f"{c['step']} {c['service']}.{c['operation']}"
        for c in report.aws_calls
        if c["service"] not in ("dynamodb", "sns", "sts")
        and not c["operation"].startswith(READ_PREFIXES)
        and c.get("account") == account
    ]


def test_the_cross_account_example_succeeds_and_leaves_the_source_account_as_it_was(
    rehearse: Any, example: tuple[dict[str, Any], Any]
) -> None:
    # GIVEN production's automated snapshot under aws/rds in another account, and its stack deployed
    raw, world = example
    # WHEN the example rehearses, each copy in progress for one poll (as copies are, for hours)
    report = rehearse(raw, world=world, copy_polls=1)
    # THEN it succeeds through the share and retire steps
    assert report.status == "SUCCEEDED", report.error
    entered = [run.name for run in report.states]
    assert {
        "ShareSourceSnapshot",
        "WaitForSourceShare",
        "CheckSourceShareStatus",
        "RetireSourceShare",
    } <= set(entered)
    # AND in the source account: a copy under the shareable key, shared with us, later unshared and deleted
    assert changes(report, account=SOURCE) == [
        "share_source_snapshot rds.CopyDBClusterSnapshot",
        # shared once the copy there is available, at the loop's check
        "check_source_share_status rds.ModifyDBClusterSnapshotAttribute",
        "retire_source_share rds.ModifyDBClusterSnapshotAttribute",
        "retire_source_share rds.DeleteDBClusterSnapshot",
    ]
    source_copy = next(
        c
        for c in report.aws_calls
        if c.get("account") == SOURCE and c["operation"] == "CopyDBClusterSnapshot"
    )
    params = source_copy["params"]
    assert params["SourceDBClusterSnapshotIdentifier"] == "rds:orders-2026-11-20-02-00"
    assert params["KmsKeyId"].startswith(f"arn:aws:kms:eu-west-1:{SOURCE}:key/")
    assert {t["Key"]: t["Value"] for t in params["Tags"]}["aurora-restore:managed"] == "true"
    share = next(
        c
        for c in report.aws_calls
        if c.get("account") == SOURCE and c["operation"] == "ModifyDBClusterSnapshotAttribute"
    )
    assert share["params"]["ValuesToAdd"] == ["123456789012"]
    # AND the copy here came from the shared copy, re-encrypted under the target key
    target_copy = next(
        c
        for c in report.aws_calls
        if c["step"] == "copy_snapshot" and c["operation"] == "CopyDBClusterSnapshot"
    )
    assert target_copy["params"]["SourceDBClusterSnapshotIdentifier"].startswith(
        f"arn:aws:rds:eu-west-1:{SOURCE}:cluster-snapshot:ar-share-"
    )
    assert target_copy["params"]["KmsKeyId"].startswith("arn:aws:kms:eu-central-1:123456789012:key/")
    # AND nothing in the source account is any different: no cluster touched, no snapshot left or shared
    assert source_side(report.world_after) == source_side(report.world_before)
    assert source_side(report.world_before)["snapshots"][0]["shared_with"] == []
    # AND the external id the role demands is nowhere in the report (calls, logs, state, audit)
    assert "rehearsal-external-id-0001" not in json.dumps(report.to_dict(), default=str)
    # AND the audit trail says what happened there
    events = [entry["event"] for entry in report.audit]
    assert "source_snapshot_copy_started" in events and "source_snapshot_shared" in events
    assert "source_snapshot_share_retired" in events


def assert_refused_before_any_change(report: Any, *words: str) -> None:
    assert report.status == "FAILED"
    assert (report.error["state"], report.error["type"]) == ("SnapshotCheck", "ValidationError"), report.error
    for word in words:
        assert word in report.error["message"], (word, report.error["message"])
    assert changes(report) == [] and changes(report, account=SOURCE) == []
    assert source_side(report.world_after) == source_side(report.world_before)
    assert report.locks == []


def test_a_key_policy_that_leaves_the_target_account_out_is_refused_before_any_change(
    rehearse: Any, example: tuple[dict[str, Any], Any]
) -> None:
    raw, world = example
    stacks = tuple(dataclasses.replace(s, key_grants_target=False) for s in world.source_account_stacks)
    report = rehearse(raw, world=dataclasses.replace(world, source_account_stacks=stacks))
    assert_refused_before_any_change(report, "does not let account 123456789012 use it", "kms:Decrypt")


@pytest.mark.slow
def test_no_source_account_stack_is_refused_before_any_change(
    rehearse: Any, example: tuple[dict[str, Any], Any]
) -> None:
    raw, world = example
    report = rehearse(raw, world=dataclasses.replace(world, source_account_stacks=()))
    assert_refused_before_any_change(report, "SourceAccountRoleArns", "--source-account")


@pytest.mark.slow
def test_a_wrong_external_id_is_refused_before_any_change(
    rehearse: Any, example: tuple[dict[str, Any], Any]
) -> None:
    raw, world = example
    stack = {**world.stack, "source_account_external_id": "someone-elses-external-id"}
    report = rehearse(raw, world=dataclasses.replace(world, stack=stack))
    assert_refused_before_any_change(report, "cannot be assumed", "SourceAccountExternalId")
    assert "someone-elses" not in report.error["message"]


def test_a_copy_that_fails_inside_the_source_account_is_removed_there_by_the_failure_handler(
    rehearse: Any, example: tuple[dict[str, Any], Any]
) -> None:
    # GIVEN the example, with the copy inside the source account ending failed (its key, say)
    raw, world = example
    report = rehearse(raw, world=world, copy_polls=1, copy_outcome="failed")
    # THEN the refresh fails in the share loop, never shared anything, and the failed copy there is gone
    assert report.status == "FAILED"
    assert (report.error["state"], report.error["type"]) == ("CheckSourceShareStatus", "CopyFailed"), (
        report.error
    )
    assert changes(report, account=SOURCE) == [
        "share_source_snapshot rds.CopyDBClusterSnapshot",
        "handle_failure rds.DeleteDBClusterSnapshot",
    ]
    assert changes(report) == [], "nothing changed in this account"
    assert source_side(report.world_after) == source_side(report.world_before)
    cleaned = report.state_item["results"]["handle_failure"]["cleaned_up"]
    assert any("in account 111111111111" in line for line in cleaned), cleaned
