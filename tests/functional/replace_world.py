"""A target region for the replace steps' tests: moto made faithful where it is not, and probes.

moto gets things wrong that matter to replacing a target (renames over a taken name, instances
left behind by a rename, restores over an existing cluster, ``DeletionProtection=False`` ignored,
a snapshot taken at creation). The ``faithful_rds`` fixture applies the rehearsal's own
corrections (:func:`aurora_restore.simulate.moto_compat.rds_as_documented`, where each names the
RDS behaviour it reproduces), so these tests and the rehearsal meet the same RDS. States moto never
shows (creating, renaming, deleting, failed...) come from :class:`StatusOverlay`, an
``after-call`` hook that rewrites what the describe calls return, and faults from ``before-call``
hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dispatcher.request import MANAGED_TAG, OPERATION_TAG, RestoreRequest

SOURCE_REGION = "us-east-1"
TARGET_REGION = "us-west-2"
TARGET = "orders-dev"
SOURCE_CLUSTER = "orders"
OPERATION = "op-replace-1"
EXECUTION = "arn:aws:states:us-west-2:123456789012:execution:aurora-restore:op-replace-1"
PASSWORD = "not-a-real-password-1"
COPY_ID = "ar-orders-snap-1a2b3c4d"

#: RDS calls that change nothing; every other call counts as a mutation.
READ_ONLY_PREFIXES = ("Describe", "List")


@pytest.fixture
def faithful_rds() -> Iterator[None]:
    """moto's RDS as RDS documents it, with the rehearsal's corrections, for the test's duration."""
    from aurora_restore.simulate.moto_compat import rds_as_documented

    with rds_as_documented():
        yield


def rds(clients: Any) -> Any:
    """The target region's RDS client."""
    return clients("rds", TARGET_REGION)


def request(**overrides: Any) -> dict[str, Any]:
    """A validated request (``$.request``) for the target, with ``overrides``."""
    fields = {
        "operation_id": OPERATION,
        "snapshot_id": "orders-snap",
        "source_region": SOURCE_REGION,
        "target_region": TARGET_REGION,
        "target_cluster_id": TARGET,
        **overrides,
    }
    return RestoreRequest.from_event(fields).to_dict()


def managed_tags(operation_id: str = "op-earlier") -> list[dict[str, str]]:
    """Tags of a cluster an earlier aurora-restore operation made."""
    return [{"Key": MANAGED_TAG, "Value": "true"}, {"Key": OPERATION_TAG, "Value": operation_id}]


def make_cluster(
    clients: Any,
    cluster_id: str = TARGET,
    *,
    tags: list[dict[str, str]] | None = None,
    protected: bool = False,
    instances: int = 1,
    region: str = TARGET_REGION,
) -> dict[str, Any]:
    """A cluster with ``instances`` instances (``<cluster>-instance-<n>``), all tagged ``tags``.

    The instances carry the cluster's tags, as those aurora-restore makes do.
    """
    client = clients("rds", region)
    tags = managed_tags() if tags is None else tags
    client.create_db_cluster(
        DBClusterIdentifier=cluster_id,
        Engine="aurora-postgresql",
        EngineVersion="15.4",
        MasterUsername="postgres",
        MasterUserPassword=PASSWORD,
        DeletionProtection=protected,
        Tags=tags,
    )
    for index in range(instances):
        client.create_db_instance(
            DBInstanceIdentifier=f"{cluster_id}-instance-{index + 1}",
            DBClusterIdentifier=cluster_id,
            Engine="aurora-postgresql",
            DBInstanceClass="db.r6g.large",
            Tags=tags,
        )
    cluster: dict[str, Any] = client.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]
    return cluster


def make_copy(clients: Any) -> dict[str, Any]:
    """The copy step's output (``$.copy``): an available snapshot in the target region."""
    client = rds(clients)
    # moto restores from a snapshot of a cluster it knows: make one, snapshot it, remove it.
    client.create_db_cluster(
        DBClusterIdentifier="seed-for-copy",
        Engine="aurora-postgresql",
        EngineVersion="15.4",
        MasterUsername="postgres",
        MasterUserPassword=PASSWORD,
    )
    snapshot = client.create_db_cluster_snapshot(
        DBClusterIdentifier="seed-for-copy", DBClusterSnapshotIdentifier=COPY_ID, Tags=managed_tags(OPERATION)
    )["DBClusterSnapshot"]
    client.delete_db_cluster(DBClusterIdentifier="seed-for-copy", SkipFinalSnapshot=True)
    return {
        "identifier": COPY_ID,
        "arn": snapshot["DBClusterSnapshotArn"],
        "region": TARGET_REGION,
        "copied": True,
        "reused_from": None,
        "status": "available",
        "percent_progress": 100,
        "complete": True,
        "next_poll_seconds": 0,
        "polls": 1,
        "started_at": "2024-05-01T10:00:00+00:00",
    }


def snapshot_facts(*, target_exists: bool, encrypted: bool = False) -> dict[str, Any]:
    """The snapshot_check output (``$.snapshot``)."""
    return {
        "arn": f"arn:aws:rds:{SOURCE_REGION}:123456789012:cluster-snapshot:orders-snap",
        "identifier": "orders-snap",
        "engine": "aurora-postgresql",
        "engine_version": "15.4",
        "encrypted": encrypted,
        "kms_key_id": None,
        "size_gb": 10,
        "source_cluster_id": SOURCE_CLUSTER,
        "snapshot_type": "manual",
        "account": "123456789012",
        "target": {"exists": target_exists, "managed": target_exists, "status": "available"},
    }


def event(step: str, **inputs: Any) -> dict[str, Any]:
    """The event a Task state sends the dispatcher."""
    return {"step": step, "execution_id": EXECUTION, **inputs}


def cluster_ids(clients: Any) -> list[str]:
    """Every cluster in the target region, sorted."""
    return sorted(c["DBClusterIdentifier"] for c in rds(clients).describe_db_clusters()["DBClusters"])


def describe(clients: Any, cluster_id: str) -> dict[str, Any] | None:
    """One cluster of the target region, or None."""
    found = [
        c for c in rds(clients).describe_db_clusters()["DBClusters"] if c["DBClusterIdentifier"] == cluster_id
    ]
    return found[0] if found else None


def instance_ids(clients: Any, cluster_id: str | None = None) -> list[str]:
    """Instances of the target region (of ``cluster_id`` when given), sorted."""
    return sorted(
        i["DBInstanceIdentifier"]
        for i in rds(clients).describe_db_instances()["DBInstances"]
        if cluster_id is None or i.get("DBClusterIdentifier") == cluster_id
    )


def tags(clients: Any, cluster: dict[str, Any]) -> dict[str, str]:
    """A cluster's tags, freshly listed."""
    listed = rds(clients).list_tags_for_resource(ResourceName=cluster["DBClusterArn"])["TagList"]
    return {t["Key"]: t["Value"] for t in listed}


class Mutations:
    """Records every RDS call that changes something, with its parameters as the code passed them.

    A ``before-parameter-build`` hook: it sees each call once, before botocore serialises it.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if not model.name.startswith(READ_ONLY_PREFIXES):
            self.calls.append((model.name, dict(params)))

    @property
    def names(self) -> list[str]:
        """Operation names, in call order."""
        return [name for name, _ in self.calls]

    def of(self, operation: str) -> list[dict[str, Any]]:
        """The parameters of each call to ``operation``."""
        return [body for name, body in self.calls if name == operation]

    def clear(self) -> None:
        """Forget what was recorded so far."""
        self.calls.clear()


@pytest.fixture
def mutations(clients: Any) -> Mutations:
    """Every mutating RDS call from now on."""
    recorder = Mutations()
    clients.add_hook("before-parameter-build.rds", recorder)
    return recorder


class StatusOverlay:
    """Makes describe calls report states moto never produces (an ``after-call`` hook).

    ``clusters[id]`` / ``instances[id]`` hold fields laid over the real description, e.g.
    ``{"Status": "renaming"}``; ``hidden`` ids are dropped from listings (a name being freed).
    """

    def __init__(self) -> None:
        self.clusters: dict[str, dict[str, Any]] = {}
        self.instances: dict[str, dict[str, Any]] = {}

    def __call__(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        for cluster in parsed.get("DBClusters", []) or []:
            cluster.update(self.clusters.get(cluster.get("DBClusterIdentifier", ""), {}))
        for instance in parsed.get("DBInstances", []) or []:
            instance.update(self.instances.get(instance.get("DBInstanceIdentifier", ""), {}))


@pytest.fixture
def overlay(clients: Any) -> StatusOverlay:
    """Cluster and instance states laid over moto's answers."""
    laid = StatusOverlay()
    clients.add_hook("after-call.rds.DescribeDBClusters", laid)
    clients.add_hook("after-call.rds.DescribeDBInstances", laid)
    return laid


def client_error(operation: str, code: str, message: str = "", status: int = 400) -> Callable[..., Any]:
    """A ``before-call`` handler answering ``operation`` with an AWS error instead of calling moto."""
    from botocore.awsrequest import AWSResponse

    def answer(**_: Any) -> tuple[Any, dict[str, Any]]:
        http = AWSResponse(f"https://rds.{TARGET_REGION}.amazonaws.com/", status, {}, None)
        return http, {
            "Error": {"Code": code, "Message": message or code, "Type": "Sender"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    return answer


def fail_once(clients: Any, operation: str, code: str, message: str = "", status: int = 400) -> list[int]:
    """Answer the next call to ``operation`` with an error, the later ones normally; returns a counter."""
    answer = client_error(operation, code, message, status)
    seen: list[int] = []

    def handler(**kwargs: Any) -> Any:
        seen.append(1)
        return answer(**kwargs) if len(seen) == 1 else None

    clients.add_hook(f"before-call.rds.{operation}", handler)
    return seen


def always_fail(
    clients: Any, operation: str, code: str, message: str = "", status: int = 400
) -> Callable[[], None]:
    """Answer every call to ``operation`` with an error until the returned function is called."""
    answer = client_error(operation, code, message, status)
    failing = [True]

    def handler(**kwargs: Any) -> Any:
        return answer(**kwargs) if failing[0] else None

    clients.add_hook(f"before-call.rds.{operation}", handler)
    return lambda: failing.clear() or failing.append(False)


@pytest.fixture
def target_world(faithful_rds: None, clients: Any) -> Iterator[dict[str, Any]]:
    """The usual world: the copy in the target region, and the source cluster in its own region."""
    make_cluster(clients, SOURCE_CLUSTER, region=SOURCE_REGION, tags=[], instances=1)
    yield {"copy": make_copy(clients)}
