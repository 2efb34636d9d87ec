"""Every registered step, run twice with the same input at its point of the pipeline, changes nothing more.

Step Functions retries a Task whose Lambda timed out or failed after it acted, and Lambda retries
too: whatever the first invocation did, the second must adopt. Each scenario drives the pipeline
state by state through the dispatcher, passing data as the state machine does
(docs/architecture.md: a Task gets its step's ``reads``, its output goes under ``result_key``), and
runs every Task twice with the same event. After each pair the world is compared with the world
after the first of the two: RDS clusters, instances and snapshots with their tags in both regions,
the SNS messages published, the target lock, the operation's status, and the restored database's
roles (``setup_db_users`` runs against the suite's real PostgreSQL, which plays the restored
cluster's database, with RDS's master password changes emulated as in its own tests).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from dispatcher.errors import AuroraRestoreError
from dispatcher.handler import Dispatcher
from dispatcher.settings import Settings
from infra.pipeline import Branch, PollLoop, Stage, Task, derive_pipeline
from infra.state_machine import event_steps, pipeline_steps
from refresh.target_lock import lock_holder
from tests.conftest import STACK_PLACEMENT
from tests.functional.replace_world import faithful_rds, make_cluster
from tests.functional.snapshot_world import SOURCE_REGION, TARGET_REGION, manual_snapshot
from tests.functional.sns_inbox import TOPIC_ARN, Inbox

__all__ = ["faithful_rds"]

TARGET = "orders-dev"
EXECUTION = "arn:aws:states:us-west-2:123456789012:execution:aurora-restore:"
#: The source cluster's master user, which the restored cluster keeps.
SOURCE_MASTER = "orders_master"
SOURCE_PASSWORD = "source-master-pw-1"


def holds(rule: dict[str, Any], data: dict[str, Any]) -> bool:
    """A Choice rule of the pipeline (And, StringEquals, BooleanEquals) against the execution's data."""
    if "And" in rule:
        return all(holds(nested, data) for nested in rule["And"])
    value: Any = data
    for part in rule["Variable"].removeprefix("$.").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if "StringEquals" in rule:
        return bool(value == rule["StringEquals"])
    if "BooleanEquals" in rule:
        return bool(value is rule["BooleanEquals"])
    raise AssertionError(f"the drive does not know the Choice rule {rule}")


def target_cluster(clients: Any, instances: int) -> None:
    """A managed target with ``instances`` instances (``faithful_rds`` keeps moto from taking a
    snapshot at creation, which RDS never does and a same-name restore would collide with)."""
    make_cluster(clients, TARGET, instances=instances)


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    """The tags RDS lists with a described resource."""
    return {t["Key"]: t["Value"] for t in resource.get("TagList", [])}


def world(clients: Any, inbox: Inbox, store: Any, operation_id: str, database: Database) -> dict[str, Any]:
    """What an operator would call the state of things, with nothing that merely ages."""
    seen: dict[str, Any] = {"roles": database.roles()}
    for region in (SOURCE_REGION, TARGET_REGION):
        rds = clients("rds", region)
        seen[f"{region} clusters"] = {
            c["DBClusterIdentifier"]: {
                "status": c["Status"],
                "deletion_protection": c.get("DeletionProtection"),
                "members": sorted(m["DBInstanceIdentifier"] for m in c.get("DBClusterMembers", [])),
                "tags": tags_of(c),
            }
            for c in rds.describe_db_clusters()["DBClusters"]
        }
        seen[f"{region} instances"] = {
            i["DBInstanceIdentifier"]: {
                "cluster": i.get("DBClusterIdentifier"),
                "status": i["DBInstanceStatus"],
                "tags": tags_of(i),
            }
            for i in rds.describe_db_instances()["DBInstances"]
        }
        seen[f"{region} snapshots"] = {
            s["DBClusterSnapshotIdentifier"]: {"status": s["Status"], "tags": tags_of(s)}
            for s in rds.describe_db_cluster_snapshots()["DBClusterSnapshots"]
        }
    inbox.delivered.extend(inbox.receive())
    seen["notifications"] = len(inbox.delivered)
    holder = lock_holder(store, TARGET_REGION, TARGET)
    seen["lock"] = holder["lock_owner"] if holder else None
    # Only the status: the whole item (every step's results) is slow to read back from moto.
    item = (
        clients("dynamodb")
        .get_item(
            TableName=store.state_table,
            Key={"operation_id": {"S": operation_id}},
            ProjectionExpression="#status",
            ExpressionAttributeNames={"#status": "status"},
            ConsistentRead=True,
        )
        .get("Item", {})
    )
    seen["status"] = item.get("status", {}).get("S")
    return seen


@dataclass
class Twice:
    """Drives one execution, running every Task twice and checking the world after each pair."""

    dispatcher: Dispatcher
    clients: Any
    inbox: Inbox
    store: Any
    operation_id: str
    database: Database
    data: dict[str, Any]
    ran: list[str] = field(default_factory=list)
    #: More of the world to compare (another account's snapshots), when the drive reaches further.
    also: Any = None

    def world(self) -> dict[str, Any]:
        seen = world(self.clients, self.inbox, self.store, self.operation_id, self.database)
        if self.also is not None:
            seen["elsewhere"] = self.also()
        return seen

    def task(self, step: str) -> dict[str, Any]:
        """The Task state of ``step``, invoked twice with the same event; the second output goes on."""
        cls = self.dispatcher.registry.get(step)
        event: dict[str, Any] = {"step": step, "execution_id": EXECUTION + self.operation_id}
        for key in cls.reads:
            if key == "$":
                event["input"] = self.data
            else:
                event[key] = self.data[key]
        first_output = self.dispatcher.handle(copy.deepcopy(event))
        after_first = self.world()
        second_output = self.dispatcher.handle(copy.deepcopy(event))
        after_second = self.world()
        assert after_second == after_first, f"{step} run a second time changed the world"
        assert set(second_output) == set(first_output), f"{step} answered differently the second time"
        self.data[cls.result_key] = second_output
        self.ran.append(step)
        return second_output

    def loop(self, start: str) -> dict[str, Any]:
        """A poll loop: the start step, then its check until complete.

        moto finishes most things at once, so the start step may already report ``complete``;
        the check still runs once then (a poll that comes after the end must be harmless too).
        """
        output = self.task(start)
        check = self.dispatcher.registry.get(start).check_name
        for _ in range(5):
            output = self.task(check)
            if output["complete"]:
                return output
        raise AssertionError(f"the {start} loop did not complete: {output}")

    def run(self) -> None:
        """The pipeline as the state machine walks it (the success path), derived from the steps."""
        self.walk(derive_pipeline(self.dispatcher.registry).stages)

    def walk(self, stages: tuple[Stage, ...]) -> None:
        for stage in stages:
            if isinstance(stage, Task):
                self.task(stage.step)
            elif isinstance(stage, PollLoop):
                self.loop(stage.step)
            elif holds(stage.when, self.data):
                self.walk(stage.stages)
            elif stage.otherwise_key:
                # The Choice's Pass state: what the skipped step's readers find instead.
                self.data[stage.otherwise_key] = dict(stage.otherwise_output or {})

    def fail(self, error: AuroraRestoreError) -> dict[str, Any]:
        """A Catch: the error under ``$.error``, then HandleFailure (twice, like every Task)."""
        cause = {"errorMessage": str(error), "errorType": type(error).__name__}
        self.data["error"] = {"Error": type(error).__name__, "Cause": json.dumps(cause)}
        return self.task("handle_failure")


@pytest.fixture
def inbox(clients: Any) -> Inbox:
    box = Inbox(clients)
    box.delivered = []  # type: ignore[attr-defined]
    return box


@dataclass
class Database:
    """The restored cluster's database, played by a database on the suite's PostgreSQL server."""

    server: Any
    name: str

    def roles(self) -> list[tuple[str, bool]]:
        """Every role with whether it may log in."""
        rows = self.server.fetch("SELECT rolname, rolcanlogin FROM pg_roles ORDER BY rolname")
        return [(row["rolname"], row["rolcanlogin"]) for row in rows]


@pytest.fixture
def database(postgres_server: Any, pg_database: str, clients: Any) -> Database:
    """The database, its master user as the snapshot has it, and RDS's password changes emulated."""
    from aurora_restore.simulate.localdb import RdsMasterPasswordEmulation

    postgres_server.add_master_user(SOURCE_MASTER, SOURCE_PASSWORD)
    RdsMasterPasswordEmulation(postgres_server, clients).install()
    return Database(postgres_server, pg_database)


@pytest.fixture
def app(registry: Any, clients: Any, store: Any, inbox: Inbox, database: Database) -> Dispatcher:
    """The dispatcher with a notification topic (so published messages can be counted) and the
    database endpoint overridden to the local server (as the rehearsal does)."""
    settings = Settings(
        topic_arn=TOPIC_ARN,
        db_endpoint_override=database.server.endpoint,
        db_ca_bundle=database.server.ca_file,
        db_connect_attempts=3,
        db_connect_timeout_seconds=5.0,
        secrets_prefix="aurora-restore/",
        **STACK_PLACEMENT,
    )
    dispatcher = Dispatcher(registry=registry, settings=settings, clients=clients)
    dispatcher._store = store
    return dispatcher


def start(
    app: Dispatcher,
    clients: Any,
    inbox: Inbox,
    store: Any,
    database: Database,
    operation_id: str,
    **body: Any,
) -> Twice:
    """A source snapshot in us-east-1 and an execution refreshing TARGET in us-west-2 from it,
    with a users spec: one login role whose password is in Secrets Manager."""
    clients("rds", SOURCE_REGION).create_db_cluster(
        DBClusterIdentifier="orders",
        Engine="aurora-postgresql",
        EngineVersion="15.4",
        MasterUsername=SOURCE_MASTER,
        MasterUserPassword=SOURCE_PASSWORD,
    )
    manual_snapshot(clients)
    secret = clients("secretsmanager", TARGET_REGION).create_secret(
        Name=f"aurora-restore/{operation_id}/app_rw", SecretString=json.dumps({"password": "rw-Pass-1"})
    )
    users = {
        "roles": [{"name": "app_rw", "login": True, "password_secret_arn": secret["ARN"]}],
        "grants": [
            {"type": "database", "database": database.name, "privileges": ["CONNECT"], "to": ["app_rw"]}
        ],
    }
    raw = {
        "operation_id": operation_id,
        "snapshot_id": "orders-manual",
        "source_region": SOURCE_REGION,
        "target_region": TARGET_REGION,
        "target_cluster_id": TARGET,
        "database": database.name,
        "users": users,
        **body,
    }
    return Twice(app, clients, inbox, store, operation_id, database, {"body": raw})


def test_swap_every_step_twice(
    faithful_rds: None, app: Dispatcher, clients: Any, inbox: Inbox, store: Any, database: Database
) -> None:
    # GIVEN a managed target with two instances, refreshed by swap
    target_cluster(clients, instances=2)
    run = start(app, clients, inbox, store, database, "op-twice-swap", strategy="swap", reader_count=1)
    # WHEN every Task of the pipeline runs twice
    run.run()
    # THEN (checked after each pair) nothing happened twice; and the refresh did happen once
    final = run.world()
    assert run.data["restore"]["swap_required"] is True
    assert final["status"] == "SUCCEEDED"
    assert final["lock"] is None
    assert final["notifications"] == 1
    assert TARGET in final[f"{TARGET_REGION} clusters"]
    assert (
        final[f"{TARGET_REGION} clusters"][TARGET]["tags"]["aurora-restore:operation-id"] == "op-twice-swap"
    )
    assert "swap_clusters" in run.ran and "check_swap_status" in run.ran
    # AND the users spec was applied once: the role exists and may log in, production's password is out
    assert ("app_rw", True) in final["roles"]
    assert run.data["users"]["master_user"]["storage"] == "rds-managed"
    assert SOURCE_PASSWORD not in json.dumps(run.data)


def test_delete_first_every_step_twice(
    faithful_rds: None, app: Dispatcher, clients: Any, inbox: Inbox, store: Any, database: Database
) -> None:
    # GIVEN a managed target refreshed by delete-first
    target_cluster(clients, instances=2)
    run = start(app, clients, inbox, store, database, "op-twice-delete", strategy="delete-first")
    # WHEN every Task runs twice
    run.run()
    # THEN the old target was deleted once and the new one restored under its name
    final = run.world()
    assert "delete_target" in run.ran and "check_delete_status" in run.ran
    assert run.data["restore"]["swap_required"] is False
    assert final["status"] == "SUCCEEDED"
    assert final["notifications"] == 1
    assert (
        final[f"{TARGET_REGION} clusters"][TARGET]["tags"]["aurora-restore:operation-id"] == "op-twice-delete"
    )


@pytest.mark.parametrize("strategy", ["swap", "delete-first"])
def test_clone_every_step_twice(
    faithful_rds: None,
    app: Dispatcher,
    clients: Any,
    inbox: Inbox,
    store: Any,
    database: Database,
    strategy: str,
) -> None:
    # GIVEN a live production cluster with an instance in the target's region, and the managed target
    target_cluster(clients, instances=1)
    rds = clients("rds", TARGET_REGION)
    rds.create_db_cluster(
        DBClusterIdentifier="orders-prod",
        Engine="aurora-postgresql",
        EngineVersion="15.4",
        MasterUsername=SOURCE_MASTER,
        MasterUserPassword=SOURCE_PASSWORD,
    )
    rds.create_db_instance(
        DBInstanceIdentifier="orders-prod-1",
        DBClusterIdentifier="orders-prod",
        Engine="aurora-postgresql",
        DBInstanceClass="db.r6g.large",
    )
    run = start(
        app,
        clients,
        inbox,
        store,
        database,
        f"op-twice-clone-{strategy}",
        strategy=strategy,
        snapshot_id="clone:orders-prod",
        source_region=TARGET_REGION,
    )
    # WHEN every Task of the short path runs twice
    run.run()
    # THEN no copy, no archive; one clone made, swapped or put in place once, reported once
    assert "copy_snapshot" not in run.ran and "archive_snapshot" not in run.ran
    assert run.data["copy"]["copied"] is False
    final = run.world()
    assert final["status"] == "SUCCEEDED" and final["lock"] is None and final["notifications"] == 1
    clusters = final[f"{TARGET_REGION} clusters"]
    assert clusters[TARGET]["tags"]["aurora-restore:operation-id"] == f"op-twice-clone-{strategy}"
    assert clusters[TARGET]["tags"]["aurora-restore:source-kind"] == "clone"
    assert clusters["orders-prod"]["members"] == ["orders-prod-1"]
    assert set(clusters) == {TARGET, "orders-prod"}
    assert not [s for s in final[f"{TARGET_REGION} snapshots"] if "orders-prod" in s and "final" not in s]


def test_new_target_every_step_twice(
    faithful_rds: None, app: Dispatcher, clients: Any, inbox: Inbox, store: Any, database: Database
) -> None:
    # GIVEN no target yet
    run = start(app, clients, inbox, store, database, "op-twice-new")
    # WHEN every Task runs twice
    run.run()
    # THEN one cluster and one copy were made
    final = run.world()
    assert final["status"] == "SUCCEEDED"
    assert list(final[f"{TARGET_REGION} clusters"]) == [TARGET]
    assert len([s for s in final[f"{TARGET_REGION} snapshots"] if s.startswith("ar-")]) == 1


@pytest.mark.parametrize("strategy", ["swap", "delete-first"])
def test_failure_handler_twice_after_the_restore(
    faithful_rds: None,
    app: Dispatcher,
    clients: Any,
    inbox: Inbox,
    store: Any,
    database: Database,
    strategy: str,
) -> None:
    # GIVEN a refresh that restored (and for delete-first, deleted the old target) and then failed
    from refresh.errors import RestoreFailed

    target_cluster(clients, instances=1)
    run = start(app, clients, inbox, store, database, f"op-twice-fail-{strategy}", strategy=strategy)
    run.task("validate_request")
    run.task("snapshot_check")
    run.loop("copy_snapshot")
    if strategy == "delete-first":
        run.loop("delete_target")
    run.loop("restore_snapshot")
    # WHEN the failure handler runs twice (checked after the pair)
    failure = run.fail(RestoreFailed("the restored cluster is incompatible-parameters", cluster_id=TARGET))
    # THEN one notification, the lock released, FAILED, and the temporary cluster gone (swap)
    final = run.world()
    assert final["notifications"] == 1
    assert final["lock"] is None
    assert final["status"] == "FAILED"
    clusters = final[f"{TARGET_REGION} clusters"]
    if strategy == "swap":
        assert list(clusters) == [TARGET]  # the original, untouched
        assert clusters[TARGET]["tags"]["aurora-restore:operation-id"] == "op-earlier"
    # AND the second run knew the first had reported and cleaned up (it said so, it did nothing)
    assert failure["failed_step"] == "check_restore_status"
    assert failure["error_type"] == "RestoreFailed"
    assert failure["notification"]["already_sent"] is True
    if strategy == "swap":
        assert any("temporary cluster" in line for line in failure["cleaned_up"])
    else:
        # delete-first: the old target is gone; the restored cluster holds the name and is kept
        assert clusters[TARGET]["tags"]["aurora-restore:operation-id"] == "op-twice-fail-delete-first"


def test_every_registered_step_is_covered(registry: Any) -> None:
    """The drives walk the pipeline derived from the steps, so a new step joins them by its place;
    the swap and delete-first drives above take both Choices, the failure test the failure step."""
    covered = {cls.name for cls in pipeline_steps(registry)}
    # The event step runs outside the pipeline: a duplicate event is its second run
    # (tests/functional/test_rds_event.py).
    events = {cls.name for cls in event_steps(registry)}
    assert events == {"rds_event"}
    assert set(registry.names()) - covered - events == set()
    branches = [stage for stage in derive_pipeline(registry).stages if isinstance(stage, Branch)]
    assert {branch.choice for branch in branches} == {
        "NeedsSourceShare",
        "NeedsCopy",
        "SharedFromSourceAccount",
        "ChooseStrategy",
        "NeedsSwap",
        "NeedsArchive",
    }


def test_cross_account_every_step_twice(
    faithful_rds: None, app: Dispatcher, clients: Any, inbox: Inbox, store: Any, database: Database
) -> None:
    """The source-account Choices: an automated snapshot under aws/rds in another account."""
    from dataclasses import replace

    from aurora_restore.simulate.accounts import (
        EXTERNAL_ID,
        SOURCE_ACCOUNT,
        automated_snapshot_under_aws_rds,
        deploy_source_account,
    )
    from aurora_restore.simulate.moto_compat import accounts_as_documented
    from tests.functional.snapshot_world import target_key

    with accounts_as_documented():
        # GIVEN production in another account, its stack deployed, and the refresh stack configured
        source = deploy_source_account(clients, region=SOURCE_REGION, target_account="123456789012")
        automated = automated_snapshot_under_aws_rds(source, "orders", "rds:orders-2026-11-29-03-00")
        app.settings = replace(
            app.settings,
            source_account_role_arns=(source.role_arn,),
            source_kms_key_arns=(source.key_arn,),
            source_account_external_id=EXTERNAL_ID,
            default_kms_key_id=target_key(clients),
        )
        run = start(app, clients, inbox, store, database, "op-twice-xaccount")
        run.data["body"].update(
            snapshot_id=automated["DBClusterSnapshotIdentifier"], source_account=SOURCE_ACCOUNT
        )

        def source_snapshots() -> dict[str, Any]:
            rds = source.rds()
            return {
                s["DBClusterSnapshotIdentifier"]: (
                    s["Status"],
                    rds.describe_db_cluster_snapshot_attributes(
                        DBClusterSnapshotIdentifier=s["DBClusterSnapshotIdentifier"]
                    )["DBClusterSnapshotAttributesResult"]["DBClusterSnapshotAttributes"],
                )
                for s in rds.describe_db_cluster_snapshots()["DBClusterSnapshots"]
            }

        before = source_snapshots()
        run.also = source_snapshots
        # WHEN every Task runs twice
        run.run()
    # THEN the refresh succeeded through both source-account steps, and the source is as it was
    assert {"share_source_snapshot", "check_source_share_status", "retire_source_share"} <= set(run.ran)
    final = run.world()
    assert final["status"] == "SUCCEEDED"
    assert list(final[f"{TARGET_REGION} clusters"]) == [TARGET]
    assert source_snapshots() == before
