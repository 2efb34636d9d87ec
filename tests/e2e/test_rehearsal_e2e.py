"""The refresh end to end: the seed's input, both strategies, every failure path, throttling.

Each test is one (or two) executions of the generated state machine by moto's engine; what is
asserted is what an operator would check afterwards: the clusters and snapshots in RDS, the
database's roles and passwords, the state item, the audit trail, the notification and the lock.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from aurora_restore.simulate.hooks import parse_fault
from aurora_restore.simulate.world import default_world
from refresh.request import OPERATION_TAG, RestoreRequest
from tests.e2e.conftest import APP_ROLE, REPORTING_ROLE, seed_request, with_users

#: Steps every successful swap runs, each recorded as succeeded in the audit trail.
SWAP_STEPS = {
    "validate_request",
    "snapshot_check",
    "copy_snapshot",
    "check_copy_status",
    "restore_snapshot",
    "check_restore_status",
    "setup_db_users",
    "run_checks",
    "swap_clusters",
    "check_swap_status",
    "archive_snapshot",
    "send_notification",
}
#: Each loop's check and the waiting half that checks once before it waits.
WAITING_HALF = {
    "check_copy_status": "await_copy",
    "check_restore_status": "await_restore",
    "check_delete_status": "await_delete",
    "check_swap_status": "await_swap",
}
DELETE_FIRST_STEPS = (SWAP_STEPS - {"swap_clusters", "check_swap_status"}) | {
    "delete_target",
    "check_delete_status",
}


def clusters(world: dict[str, Any], region: str) -> dict[str, dict[str, Any]]:
    """The world's clusters in ``region`` by id."""
    return {c["id"]: c for c in world["clusters"] if c["region"] == region}


def can_log_in(server: Any, user: str, password: str, database: str) -> bool:
    """True when ``user``/``password`` opens ``database`` through the server's TLS endpoint."""
    import asyncpg

    context = ssl.create_default_context(cafile=server.ca_file)

    async def attempt() -> bool:
        try:
            connection = await asyncpg.connect(
                host=server.host,
                port=server.port,
                user=user,
                password=password,
                database=database,
                ssl=context,
                timeout=10,
            )
        except asyncpg.InvalidPasswordError:
            return False
        await connection.close()
        return True

    return asyncio.run(attempt())


def assert_refreshed(report: Any, request: RestoreRequest, steps: set[str]) -> None:
    """The end state of a successful refresh, as an operator would check it."""
    region, target = request.target_region, request.target_cluster_id
    assert report.status == "SUCCEEDED", report.error
    assert report.error is None
    before, after = clusters(report.world_before, region), clusters(report.world_after, region)
    old = before[target]
    new = after[target]
    # A new cluster, restored by this operation, with a writer, carries the target name ...
    assert new["tags"].get(OPERATION_TAG) == request.operation_id
    assert new["status"] == "available"
    assert new["writer"] is not None
    assert new["instance_status"][new["writer"]] == "available"
    # ... the old one and its instances are gone, and no temporary cluster is left.
    assert set(after) == {target}
    assert not set(old["instances"]) & set(new["instances"])
    # The copy is in the target region, made for this operation.
    copies = [
        s
        for s in report.world_after["snapshots"]
        if s["region"] == region and s["tags"].get(OPERATION_TAG) == request.operation_id
    ]
    assert any(s["status"] == "available" and s["encrypted"] for s in copies), copies
    # The master password was reset through RDS (RDS-managed secret) and applied to the database.
    assert new["master_password_managed"] is True
    assert report.database["master_password_changes"], "setup_db_users reset the master password"
    # The operation is closed: state item, audit trail, one notification, no lock.
    assert report.state_item["status"] == "SUCCEEDED"
    succeeded = {event["step"] for event in report.audit if event["event"] == "succeeded"}
    # A loop's look at its resource is its check, or its waiting half's own first check.
    missing = {step for step in steps if not ({step, WAITING_HALF.get(step, step)} & succeeded)}
    assert not missing, missing
    assert [n["attributes"]["status"] for n in report.notifications] == ["SUCCEEDED"]
    assert (
        report.notifications[0]["subject"] == f"[aurora-restore] {request.operation_id} SUCCEEDED: {target}"
    )
    assert report.locks == []
    assert_placed_like_the_old_target(report, request)


def assert_placed_like_the_old_target(report: Any, request: RestoreRequest) -> None:
    """The restore went into the old target's subnet group and security groups; no instance is public.

    The request names neither: RDS would otherwise use the default VPC and its default security
    group, and make an instance public where the VPC has an internet gateway.
    """
    old = clusters(report.world_before, request.target_region)[request.target_cluster_id]
    assert old["subnet_group"] and old["security_groups"], "the world places the target"
    (restore,) = [c for c in report.aws_calls if c["operation"] == "RestoreDBClusterFromSnapshot"]
    assert restore["params"]["DBSubnetGroupName"] == old["subnet_group"]
    assert restore["params"]["VpcSecurityGroupIds"] == old["security_groups"]
    created = [c for c in report.aws_calls if c["operation"] == "CreateDBInstance" and c["error"] is None]
    assert len(created) == len(old["instances"]), "as many instances as the old target had"
    assert [c["params"]["PubliclyAccessible"] for c in created] == [False] * len(created)
    new = clusters(report.world_after, request.target_region)[request.target_cluster_id]
    assert (new["subnet_group"], new["security_groups"]) == (old["subnet_group"], old["security_groups"])


def test_seed_input_swap_refreshes_the_target(
    rehearse: Any, seed_input: dict[str, Any], postgres_server: Any
) -> None:
    # GIVEN the seed's input with a users spec, production's encrypted automated snapshot, and an
    # existing managed target; the copy and the restore each take a few polls
    raw_input, world = with_users(seed_input)
    request = RestoreRequest.from_event(raw_input)
    source = world.clusters[0]
    # WHEN the generated state machine runs it
    report = rehearse(raw_input, world=world, copy_polls=2, restore_polls=1)
    # THEN the target was refreshed by a swap
    assert_refreshed(report, request, SWAP_STEPS)
    assert report.world_after["clusters"] and report.operation_id == "op-test002"
    # AND the copy and the restore were in progress when their loops first looked, and their RDS
    # events (delivered by default) ended the waits, the copy's progress shown to the end
    looked = {run.name: run for run in report.states}
    assert looked["CopySnapshot"].percent == 0 and looked["WaitForCopy"].percent == 100
    assert looked["RestoreSnapshot"].output["complete"] is False
    ended_by = {call["step"] for call in report.aws_calls if call["operation"] == "SendTaskSuccess"}
    assert "rds_event" in ended_by
    assert report.loop_invocations["copy"]["waiting"] == 1 and report.loop_invocations["restore"]["waiting"] == 1
    assert all(latency < 60 for latency in report.detection_latency.values()), report.detection_latency
    # AND production's master password no longer opens the copy; the roles of the spec exist
    assert not can_log_in(postgres_server, source.master_username, source.master_password, request.database)
    roles = {
        row["rolname"]: row["rolcanlogin"]
        for row in postgres_server.fetch(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY($1::text[])",
            [APP_ROLE, REPORTING_ROLE],
        )
    }
    assert roles == {APP_ROLE: True, REPORTING_ROLE: False}
    app_password = world.secrets[0].value["password"]
    assert can_log_in(postgres_server, APP_ROLE, app_password, request.database)


def test_delete_first_reaches_the_same_end_state(rehearse: Any, seed_input: dict[str, Any]) -> None:
    raw_input, world = with_users(
        seed_request(seed_input, strategy="delete-first", operation_id="op-delete-first")
    )
    request = RestoreRequest.from_event(raw_input)
    report = rehearse(raw_input, world=world, copy_polls=1, delete_polls=1)
    assert_refreshed(report, request, DELETE_FIRST_STEPS)
    entered = [run.name for run in report.states]
    assert "SwapClusters" not in entered
    # The target was deleted (and waited for) before the restore under its name.
    assert entered.index("WaitForDelete") < entered.index("RestoreSnapshot")


FAILURES = [
    pytest.param(
        {"copy_polls": 1, "copy_outcome": "failed"},
        {},
        ("await_copy", "check_copy_status"),
        "CopyFailed",
        id="copy-fails",
    ),
    pytest.param(
        {"restore_polls": 1, "restore_outcome": "failed"},
        {},
        ("await_restore", "check_restore_status"),
        "RestoreFailed",
        id="restore-fails",
    ),
    pytest.param(
        {"faults": ["rds.CreateDBInstance=InsufficientDBInstanceCapacity"]},
        {},
        ("restore_snapshot", "await_restore", "check_restore_status"),
        "AwsCallFailed",
        id="permanent-aws-error",
    ),
    pytest.param(
        {}, {"target_cluster_id": "bad--id"}, "validate_request", "ValidationError", id="bad-request"
    ),
]


@pytest.mark.parametrize(("scenario", "request_change", "failed_step", "error_type"), FAILURES)
def test_a_failure_is_reported_once_and_leaves_the_target_as_it_was(
    rehearse: Any,
    seed_input: dict[str, Any],
    scenario: dict[str, Any],
    request_change: dict[str, Any],
    failed_step: Any,
    error_type: str,
) -> None:
    # GIVEN the seed's world (from the valid seed request) and a run that will fail
    world = default_world(RestoreRequest.from_event(seed_input))
    raw_input = seed_request(seed_input, **request_change)
    options = dict(scenario)
    options["faults"] = [parse_fault(spec) for spec in scenario.get("faults", [])]
    # WHEN it runs
    report = rehearse(raw_input, world=world, **options)
    # THEN the execution FAILED, naming the step and the error
    assert report.status == "FAILED"
    steps = failed_step if isinstance(failed_step, tuple) else (failed_step,)
    assert report.error["type"] == error_type
    assert report.error["step"] in steps
    assert [run.name for run in report.states][-2:] == ["HandleFailure", "RefreshFailed"]
    # AND one failure notification names the step and the error
    assert len(report.notifications) == 1
    notification = report.notifications[0]
    assert notification["attributes"]["status"] == "FAILED"
    assert notification["subject"].startswith("[aurora-restore] op-test002 FAILED: ")
    assert notification["message"]["failed_step"] in steps
    assert notification["message"]["error"]["type"] == error_type
    # AND the lock is released, the state item says FAILED
    assert report.locks == []
    assert report.state_item["status"] == "FAILED"
    # AND the original target is untouched and no temporary cluster is left behind
    before = clusters(report.world_before, "us-west-2")
    after = clusters(report.world_after, "us-west-2")
    assert set(after) == set(before) == {"new-cluster-id"}
    for key in ("status", "instances", "tags", "writer", "endpoint"):
        assert after["new-cluster-id"][key] == before["new-cluster-id"][key], key
    assert clusters(report.world_after, "us-east-1") == clusters(report.world_before, "us-east-1")


def test_throttling_on_any_call_is_retried_and_the_refresh_succeeds(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN every distinct AWS call a refresh makes (from a first run)
    baseline = rehearse(seed_input, world=default_world(RestoreRequest.from_event(seed_input)))
    assert baseline.status == "SUCCEEDED", baseline.error
    calls = sorted({(c["service"], c["operation"]) for c in baseline.aws_calls})
    assert ("rds", "CopyDBClusterSnapshot") in calls and ("sns", "Publish") in calls
    # WHEN the same refresh runs with every one of those calls throttled once, and the source
    # snapshot's describe throttled past botocore's own budget (the state machine retries that)
    faults = [parse_fault(f"{service}.{operation}=ThrottlingException*1") for service, operation in calls]
    faults = [f for f in faults if (f.service, f.operation) != ("rds", "DescribeDBClusterSnapshots")]
    # (the dispatcher's clients make 1 + 5 attempts: six throttles exhaust them)
    faults.append(parse_fault("rds.DescribeDBClusterSnapshots=Throttling*6"))
    report = rehearse(seed_input, world=default_world(RestoreRequest.from_event(seed_input)), faults=faults)
    # THEN every fault was met, and the refresh still succeeded
    assert report.status == "SUCCEEDED", report.error
    assert {f["fault"]: f["injected"] for f in report.faults} == {f.spec: f.times for f in faults}
    retried_states = [run for run in report.states if run.attempts > 1]
    assert retried_states, "the throttling past botocore's budget was retried by the state machine"
    # (moto's copy is available at once: without --polls the copy loop has nothing to check)
    assert_refreshed(report, RestoreRequest.from_event(seed_input), SWAP_STEPS - {"check_copy_status"})
