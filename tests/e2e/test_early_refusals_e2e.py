"""What AWS would refuse hours in is refused by the first two states, before anything changes.

Each test is one execution of the generated state machine that ends in ValidateRequest or
SnapshotCheck: the error names the thing, the failure is notified, and no AWS call changed
anything (only reads, the state and audit tables, and the failure notification).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aurora_restore.simulate.hooks import parse_fault
from aurora_restore.simulate.world import default_world
from refresh.request import RestoreRequest
from tests.e2e.conftest import seed_request

#: Calls that only read, and the bookkeeping every failed run makes.
READ_PREFIXES = ("Describe", "List", "Get")


def changes(report: Any) -> list[str]:
    """Every AWS call that changed something, state/audit tables and the notification left out."""
    return [
        f"{c['service']}.{c['operation']}"
        for c in report.aws_calls
        if c["service"] not in ("dynamodb", "sns") and not c["operation"].startswith(READ_PREFIXES)
    ]


def assert_refused(report: Any, state: str, error_type: str, *words: str) -> None:
    """The run FAILED in ``state`` with ``error_type`` naming ``words``, having changed nothing."""
    assert report.status == "FAILED"
    assert (report.error["state"], report.error["type"]) == (state, error_type), report.error
    for word in words:
        assert word in report.error["message"], (word, report.error["message"])
    assert changes(report) == []
    assert [n["attributes"]["status"] for n in report.notifications] == ["FAILED"]
    assert report.locks == []


def test_an_untagged_member_instance_of_the_target_is_refused_in_snapshot_check(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN the seed's managed target, whose one instance lacks the managed tag
    world = default_world(RestoreRequest.from_event(seed_input))
    source, target = world.clusters
    instance = target.instances[0]
    untagged = dataclasses.replace(target, instance_tags={instance: {"environment": "rehearsal"}})
    world = dataclasses.replace(world, clusters=(source, untagged))
    # WHEN the refresh runs
    report = rehearse(seed_input, world=world)
    # THEN SnapshotCheck refuses it, naming the instance and the rule, before the copy
    assert_refused(report, "SnapshotCheck", "UnsafeTarget", instance, "aurora-restore:managed=true")
    assert "CopySnapshot" not in [run.name for run in report.states]


def test_a_script_outside_the_scripts_prefix_is_refused_in_snapshot_check(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN a stack that reads scripts under masking-scripts/ only, and a script elsewhere
    uri = "s3://someone-elses-bucket/mask.sql"
    raw_input = seed_request(seed_input, users={"scripts": [{"name": "mask", "s3_uri": uri}]})
    world = default_world(RestoreRequest.from_event(raw_input))
    world = dataclasses.replace(world, stack={**world.stack, "scripts_s3_prefix": "masking-scripts/"})
    # WHEN the refresh runs
    report = rehearse(raw_input, world=world)
    # THEN it is refused naming the field, the URI and the allowed prefix
    assert_refused(
        report, "SnapshotCheck", "ValidationError", "users.scripts[0].s3_uri", uri, "s3://masking-scripts/"
    )


def test_a_new_target_without_a_subnet_group_is_refused_in_validate_request(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN no target cluster yet, and neither the request nor the stack naming where it goes
    world = default_world(RestoreRequest.from_event(seed_input))
    world = dataclasses.replace(world, clusters=world.clusters[:1])
    # WHEN the refresh runs
    report = rehearse(seed_input, world=world)
    # THEN the first state refuses it, naming the missing field and the stack parameter
    assert_refused(report, "ValidateRequest", "ValidationError", "db_subnet_group", "DefaultSubnetGroup")


def test_a_snapshot_whose_key_the_function_cannot_use_is_refused_in_snapshot_check(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN an encrypted manual snapshot in the target's own region (restored as it is, no copy)
    # and a key policy that does not let the function use its key
    raw_input = seed_request(seed_input, snapshot_id="orders-manual", source_region="us-west-2")
    world = default_world(RestoreRequest.from_event(raw_input))
    fault = parse_fault("kms.DescribeKey=AccessDeniedException*1")
    # WHEN the refresh runs
    report = rehearse(raw_input, world=world, faults=[fault])
    # THEN SnapshotCheck refuses it, naming the snapshot, the key problem and the permissions
    assert_refused(
        report, "SnapshotCheck", "ValidationError", "snapshot_id", "AccessDeniedException", "kms:CreateGrant"
    )


def test_a_region_the_stack_does_not_serve_is_refused_in_validate_request(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN a stack whose function runs in eu-central-1 (Lambda's AWS_REGION) and the seed's
    # request for a target in us-west-2
    # WHEN the refresh runs
    report = rehearse(seed_input, settings={"AWS_REGION": "eu-central-1"})
    # THEN the first state refuses it, naming the field, the value and the one region allowed
    assert_refused(
        report, "ValidateRequest", "ValidationError", "target_region", "'us-west-2'", "allowed: eu-central-1"
    )
    # AND nothing in RDS was even looked at
    assert [c for c in report.aws_calls if c["service"] == "rds"] == []
