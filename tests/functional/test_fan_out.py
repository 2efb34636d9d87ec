"""Fan-out: several operations refreshing different targets from one snapshot share one copy."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.fan_out import TARGET_REGION, fan_out, source_world

# Racing threads need conditional writes that are atomic, as DynamoDB's are.
pytestmark = pytest.mark.usefixtures("atomic_dynamodb_writes")


@pytest.mark.parametrize("order", ["sequence", "interleaved", "still copying"])
def test_three_operations_from_one_snapshot_make_one_copy(dispatcher: Any, clients: Any, order: str) -> None:
    # GIVEN one source snapshot in us-east-1
    source_world(clients)
    # WHEN three operations refresh three different targets in us-west-2 from it
    outcome = fan_out(dispatcher, clients, 3, order)
    # THEN one copy exists, the first operation's, and the other two restore from it
    assert len(outcome["copies"]) == 1
    assert outcome["used"] == outcome["copies"]
    assert outcome["reused"] == 2
    tags = clients("rds", TARGET_REGION).list_tags_for_resource(
        ResourceName=clients("rds", TARGET_REGION).describe_db_cluster_snapshots(
            DBClusterSnapshotIdentifier=outcome["copies"][0]
        )["DBClusterSnapshots"][0]["DBClusterSnapshotArn"]
    )["TagList"]
    used_by = sorted(t["Key"] for t in tags if t["Key"].startswith("aurora-restore:used-by:"))
    assert len(used_by) == 2


@pytest.mark.parametrize("n", [5, 10])
def test_operations_copying_at_the_same_moment_make_one_copy(dispatcher: Any, clients: Any, n: int) -> None:
    # GIVEN one source snapshot in us-east-1
    source_world(clients)
    # WHEN n operations reach copy_snapshot at the same moment, each on its own thread
    outcome = fan_out(dispatcher, clients, n, "simultaneous")
    # THEN the copy claim lets one of them copy, and every other one reuses that copy
    assert len(outcome["copies"]) == 1
    assert outcome["used"] == outcome["copies"]
    assert outcome["reused"] == n - 1
