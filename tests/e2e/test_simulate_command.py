"""``aurora-restore simulate`` as a user runs it: the seed's input, the text and the JSON report.

The database is the session's server given through ``--database-url`` (the path a user with their
own PostgreSQL takes); the default, an embedded server started by the command, is what the other
e2e tests' server is made of.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from aurora_restore.cli import main


@pytest.fixture
def database_flags(postgres_server: Any) -> list[str]:
    """--database-url / --database-ca for the session's server."""
    url = (
        f"postgresql://{quote(postgres_server.superuser)}:{quote(postgres_server.password, safe='')}"
        f"@{postgres_server.host}:{postgres_server.port}/postgres"
        f"?sslmode=verify-full&sslrootcert={quote(postgres_server.ca_file)}"
    )
    return ["--database-url", url, "--database-ca", postgres_server.ca_file]


def test_simulate_prints_progress_and_a_summary_and_exits_0(
    database_flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--polls", "copy=1", *database_flags])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == (
        "Rehearsing op-test002: rds:my-source-snapshot (us-east-1) -> new-cluster-id (us-west-2), strategy swap"
    )
    progress = [line.split()[0] for line in lines if line.startswith("  ") and line.split()]
    for state in ("ValidateRequest", "CopySnapshot", "WaitForCopy", "SwapClusters", "SendNotification"):
        assert state in progress
    # The copy was in progress when it started, and its RDS event (delivered by default) ended the wait
    assert any("copying [--------------------]   0%" in line for line in lines), out
    assert any("available [####################] 100%" in line for line in lines), out
    assert any(line.strip().startswith("RDS events:") and "0 lost" in line for line in lines), out
    assert any(line.startswith("SUCCEEDED in ") and line.endswith("operation op-test002") for line in lines)
    assert "  notification: [aurora-restore] op-test002 SUCCEEDED: new-cluster-id" in lines
    assert "  ~ cluster new-cluster-id (us-west-2): replaced; now available, new-cluster-id-867e-1" in lines
    assert any("rds.CopyDBClusterSnapshot (us-west-2)" in line for line in lines)
    # The password of the database never shows.
    assert database_flags[1].split(":")[2].split("@")[0] not in out


def test_simulate_json_reports_a_failed_copy_and_exits_1(
    database_flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--json", "--outcome", "copy=failed", *database_flags])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["status"] == "FAILED"
    assert report["error"]["type"] == "CopyFailed"
    # The copy's waiting half checks once before it waits: it is the first to see the failure.
    assert report["error"]["step"] in ("await_copy", "check_copy_status")
    assert [n["attributes"]["status"] for n in report["notifications"]] == ["FAILED"]
    assert report["locks"] == []
    assert set(report) >= {
        "status",
        "error",
        "operation_id",
        "states",
        "state_item",
        "audit",
        "notifications",
        "aws_calls",
        "world_after",
    }
    # The first RDS call: validate_request looks at the target (a new one needs a subnet group).
    first_rds = next(c for c in report["aws_calls"] if c["service"] == "rds")
    assert first_rds == {
        "service": "rds",
        "operation": "DescribeDBClusters",
        "region": "us-west-2",
        "step": "validate_request",
        "params": {"DBClusterIdentifier": "new-cluster-id"},
        "error": None,
    }
    # The copy's waiting half is the first to look: its check sees the failure before any poll.
    assert {s["name"] for s in report["states"]} >= {"WaitForCopy", "HandleFailure", "RefreshFailed"}
