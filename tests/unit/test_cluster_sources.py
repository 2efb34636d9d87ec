"""clone:<cluster> and pitr:<cluster>@<time>: parsed and refused before anything touches AWS."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from dispatcher.errors import ValidationError
from refresh.request import parse_request
from refresh.sources import (
    MAX_CLONES_PER_SOURCE,
    check_clone_key,
    check_clone_quota,
    check_restore_window,
    check_source_cluster,
    clones_of,
)

SAME_REGION = {
    "operation_id": "op-clone-1",
    "source_region": "eu-west-1",
    "target_region": "eu-west-1",
    "target_cluster_id": "orders-staging",
}


def source(value: str) -> Any:
    return parse_request({**SAME_REGION, "snapshot_id": value}).snapshot


def test_a_clone_is_of_the_cluster_as_it_is_now() -> None:
    ref = source("clone:orders")
    assert (ref.kind, ref.cluster_id, ref.restore_to) == ("clone", "orders", "latest")


@pytest.mark.parametrize(
    ("value", "restore_to"),
    [
        ("pitr:orders@latest", "latest"),
        ("pitr:orders@2026-11-20T02:00:00Z", "2026-11-20T02:00:00+00:00"),
        ("pitr:orders@2026-11-20T02:00:00.250+00:00", "2026-11-20T02:00:00.250000+00:00"),
        ("pitr:orders@2026-11-20T02:00Z", "2026-11-20T02:00:00+00:00"),
    ],
)
def test_a_point_in_time_is_utc_or_latest(value: str, restore_to: str) -> None:
    ref = source(value)
    assert (ref.kind, ref.cluster_id, ref.restore_to) == ("pitr", "orders", restore_to)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("clone:", ["clone:<source-cluster-id>", "pitr:<source-cluster-id>@<time>", "latest:"]),
        ("clone:orders@latest", ["always of the cluster as it is now", "pitr:"]),
        ("clone:arn:aws:rds:eu-west-1:210987654321:cluster:orders", ["not an ARN", "account"]),
        ("pitr:orders", ["needs a time", "ISO 8601 UTC", "latest"]),
        ("pitr:orders@", ["needs a time"]),
        ("pitr:orders@yesterday", ["ISO 8601 UTC", "'yesterday'"]),
        ("pitr:orders@2026-11-20T02:00:00+01:00", ["Z or +00:00"]),
        ("pitr:orders@2026-11-20", ["ISO 8601 UTC"]),
        ("pitr:orders@2026-02-30T02:00:00Z", ["not a real date"]),
        ("pitr:or--ders@latest", ["no '--'"]),
        ("clone:orders\n", ["letters, digits or hyphens"]),
        ("snap:orders", ["clone:<source-cluster-id>", "pitr:<source-cluster-id>@<time>"]),
    ],
)
def test_a_malformed_source_is_refused_with_the_forms_that_exist(value: str, words: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_request({**SAME_REGION, "snapshot_id": value})
    assert caught.value.field == "snapshot_id"
    for word in words:
        assert word in str(caught.value)


def test_a_pasted_secret_in_place_of_the_time_is_never_echoed() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_request({**SAME_REGION, "snapshot_id": "pitr:orders@Sup3r-Secr3t!x"})
    assert "Sup3r-Secr3t!x" not in str(caught.value)
    assert "ISO 8601 UTC" in str(caught.value)


@pytest.mark.parametrize("value", ["clone:orders", "pitr:orders@latest"])
def test_a_clone_or_point_in_time_in_another_region_is_refused(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_request({**SAME_REGION, "snapshot_id": value, "target_region": "eu-central-1"})
    assert caught.value.field == "snapshot_id"
    assert "source's own region" in str(caught.value) and "latest:<source-cluster-id>" in str(caught.value)


@pytest.mark.parametrize("value", ["clone:orders-staging", "pitr:ORDERS-STAGING@latest"])
def test_the_target_is_never_the_source(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_request({**SAME_REGION, "snapshot_id": value})
    assert caught.value.field == "target_cluster_id"
    assert "never be the source" in str(caught.value)


# -- the rules against RDS's descriptions ----------------------------------------------------------

CLUSTER = {
    "DBClusterIdentifier": "orders",
    "DBClusterArn": "arn:aws:rds:eu-west-1:123456789012:cluster:orders",
    "Status": "available",
    "DBClusterMembers": [{"DBInstanceIdentifier": "orders-1", "IsClusterWriter": True}],
    "EarliestRestorableTime": datetime(2026, 11, 13, 2, 0, tzinfo=timezone.utc),
    "LatestRestorableTime": datetime(2026, 11, 20, 1, 55, tzinfo=timezone.utc),
    "CloneGroupId": "group-1",
}


@pytest.mark.parametrize("status", ["stopped", "modifying", "backing-up", "creating"])
def test_a_source_that_is_not_available_is_refused(status: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_source_cluster("clone:orders", "clone", {**CLUSTER, "Status": status}, region="eu-west-1")
    assert status in str(caught.value) and "available" in str(caught.value)


def test_a_clone_of_a_cluster_without_instances_is_refused() -> None:
    with pytest.raises(ValidationError, match="no DB instance"):
        check_source_cluster("clone:orders", "clone", {**CLUSTER, "DBClusterMembers": []}, region="eu-west-1")
    check_source_cluster("pitr:orders@latest", "pitr", {**CLUSTER, "DBClusterMembers": []}, region="eu-west-1")


def test_clones_are_counted_by_clone_group_and_the_sixteenth_is_refused() -> None:
    others = [
        {"DBClusterIdentifier": f"orders-clone-{i}", "CloneGroupId": "group-1"} for i in range(MAX_CLONES_PER_SOURCE)
    ]
    unrelated = [{"DBClusterIdentifier": "billing", "CloneGroupId": "group-2"}, {"DBClusterIdentifier": "x"}]
    clones = clones_of(CLUSTER, [CLUSTER, *others, *unrelated])
    assert len(clones) == MAX_CLONES_PER_SOURCE and "billing" not in clones
    check_clone_quota("clone:orders", "orders", clones[:-1])
    with pytest.raises(ValidationError) as caught:
        check_clone_quota("clone:orders", "orders", clones)
    assert "15 copy-on-write clones" in str(caught.value) and "pitr:orders@latest" in str(caught.value)
    assert clones_of({**CLUSTER, "CloneGroupId": None}, others) == []


def test_a_clone_keeps_the_sources_key() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/1111"
    check_clone_key("clone:orders", key, None)
    check_clone_key("clone:orders", key, key)
    with pytest.raises(ValidationError) as caught:
        check_clone_key("clone:orders", key, "arn:aws:kms:eu-west-1:123456789012:key/2222")
    assert caught.value.field == "kms_key_id" and key in str(caught.value)
    with pytest.raises(ValidationError, match="not encrypted"):
        check_clone_key("clone:orders", None, key)


def test_a_point_in_time_outside_the_window_is_refused_with_the_window() -> None:
    window = check_restore_window("pitr:orders@...", "2026-11-18T12:00:00+00:00", CLUSTER)
    assert window == {"earliest": "2026-11-13T02:00:00+00:00", "latest": "2026-11-20T01:55:00+00:00"}
    assert check_restore_window("pitr:orders@latest", "latest", CLUSTER) == window
    for outside in ("2026-11-13T01:59:59+00:00", "2026-11-20T01:55:01+00:00"):
        with pytest.raises(ValidationError) as caught:
            check_restore_window("pitr:orders@" + outside, outside, CLUSTER)
        message = str(caught.value)
        assert "2026-11-13T02:00:00+00:00 .. 2026-11-20T01:55:00+00:00" in message and outside in message
