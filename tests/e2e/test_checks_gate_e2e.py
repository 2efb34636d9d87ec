"""The validation gate end to end: the masking example's checks on the rehearsal's real PostgreSQL.

A copy that passes its checks replaces the target; one that fails them never does: under swap the
old target stays in place and available, the restored cluster is removed (or kept and tagged when
the request says ``keep_failed_restore``), and one FAILED notification names the failed check and
what it saw.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from aurora_restore.commands.status import check_lines
from aurora_restore.simulate.world import load_world
from refresh.request import OPERATION_TAG, RestoreRequest
from steps.handle_failure.cleanup import KEPT_TAG

EXAMPLES = Path(__file__).parents[2] / "aurora_restore" / "examples"
REGION = "eu-central-1"
TARGET = "orders-dev"


def example() -> tuple[dict[str, Any], Any]:
    """The masking example: its request and its world (the source's data, the managed target)."""
    raw = json.loads((EXAMPLES / "masking-input.json").read_text())
    world = load_world((EXAMPLES / "masking-world.json").read_text(), "masking-world.json")
    return raw, world


def unmasked(raw: dict[str, Any], operation_id: str, **fields: Any) -> dict[str, Any]:
    """The example with a masking script that masks nothing: the checks must catch it."""
    broken = copy.deepcopy(raw)
    broken["body"]["users"]["scripts"][0]["sql"] = "SELECT 1"
    broken["body"]["operation_id"] = operation_id
    broken["body"].update(fields)
    return broken


def clusters(world: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in world["clusters"] if c["region"] == REGION}


def test_the_masking_example_passes_its_checks_and_replaces_the_target(rehearse: Any) -> None:
    # GIVEN the example: a masking script and the checks that prove it worked
    raw, world = example()
    # WHEN it is rehearsed
    report = rehearse(raw, world=world)
    # THEN the refresh succeeded through the gate, every check passed, and the notification lists them
    assert report.status == "SUCCEEDED", report.error
    entered = [run.name for run in report.states]
    assert entered.index("SetupDBUsers") < entered.index("RunChecks") < entered.index("SwapClusters")
    (notification,) = report.notifications
    lines = notification["message"]["checks"]
    assert [line.split(" (")[0] for line in lines] == [
        "PASS emails-masked",
        "PASS phones-removed",
        "PASS customers-kept",
        "PASS orders-present",
    ]
    assert clusters(report.world_after)[TARGET]["tags"][OPERATION_TAG] == raw["body"]["operation_id"]


def test_a_failing_check_leaves_the_target_untouched_and_removes_the_copy(rehearse: Any) -> None:
    # GIVEN the example with a masking script that masks nothing
    raw, world = example()
    broken = unmasked(raw, "op-gate-fails")
    # WHEN it is rehearsed
    report = rehearse(broken, world=world)
    # THEN it FAILED at the gate, naming the checks that failed and what they saw
    assert report.status == "FAILED"
    assert report.error["type"] == "ChecksFailed"
    assert [run.name for run in report.states][-3:] == ["RunChecks", "HandleFailure", "RefreshFailed"]
    assert "SwapClusters" not in [run.name for run in report.states]
    # AND one notification names the check and what was seen, and says the target was not touched
    (notification,) = report.notifications
    message = notification["message"]
    assert notification["attributes"]["status"] == "FAILED"
    assert message["failed_step"] == "run_checks"
    assert "emails-masked (expected no rows, saw at least 1 row)" in message["error"]["message"]
    assert "FAIL phones-removed (expected = 0, saw 500;" in " ".join(message["checks"])
    assert "PASS customers-kept" in " ".join(message["checks"])
    assert f"did not replace {TARGET}" in message["checks_outcome"]
    # AND no customer's address reached the notification
    assert "mail-provider.test" not in json.dumps(message)
    # AND the target is still the old one, available; the restored cluster is gone
    before, after = clusters(report.world_before), clusters(report.world_after)
    assert set(after) == set(before) == {TARGET}
    for key in ("status", "instances", "tags", "writer", "endpoint"):
        assert after[TARGET][key] == before[TARGET][key], key
    assert after[TARGET]["status"] == "available"
    assert any("deleting the temporary cluster" in line for line in message["cleaned_up"])
    assert report.locks == []
    # AND `aurora-restore status` shows each check from the state item, one line each
    shown = check_lines(report.state_item, {})
    assert [line.split(" (")[0] for line in shown] == [
        "FAIL emails-masked",
        "FAIL phones-removed",
        "PASS customers-kept",
        "PASS orders-present",
    ]


def test_keep_failed_restore_keeps_the_copy_tagged_and_names_it(rehearse: Any) -> None:
    raw, world = example()
    broken = unmasked(raw, "op-gate-keeps", keep_failed_restore=True)
    report = rehearse(broken, world=world)
    assert report.status == "FAILED"
    assert report.error["type"] == "ChecksFailed"
    before, after = clusters(report.world_before), clusters(report.world_after)
    # The target is untouched; the copy that failed is kept beside it, tagged, with its writer
    for key in ("status", "instances", "tags", "writer", "endpoint"):
        assert after[TARGET][key] == before[TARGET][key], key
    kept = [c for name, c in after.items() if name != TARGET]
    assert len(kept) == 1
    assert kept[0]["tags"][KEPT_TAG] == "operation op-gate-keeps: checks failed"
    assert kept[0]["tags"][OPERATION_TAG] == "op-gate-keeps"
    assert kept[0]["instances"], "the kept copy keeps its writer, so it can be looked at"
    (notification,) = report.notifications
    cleaned = " ".join(notification["message"]["cleaned_up"])
    assert f"kept the restored cluster {kept[0]['id']}" in cleaned
    assert not [c for c in report.aws_calls if c["operation"] in ("DeleteDBCluster", "DeleteDBInstance")]


@pytest.mark.slow
def test_under_delete_first_the_notification_says_the_old_environment_is_gone(rehearse: Any) -> None:
    raw, world = example()
    broken = unmasked(raw, "op-gate-delete-first", strategy="delete-first")
    report = rehearse(broken, world=world)
    assert report.status == "FAILED"
    assert report.error["type"] == "ChecksFailed"
    (notification,) = report.notifications
    message = notification["message"]
    assert message["checks_outcome"].startswith("the old environment is already gone")
    assert message["replaced_target"]["deleted"], "delete-first deleted the target before the restore"
    # The copy that failed holds the target's name now (nothing else could be left there).
    request = RestoreRequest.from_event(broken)
    assert clusters(report.world_after)[TARGET]["tags"][OPERATION_TAG] == request.operation_id
