"""The copy claim: operations deciding at the same moment make one copy between them."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.store import STATUS_FAILED
from refresh.copy_claims import claim_copy, copy_claim_key
from refresh.errors import CopyFailed
from steps.lib.names import copy_snapshot_id
from steps.lib.snapshots import COPY_CLAIM_GRACE_SECONDS, NO_KEY
from tests.functional.snapshot_world import (
    OPERATION,
    T0,
    TARGET_REGION,
    Clock,
    context,
    manual_snapshot,
    record_calls,
    request,
    snapshots,
    source_cluster,
)

OWNER = "op-owner-1"
OWNER_COPY = copy_snapshot_id("orders-manual", OWNER)
OUR_COPY = copy_snapshot_id("orders-manual", OPERATION)


@pytest.fixture
def source(clients: Any) -> dict[str, Any]:
    source_cluster(clients)
    return manual_snapshot(clients)


def run(registry: Any, name: str, req: Any, event: dict[str, Any], clock: Clock, **kw: Any) -> dict[str, Any]:
    ctx = context({"step": name, **event}, req, clock=clock, **kw)
    result: dict[str, Any] = registry.get(name)().run(ctx)
    return result


def check_then_copy(registry: Any, req: Any, clock: Clock, **kw: Any) -> dict[str, Any]:
    facts = run(registry, "snapshot_check", req, {}, clock, **kw)
    return run(registry, "copy_snapshot", req, {"snapshot": facts}, clock, **kw)


def owner_claims(store: Any, source: dict[str, Any], operation_id: str = OWNER) -> dict[str, Any]:
    """Another operation (RUNNING) claimed the copy and has not issued CopyDBClusterSnapshot yet."""
    store.step_started(operation_id, "validate_request", None)
    claim: dict[str, Any] = claim_copy(
        store,
        region=TARGET_REGION,
        source_arn=source["DBClusterSnapshotArn"],
        kms_key=NO_KEY,
        operation_id=operation_id,
        copy_id=copy_snapshot_id("orders-manual", operation_id),
        now=T0,
    )
    return claim


def claim_of(store: Any, source: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = store.get_operation(
        copy_claim_key(TARGET_REGION, source["DBClusterSnapshotArn"], NO_KEY)
    )
    return item


def test_a_loser_reuses_the_claimed_copy_before_it_exists_and_waits_for_it(
    registry: Any, source: Any, settings: Any, clients: Any, store: Any
) -> None:
    kw = {"settings": settings, "clients": clients, "store": store}
    clock = Clock()
    # GIVEN another operation claimed the copy but has not started it yet
    owner_claims(store, source)
    calls = record_calls(clients)
    # WHEN this operation decides its copy
    ours = check_then_copy(registry, request(), clock, **kw)
    # THEN it copies nothing and waits on the owner's copy
    assert "CopyDBClusterSnapshot" not in calls.names()
    assert (ours["identifier"], ours["reused_from"], ours["status"]) == (OWNER_COPY, OWNER, "claimed")
    assert ours["complete"] is False
    # AND a retry reuses the same claimed copy again
    again = check_then_copy(registry, request(), clock, **kw)
    assert (again["identifier"], again["reused_from"]) == (OWNER_COPY, OWNER)
    # AND a look within the grace period is still queued, not a vanished copy
    clock.advance(60)
    polled = run(registry, "check_copy_status", request(), {"copy": ours}, clock, **kw)
    assert (polled["status"], polled["complete"]) == ("claimed", False)
    # WHEN the owner (retried) re-finds its own claim and copies
    owner_req = request(operation_id=OWNER, target_cluster_id="orders-stg")
    made = check_then_copy(registry, owner_req, clock, **kw)
    assert (made["identifier"], made["reused_from"]) == (OWNER_COPY, None)
    assert list(snapshots(clients)) == [OWNER_COPY]
    # THEN the next look finds it, fills in its ARN and marks it as used by this operation
    clock.advance(60)
    polled = run(registry, "check_copy_status", request(), {"copy": polled}, clock, **kw)
    assert polled["status"] == "available" and polled["complete"] is True
    assert polled["arn"].endswith(f":cluster-snapshot:{OWNER_COPY}")
    assert f"aurora-restore:used-by:{OPERATION}" in snapshots(clients)[OWNER_COPY]


def test_a_claimed_copy_that_never_appears_fails_naming_its_owner_after_the_grace(
    registry: Any, source: Any, settings: Any, clients: Any, store: Any
) -> None:
    kw = {"settings": settings, "clients": clients, "store": store}
    clock = Clock()
    # GIVEN this operation reuses a claimed copy whose owner never starts it
    owner_claims(store, source)
    ours = check_then_copy(registry, request(), clock, **kw)
    # WHEN it is still missing past the grace period
    clock.advance(COPY_CLAIM_GRACE_SECONDS + 1)
    # THEN the wait fails, naming the owner
    with pytest.raises(CopyFailed, match=OWNER) as failed:
        run(registry, "check_copy_status", request(), {"copy": ours}, clock, **kw)
    assert OWNER_COPY in str(failed.value)


def test_a_claim_of_an_operation_no_longer_running_is_taken_over(
    registry: Any, source: Any, settings: Any, clients: Any, store: Any
) -> None:
    kw = {"settings": settings, "clients": clients, "store": store}
    # GIVEN the owner of the claim failed before copying
    owner_claims(store, source)
    store.finish(OWNER, STATUS_FAILED)
    # WHEN this operation decides its copy
    ours = check_then_copy(registry, request(), Clock(), **kw)
    # THEN it takes the claim over and copies itself
    assert (ours["identifier"], ours["reused_from"]) == (OUR_COPY, None)
    assert list(snapshots(clients)) == [OUR_COPY]
    assert claim_of(store, source)["claim_owner"] == OPERATION
    assert "snapshot_copy_claim_taken_over" in [e["event"] for e in store.audit_trail(OPERATION)]


def test_a_running_owners_claim_whose_copy_never_appeared_is_taken_over_after_the_grace(
    registry: Any, source: Any, settings: Any, clients: Any, store: Any
) -> None:
    kw = {"settings": settings, "clients": clients, "store": store}
    # GIVEN the owner is RUNNING but claimed long ago and no copy exists
    owner_claims(store, source)
    clock = Clock()
    clock.advance(COPY_CLAIM_GRACE_SECONDS + 1)
    # WHEN this operation decides its copy
    ours = check_then_copy(registry, request(), clock, **kw)
    # THEN it copies itself under a claim of its own
    assert (ours["identifier"], ours["reused_from"]) == (OUR_COPY, None)
    assert claim_of(store, source)["copy_id"] == OUR_COPY


def test_the_owner_retried_after_claiming_copies_once_and_then_adopts(
    registry: Any, source: Any, settings: Any, clients: Any, store: Any
) -> None:
    kw = {"settings": settings, "clients": clients, "store": store}
    clock = Clock()
    # GIVEN this operation claimed the copy and crashed before starting it
    owner_claims(store, source, operation_id=OPERATION)
    # WHEN it is retried, twice
    first = check_then_copy(registry, request(), clock, **kw)
    calls = record_calls(clients)
    second = check_then_copy(registry, request(), clock, **kw)
    # THEN the first retry copies under its claim, the second adopts that copy
    assert (first["identifier"], first["reused_from"]) == (OUR_COPY, None)
    assert second["identifier"] == OUR_COPY
    assert "CopyDBClusterSnapshot" not in calls.names()
    assert list(snapshots(clients)) == [OUR_COPY]
    assert claim_of(store, source)["claim_owner"] == OPERATION
