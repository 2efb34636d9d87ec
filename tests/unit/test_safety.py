"""Each safety rule, on its own: the source, unmanaged clusters, deletion protection."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.settings import Settings
from refresh.errors import UnsafeTarget
from refresh.safety import check_replaceable

MANAGED = [{"Key": "aurora-restore:managed", "Value": "true"}]


def cluster(
    cluster_id: str, tags: list[dict[str, str]] | None = None, protected: bool = False
) -> dict[str, Any]:
    return {"DBClusterIdentifier": cluster_id, "TagList": tags or [], "DeletionProtection": protected}


def check(c: dict[str, Any], *, pattern: str = "", allow: bool = False, region: str = "eu-central-1") -> bool:
    return check_replaceable(
        c,
        region=region,
        source_cluster_id="orders",
        source_region="eu-west-1",
        settings=Settings(allowed_target_pattern=pattern),
        allow_disable_deletion_protection=allow,
    )


def test_managed_cluster_may_be_replaced() -> None:
    assert check(cluster("orders-dev", MANAGED)) is False


def test_the_source_is_never_replaced_even_when_managed_and_allowed() -> None:
    with pytest.raises(UnsafeTarget, match="is the source") as caught:
        check(cluster("orders", MANAGED), pattern=".*", allow=True, region="eu-west-1")
    assert caught.value.details["rule"] == "never-the-source"


def test_a_cluster_named_like_the_source_in_another_region_is_judged_on_its_own_tags() -> None:
    assert check(cluster("orders", MANAGED), region="eu-central-1") is False
    with pytest.raises(UnsafeTarget, match="not made by aurora-restore"):
        check(cluster("orders"), region="eu-central-1")


def test_the_allowed_pattern_does_not_admit_an_untagged_cluster_named_like_the_source() -> None:
    # A DR copy of production in another region, and a pattern broad enough to match it.
    with pytest.raises(UnsafeTarget, match="source cluster's name") as caught:
        check(cluster("Orders"), pattern="^[Oo]rders.*", region="eu-central-1")
    assert caught.value.details["rule"] == "named-like-the-source"
    # Made by aurora-restore, it may be replaced like any other managed cluster.
    assert check(cluster("orders", MANAGED), pattern="^orders.*", region="eu-central-1") is False


def test_unmanaged_cluster_is_refused_with_the_rule_named() -> None:
    with pytest.raises(UnsafeTarget) as caught:
        check(cluster("orders-dev", [{"Key": "aurora-restore:managed", "Value": "false"}]))
    assert "orders-dev" in str(caught.value)
    assert caught.value.details["rule"] == "managed-or-allowed"


def test_allowed_pattern_admits_an_untagged_cluster_and_must_match_whole_id() -> None:
    assert check(cluster("orders-dev"), pattern=r"orders-(dev|stg)") is False
    with pytest.raises(UnsafeTarget, match="does not match the allowed-target pattern"):
        check(cluster("orders-dev-2"), pattern=r"orders-(dev|stg)")


def test_deletion_protection_refuses_unless_the_request_allows_it() -> None:
    with pytest.raises(UnsafeTarget, match="deletion protection") as caught:
        check(cluster("orders-dev", MANAGED, protected=True))
    assert caught.value.details["rule"] == "deletion-protection"
    assert check(cluster("orders-dev", MANAGED, protected=True), allow=True) is True
