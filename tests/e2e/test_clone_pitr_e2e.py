"""Clones and point-in-time restores, end to end: the short path, no snapshot copy, same endings.

Each test rehearses the shipped examples (``aurora_restore/examples/clone-input.json``,
``pitr-input.json`` on ``staging-world.json``: production ``orders`` and its managed staging
cluster in one region) through the generated state machine. A live-cluster source skips the copy
(NoCopyNeeded) and the archive; the restore is RestoreDBClusterToPointInTime, placed like the old
target, tagged with the source; what AWS would refuse is refused in SnapshotCheck with no change.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from aurora_restore.simulate.world import World, load_world
from tests.e2e.conftest import seed_request
from tests.e2e.test_early_refusals_e2e import assert_refused, changes

EXAMPLES = Path(__file__).resolve().parents[2] / "aurora_restore" / "examples"
SOURCE_ARN = "arn:aws:rds:eu-west-1:123456789012:cluster:orders"


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return loaded


def staging_world() -> World:
    return load_world((EXAMPLES / "staging-world.json").read_text(), "staging-world.json")


def restore_call(report: Any) -> dict[str, Any]:
    calls = [c for c in report.aws_calls if c["operation"] == "RestoreDBClusterToPointInTime"]
    assert len(calls) == 1, calls
    params: dict[str, Any] = calls[0]["params"]
    return params


def cluster_after(report: Any, cluster_id: str) -> dict[str, Any]:
    return next(c for c in report.world_after["clusters"] if c["id"] == cluster_id)


def assert_short_path(report: Any) -> None:
    """SUCCEEDED past the copy and the archive, with no snapshot copied, made or deleted for it."""
    assert report.status == "SUCCEEDED", report.error
    entered = [run.name for run in report.states]
    assert "NoCopyNeeded" in entered and "NeedsArchive" in entered
    assert not {"CopySnapshot", "CheckCopyStatus", "ArchiveSnapshot"} & set(entered)
    made = changes(report)
    assert "rds.CopyDBClusterSnapshot" not in made and "rds.RestoreDBClusterFromSnapshot" not in made
    assert "rds.RestoreDBClusterToPointInTime" in made
    assert [n["attributes"]["status"] for n in report.notifications] == ["SUCCEEDED"]
    assert report.locks == []
    # The source is untouched: same instances, still available.
    source = cluster_after(report, "orders")
    assert source["status"] == "available" and source["instances"] == ["orders-1", "orders-2"]


def test_a_clone_refreshes_staging_under_swap_with_no_snapshot(rehearse: Any) -> None:
    # WHEN the clone example is rehearsed (swap, the default), the restore taking a poll
    report = rehearse(example("clone-input.json"), world=staging_world(), restore_polls=1)
    # THEN it takes the short path and swaps a copy-on-write clone in
    assert_short_path(report)
    params = restore_call(report)
    assert params["SourceDBClusterIdentifier"] == "orders"
    assert params["RestoreType"] == "copy-on-write" and params["UseLatestRestorableTime"] is True
    assert "RestoreToTime" not in params and "KmsKeyId" not in params
    # AND it lands where the old staging cluster was, never in production's network
    assert params["DBSubnetGroupName"] == "orders-staging"
    tags = {t["Key"]: t["Value"] for t in params["Tags"]}
    assert tags["aurora-restore:source-cluster"] == SOURCE_ARN
    assert tags["aurora-restore:source-kind"] == "clone"
    assert tags["aurora-restore:managed"] == "true"
    staging = cluster_after(report, "orders-staging")
    assert staging["tags"]["aurora-restore:source-cluster"] == SOURCE_ARN
    assert staging["tags"]["aurora-restore:operation-id"] == "op-orders-staging-clone"
    message = report.notifications[0]["message"]
    assert message["snapshot"]["source_kind"] == "clone" and message["snapshot"]["copied"] is False


def test_a_point_in_time_restore_refreshes_staging_delete_first(rehearse: Any) -> None:
    # WHEN the point-in-time example (pitr:orders@latest, delete-first) is rehearsed
    report = rehearse(example("pitr-input.json"), world=staging_world(), delete_polls=1)
    # THEN the old staging cluster went first, and a full copy as of the latest time replaced it
    assert_short_path(report)
    made = changes(report)
    assert made.index("rds.DeleteDBCluster") < made.index("rds.RestoreDBClusterToPointInTime")
    params = restore_call(report)
    assert params["RestoreType"] == "full-copy" and params["UseLatestRestorableTime"] is True
    tags = {t["Key"]: t["Value"] for t in params["Tags"]}
    assert tags["aurora-restore:source-kind"] == "pitr@latest"
    assert cluster_after(report, "orders-staging")["status"] == "available"


@pytest.mark.slow
def test_a_clone_refreshes_staging_delete_first(rehearse: Any) -> None:
    raw = seed_request(example("clone-input.json"), strategy="delete-first", operation_id="op-clone-df")
    report = rehearse(raw, world=staging_world())
    assert_short_path(report)
    assert restore_call(report)["RestoreType"] == "copy-on-write"


@pytest.mark.slow
def test_a_point_in_time_restore_to_a_given_second_under_swap(rehearse: Any) -> None:
    when = (datetime.now(timezone.utc) - timedelta(days=3)).replace(microsecond=0)
    raw = seed_request(
        example("pitr-input.json"),
        snapshot_id=f"pitr:orders@{when.isoformat().replace('+00:00', 'Z')}",
        strategy="swap",
        operation_id="op-pitr-swap",
    )
    report = rehearse(raw, world=staging_world())
    assert_short_path(report)
    params = restore_call(report)
    assert params["RestoreType"] == "full-copy" and "UseLatestRestorableTime" not in params
    assert datetime.fromisoformat(str(params["RestoreToTime"]).replace("Z", "+00:00")) == when


# -- refused before anything changes ----------------------------------------------------------------


def test_a_point_in_time_outside_the_window_is_refused_with_the_window(rehearse: Any) -> None:
    # GIVEN production keeps 7 days of backups, and the request asks for 8 days ago
    when = (datetime.now(timezone.utc) - timedelta(days=8)).replace(microsecond=0)
    raw = seed_request(example("pitr-input.json"), snapshot_id=f"pitr:orders@{when.isoformat()}")
    # WHEN it runs
    report = rehearse(raw, world=staging_world())
    # THEN SnapshotCheck refuses it naming the restorable window, and nothing changed
    assert_refused(report, "SnapshotCheck", "ValidationError", "snapshot_id", "outside", "restorable window")
    assert "DeleteTarget" not in [run.name for run in report.states]


def _with_source(world: World, **changes_: Any) -> World:
    source, *others = world.clusters
    return dataclasses.replace(world, clusters=(dataclasses.replace(source, **changes_), *others))


@pytest.mark.slow
def test_a_clone_with_another_kms_key_is_refused(rehearse: Any) -> None:
    from aurora_restore.simulate.world import KmsKeySpec

    world = staging_world()
    world = dataclasses.replace(world, kms_keys=(*world.kms_keys, KmsKeySpec("eu-west-1", "alias/staging")))
    raw = seed_request(example("clone-input.json"), kms_key_id="alias/staging")
    report = rehearse(raw, world=world)
    assert_refused(report, "SnapshotCheck", "ValidationError", "kms_key_id", "keeps its key")


@pytest.mark.slow
def test_a_clone_of_a_cluster_without_instances_is_refused(rehearse: Any) -> None:
    report = rehearse(example("clone-input.json"), world=_with_source(staging_world(), instances=()))
    assert_refused(report, "SnapshotCheck", "ValidationError", "snapshot_id", "no DB instance")
