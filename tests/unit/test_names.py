"""Generated identifiers obey RDS's rules, are stable per operation and differ between operations."""

from __future__ import annotations

import re

import pytest

from steps.lib import names

RDS_ID = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|-(?!-))*(?<!-)$")
TARGETS = ["orders-dev", "a", "x" * 63, "orders-dev-eu-central-1-with-a-very-long-name-up-to-the-limit1"]


@pytest.mark.parametrize("target", TARGETS)
def test_cluster_and_instance_names_are_valid_and_bounded(target: str) -> None:
    for name in (
        names.temporary_cluster_id(target, "op-1"),
        names.retired_cluster_id(target, "op-1"),
        names.instance_id(target, "op-1", 0),
        names.instance_id(target, "op-1", 15),
    ):
        assert RDS_ID.match(name), name
        assert len(name) <= 63, name


def test_names_are_stable_per_operation_and_distinct_across_operations() -> None:
    assert names.temporary_cluster_id("orders-dev", "op-1") == names.temporary_cluster_id(
        "orders-dev", "op-1"
    )
    assert names.temporary_cluster_id("orders-dev", "op-1") != names.temporary_cluster_id(
        "orders-dev", "op-2"
    )
    assert names.temporary_cluster_id("orders-dev", "op-1") != names.retired_cluster_id("orders-dev", "op-1")
    assert names.instance_id("orders-dev", "op-1", 0) != names.instance_id("orders-dev", "op-1", 1)


@pytest.mark.parametrize(
    "source",
    [
        "rds:orders-2026-11-20-02-00",
        "manual-snap",
        "arn:aws:rds:eu-west-1:123456789012:cluster-snapshot:rds:orders-2026-11-20-02-00",
        "s" * 255,
        "rds:orders-dev-eu-central-1-with-a-very-long-name-up-to-the-limit1-2026-11-20-02-00",
    ],
)
def test_copy_names_have_no_colon_and_fit(source: str) -> None:
    copy = names.copy_snapshot_id(source, "op-test002")
    assert ":" not in copy
    assert RDS_ID.match(copy), copy
    # A cluster snapshot identifier is at most 63 characters (CopyDBClusterSnapshot).
    assert len(copy) <= 63
    assert copy == names.copy_snapshot_id(source, "op-test002")
