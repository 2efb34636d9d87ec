"""The safety battery: clusters aurora-restore must never rename or delete, whatever happens.

Five targets an operator might point a refresh at by mistake: the source itself, a cluster the
tool did not make, a protected one, one outside the stack's allowed-target pattern, and one
named like the source in another region (a DR copy). Each is refreshed with both strategies,
with and without injected faults (a describe that lies once, unreadable tags, throttling, a
refused rename, a missing instance). Read from the rehearsal's ``aws_calls`` and ``world_after``:
no call ever renamed, deleted or unprotected the cluster or its instances, and it is still there
exactly as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from aurora_restore.simulate.hooks import parse_fault
from aurora_restore.simulate.rehearsal import Report
from aurora_restore.simulate.world import ClusterSpec, World, default_world
from dispatcher.request import MANAGED_TAG, RestoreRequest

SOURCE_REGION, TARGET_REGION = "us-east-1", "us-west-2"
KINDS = (
    "the source",
    "unmanaged",
    "protected",
    "outside the allowed pattern",
    "named like the source elsewhere",
)
STRATEGIES = ("swap", "delete-first")
#: Faults that could mislead the safety checks or interrupt them half-way.
FAULTS = (
    (),
    ("rds.DescribeDBClusters=DBClusterNotFoundFault*2",),
    ("rds.ListTagsForResource=AccessDenied",),
    ("rds.DescribeDBClusters=Throttling*6",),
    ("rds.ModifyDBCluster=InvalidDBClusterStateFault*1",),
    ("rds.DeleteDBInstance=DBInstanceNotFound*1",),
)
#: Calls that rename, delete or unprotect, and the parameter naming what they act on.
DANGEROUS = {
    "DeleteDBCluster": "DBClusterIdentifier",
    "DeleteDBInstance": "DBInstanceIdentifier",
    "ModifyDBCluster": "DBClusterIdentifier",
    "ModifyDBInstance": "DBInstanceIdentifier",
}


#: What the refusal says for each target: the rule it breaks.
REFUSALS = {
    "the source": "is the source of the snapshot; aurora-restore never deletes or renames the source",
    "unmanaged": "was not made by aurora-restore (no tag aurora-restore:managed=true)",
    "protected": "has deletion protection",
    "outside the allowed pattern": "does not match the allowed-target pattern",
    "named like the source elsewhere": "has the source cluster's name",
}
#: Two describes that say the target is missing hide it from ValidateRequest's look (a new target,
#: placed by the stack's defaults) and from SnapshotCheck's rules...
HIDES_THE_TARGET = "rds.DescribeDBClusters=DBClusterNotFoundFault*2"
#: ...so the restore is what refuses: the name is taken by a cluster this operation did not make.
NAME_TAKEN = "already exists and was made by someone else"


def expected_refusal(kind: str, faults: tuple[str, ...]) -> str:
    """The words the failure must carry for this target under these faults.

    The other faults are retried (throttling) or hit calls the refusal comes before (a rename, an
    instance deletion, a snapshot's tags: a cluster's come with its describe), so the target's own
    rule answers.
    """
    return NAME_TAKEN if HIDES_THE_TARGET in faults else REFUSALS[kind]


def scenario(kind: str, strategy: str) -> tuple[dict[str, Any], World, tuple[str, str]]:
    """The request, the world, and (region, id) of the cluster that must stay as it is."""
    body = {
        "operation_id": f"op-safety-{KINDS.index(kind)}-{strategy}",
        "snapshot_id": "orders-snap",
        "source_region": SOURCE_REGION,
        "target_region": TARGET_REGION,
        "target_cluster_id": "orders-dev",
        "strategy": strategy,
    }
    world = default_world(RestoreRequest.from_event(body))
    source, target = world.clusters
    # Where a new target would go: a target hidden by a fault reads as new, and must get that far.
    stack = {
        **world.stack,
        "default_subnet_group": "rehearsal-dev",
        "default_security_group_ids": ["sg-0123456789abcdef0"],
    }
    if kind == "the source":
        # Refreshing production from its own snapshot, in its own region. It even carries the
        # managed tag (an environment refreshed earlier, now used as a source): only the
        # never-the-source rule stands between it and the swap.
        body.update(target_region=SOURCE_REGION, target_cluster_id=source.id)
        source = dataclasses.replace(source, tags={**source.tags, MANAGED_TAG: "true"})
        stack["allowed_target_pattern"] = ".*"
        stack["default_kms_key_id"] = "alias/aurora-restore-rehearsal-source"
        keep = (SOURCE_REGION, source.id)
    elif kind == "unmanaged":
        target = dataclasses.replace(target, tags={"environment": "dev"})
        keep = (TARGET_REGION, target.id)
    elif kind == "protected":
        target = dataclasses.replace(target, deletion_protection=True)
        keep = (TARGET_REGION, target.id)
    elif kind == "outside the allowed pattern":
        target = dataclasses.replace(target, tags={"environment": "dev"})
        stack["allowed_target_pattern"] = "^sandbox-.*"
        keep = (TARGET_REGION, target.id)
    else:
        # A cluster named like production in the target region (its DR copy), untagged, and a
        # pattern broad enough to match it.
        body.update(target_cluster_id=source.id)
        target = ClusterSpec(
            id=source.id,
            region=TARGET_REGION,
            instances=(f"{source.id}-dr-1",),
            storage_encrypted=True,
            kms_key=target.kms_key,
            master_password=target.master_password,
            tags={"environment": "production-dr"},
        )
        stack["allowed_target_pattern"] = "^orders.*"
        keep = (TARGET_REGION, target.id)
    world = dataclasses.replace(world, clusters=(source, target), stack=stack)
    return {"body": body}, world, keep


def dangerous_calls(report: Report, region: str, cluster: dict[str, Any]) -> list[str]:
    """Every call that renamed, deleted or unprotected the cluster or one of its instances."""
    names = {cluster["id"].lower()}
    instances = {i.lower() for i in cluster["instances"]}
    found = []
    for call in report.aws_calls:
        key = DANGEROUS.get(call["operation"])
        if call["service"] != "rds" or key is None or call.get("region") != region:
            continue
        subject = str(call["params"].get(key, "")).lower()
        if call["operation"].endswith("Instance") and subject in instances:
            found.append(f"{call['operation']} {subject} ({call['step']})")
        elif call["operation"] == "DeleteDBCluster" and subject in names:
            found.append(f"DeleteDBCluster {subject} ({call['step']})")
        elif call["operation"] == "ModifyDBCluster" and subject in names:
            params = call["params"]
            if params.get("NewDBClusterIdentifier") or params.get("DeletionProtection") is False:
                found.append(f"ModifyDBCluster {subject} {params} ({call['step']})")
    return found


def assert_untouched(report: Report, keep: tuple[str, str]) -> None:
    region, cluster_id = keep
    before = {(c["region"], c["id"]): c for c in report.world_before["clusters"]}
    after = {(c["region"], c["id"]): c for c in report.world_after["clusters"]}
    original = before[keep]
    assert dangerous_calls(report, region, original) == []
    assert keep in after, f"{cluster_id} in {region} is gone"
    for field in ("status", "instances", "tags", "deletion_protection", "endpoint", "writer"):
        assert after[keep][field] == original[field], field


def run(rehearse: Callable[..., Report], kind: str, strategy: str, faults: tuple[str, ...]) -> Report:
    raw_input, world, keep = scenario(kind, strategy)
    report = rehearse(raw_input, world=world, faults=[parse_fault(f) for f in faults], timeout_seconds=120)
    assert_untouched(report, keep)
    # Whatever the fault, the refresh fails as unsafe, says why, notifies once and leaves no lock.
    assert report.status == "FAILED", report.error
    assert report.error is not None, report.status
    assert report.error["type"] == "UnsafeTarget", report.error
    assert expected_refusal(kind, faults) in report.error["message"], report.error
    assert len(report.notifications) == 1, report.notifications
    assert report.locks == []
    return report


#: The normal run: every target by swap without a fault, and by delete-first with one (in turn).
SAMPLE = [
    *(pytest.param(kind, "swap", (), id=f"{kind}-swap") for kind in KINDS),
    *(
        pytest.param(
            kind,
            "delete-first",
            FAULTS[1 + i % (len(FAULTS) - 1)],
            id=f"{kind}-delete-first-{FAULTS[1 + i % (len(FAULTS) - 1)][0]}",
        )
        for i, kind in enumerate(KINDS)
    ),
]


@pytest.mark.parametrize(("kind", "strategy", "faults"), SAMPLE)
def test_a_target_the_rules_protect_is_never_renamed_or_deleted(
    rehearse: Callable[..., Report], kind: str, strategy: str, faults: tuple[str, ...]
) -> None:
    # GIVEN a target the safety rules protect; WHEN a refresh of it runs (maybe with a fault)
    # THEN (checked in run) nothing renamed or deleted it, and the refresh failed saying why
    run(rehearse, kind, strategy, faults)


@pytest.mark.slow
@pytest.mark.parametrize("faults", FAULTS, ids=["no fault", *(f[0] for f in FAULTS[1:])])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_protected_target_every_strategy_every_fault(
    rehearse: Callable[..., Report], kind: str, strategy: str, faults: tuple[str, ...]
) -> None:
    run(rehearse, kind, strategy, faults)
