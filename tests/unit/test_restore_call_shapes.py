"""Both restore calls carry the same placement, in the shape RDS's API model accepts.

A snapshot restore (RestoreDBClusterFromSnapshot) and a clone or point-in-time restore
(RestoreDBClusterToPointInTime) build their placement with one helper; the arguments are held
to botocore's model of each operation, which is what RDS validates a request against.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from dispatcher.settings import Settings
from refresh.request import RestoreRequest
from steps.restore_snapshot import point_in_time_arguments, restore_arguments

REQUEST = {
    "operation_id": "op-test002",
    "snapshot_id": "clone:orders-prod",
    "source_region": "us-west-2",
    "target_region": "us-west-2",
    "target_cluster_id": "orders-staging",
    "instance_class": "db.serverless",
    "serverless_min_capacity": 1,
    "serverless_max_capacity": 16,
}
PLACEMENT: dict[str, Any] = {
    "db_subnet_group": "staging-subnets",
    "vpc_security_group_ids": ["sg-0123456789abcdef0"],
    "db_cluster_parameter_group": "staging-params",
    "port": 5433,
    "instance_class": "db.serverless",
}
PLACED = {
    "DBSubnetGroupName": "staging-subnets",
    "VpcSecurityGroupIds": ["sg-0123456789abcdef0"],
    "DBClusterParameterGroupName": "staging-params",
    "Port": 5433,
    "ServerlessV2ScalingConfiguration": {"MinCapacity": 1.0, "MaxCapacity": 16.0},
}


def rds_input_problems(operation: str, arguments: dict[str, Any]) -> str:
    """What botocore's validator finds wrong with ``arguments`` for ``operation`` ("" if nothing)."""
    model = botocore.session.get_session().get_service_model("rds")
    report = ParamValidator().validate(arguments, model.operation_model(operation).input_shape)
    return str(report.generate_report()) if report.has_errors() else ""


def test_a_snapshot_restore_is_placed_and_valid_for_rds() -> None:
    request = RestoreRequest.from_event({**REQUEST, "snapshot_id": "rds:orders-nightly"})
    ctx = SimpleNamespace(settings=Settings())
    snapshot = {"engine_version": "15.5", "encrypted": False}
    copy = {"identifier": "ar-orders-nightly-1a2b3c4d", "arn": ""}
    arguments = restore_arguments(ctx, request, snapshot, copy, "orders-staging", PLACEMENT)  # type: ignore[arg-type]
    assert {key: arguments[key] for key in PLACED} == PLACED
    assert rds_input_problems("RestoreDBClusterFromSnapshot", arguments) == ""


@pytest.mark.parametrize(("kind", "restore_to"), [("clone", None), ("pitr", "2026-11-30T06:00:00+00:00")])
def test_a_clone_or_point_in_time_restore_is_placed_and_valid_for_rds(kind: str, restore_to: str | None) -> None:
    request = RestoreRequest.from_event(REQUEST)
    snapshot = {
        "source_kind": kind,
        "source_cluster_id": "orders-prod",
        "arn": "arn:aws:rds:us-west-2:123456789012:cluster:orders-prod",
        "restore_to_time": restore_to,
        "encrypted": True,
    }
    arguments = point_in_time_arguments(request, snapshot, "orders-staging", PLACEMENT)
    assert {key: arguments[key] for key in PLACED} == PLACED
    # A clone shares its source's pages and so its key: RDS refuses a different one.
    assert "KmsKeyId" not in arguments
    assert rds_input_problems("RestoreDBClusterToPointInTime", arguments) == ""
