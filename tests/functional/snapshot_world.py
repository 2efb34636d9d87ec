"""A moto world for the snapshot steps: source clusters, snapshots, copies, keys, and ways to
run a step with a controlled clock and to inject what moto cannot produce."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.awsrequest import AWSResponse

from dispatcher.context import StepContext
from dispatcher.logs import get_logger
from refresh.request import MANAGED_TAG, OPERATION_TAG, RestoreRequest

SOURCE_REGION = "us-east-1"
TARGET_REGION = "us-west-2"
ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
SOURCE_CLUSTER = "orders"
TARGET_CLUSTER = "orders-dev"
OPERATION = "op-copy-1"
T0 = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)


@dataclass
class Clock:
    """A clock a test moves by hand."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def request(**fields: Any) -> RestoreRequest:
    """A validated request; cross-region from the source cluster's manual snapshot by default."""
    body = {
        "operation_id": OPERATION,
        "snapshot_id": "orders-manual",
        "source_region": SOURCE_REGION,
        "target_region": TARGET_REGION,
        "target_cluster_id": TARGET_CLUSTER,
        **fields,
    }
    return RestoreRequest.from_event({k: v for k, v in body.items() if v is not None})


def context(
    event: dict[str, Any],
    req: RestoreRequest,
    *,
    settings: Any,
    clients: Any,
    store: Any,
    clock: Clock | None = None,
) -> StepContext:
    """The context the dispatcher would build, with the test's clock."""
    store.step_started(req.operation_id, "validate_request", None)
    return StepContext(
        event={"request": req.to_dict(), **event},
        operation_id=req.operation_id,
        settings=settings,
        aws=clients,
        store=store,
        log=get_logger("test"),
        request=req,
        execution_id="exec-test",
        clock=clock or Clock(),
    )


def source_cluster(
    clients: Any,
    cluster_id: str = SOURCE_CLUSTER,
    *,
    region: str = SOURCE_REGION,
    engine: str = "aurora-postgresql",
    encrypted: bool = False,
    tags: dict[str, str] | None = None,
    deletion_protection: bool = False,
) -> dict[str, Any]:
    """A cluster; moto also takes an automated snapshot ``rds:<cluster>-<date>`` of it."""
    cluster: dict[str, Any] = clients("rds", region).create_db_cluster(
        DBClusterIdentifier=cluster_id,
        Engine=engine,
        EngineVersion="15.4" if engine == "aurora-postgresql" else "8.0.mysql_aurora.3.05.2",
        MasterUsername="postgres",
        MasterUserPassword="password123",
        StorageEncrypted=encrypted,
        CopyTagsToSnapshot=True,
        DeletionProtection=deletion_protection,
        Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
    )["DBCluster"]
    return cluster


def manual_snapshot(
    clients: Any,
    snapshot_id: str = "orders-manual",
    *,
    cluster_id: str = SOURCE_CLUSTER,
    region: str = SOURCE_REGION,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A manual cluster snapshot of ``cluster_id``."""
    kwargs: dict[str, Any] = {"DBClusterIdentifier": cluster_id, "DBClusterSnapshotIdentifier": snapshot_id}
    if tags is not None:
        kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    snapshot: dict[str, Any] = clients("rds", region).create_db_cluster_snapshot(**kwargs)[
        "DBClusterSnapshot"
    ]
    return snapshot


def automated_snapshot(
    clients: Any, cluster_id: str = SOURCE_CLUSTER, region: str = SOURCE_REGION
) -> dict[str, Any]:
    """The automated snapshot moto took when the cluster was made."""
    found = clients("rds", region).describe_db_cluster_snapshots(
        DBClusterIdentifier=cluster_id, SnapshotType="automated"
    )["DBClusterSnapshots"]
    return dict(found[0])


def target_key(clients: Any, alias: str = "alias/orders-dev", region: str = TARGET_REGION) -> str:
    """A KMS key in the target region (with an alias); returns its ARN."""
    kms = clients("kms", region)
    key = kms.create_key(Description="aurora-restore test")["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return str(key["Arn"])


def managed_copy(
    clients: Any,
    copy_id: str,
    *,
    operation_id: str,
    source_arn: str,
    target: str = f"{TARGET_REGION}/{TARGET_CLUSTER}",
    kms_key: str = "none",
    region: str = TARGET_REGION,
    extra_tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A copy as an earlier aurora-restore operation would have left it."""
    tags = {
        MANAGED_TAG: "true",
        OPERATION_TAG: operation_id,
        "aurora-restore:source-snapshot": source_arn,
        "aurora-restore:target": target,
        "aurora-restore:kms-key": kms_key,
        **(extra_tags or {}),
    }
    kwargs: dict[str, Any] = {
        "SourceDBClusterSnapshotIdentifier": source_arn,
        "TargetDBClusterSnapshotIdentifier": copy_id,
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    if source_arn.split(":")[3] != region:
        kwargs["SourceRegion"] = source_arn.split(":")[3]
    copy: dict[str, Any] = clients("rds", region).copy_db_cluster_snapshot(**kwargs)["DBClusterSnapshot"]
    return copy


def snapshots(clients: Any, region: str = TARGET_REGION) -> dict[str, dict[str, str]]:
    """Every cluster snapshot of the region, by identifier, with its tags."""
    found = clients("rds", region).describe_db_cluster_snapshots()["DBClusterSnapshots"]
    return {
        s["DBClusterSnapshotIdentifier"]: {t["Key"]: t["Value"] for t in s.get("TagList", [])} for s in found
    }


def tags_of_snapshot(clients: Any, identifier: str, region: str = TARGET_REGION) -> dict[str, str]:
    """Tags of one snapshot."""
    return snapshots(clients, region)[identifier]


@dataclass
class Calls:
    """AWS calls made, as (service, region, operation, params)."""

    made: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)

    def names(self, service: str = "rds") -> list[str]:
        return [op for svc, _, op, _ in self.made if svc == service]

    def mutating(self, service: str = "rds") -> list[str]:
        return [op for op in self.names(service) if not op.startswith(("Describe", "List"))]

    def params(self, operation: str) -> list[dict[str, Any]]:
        return [p for _, _, op, p in self.made if op == operation]


def record_calls(clients: Any) -> Calls:
    """Record every AWS call's API parameters (after botocore's own handlers)."""
    calls = Calls()

    def handler(params: dict[str, Any], model: Any, context: Any = None, **_: Any) -> None:
        service = model.service_model.service_name
        region = (context or {}).get("client_region", "")
        calls.made.append((service, region, model.name, dict(params)))

    clients.add_hook("provide-client-params", handler)
    return calls


def respond(parsed: dict[str, Any], status: int = 200) -> tuple[AWSResponse, dict[str, Any]]:
    """A ``before-call`` return value standing in for an AWS response."""
    metadata = {"HTTPStatusCode": status, "RequestId": "injected", "HTTPHeaders": {}, "RetryAttempts": 0}
    return AWSResponse("https://injected", status, {}, None), {**parsed, "ResponseMetadata": metadata}


def fail(code: str, message: str = "injected", status: int = 400) -> tuple[AWSResponse, dict[str, Any]]:
    """A ``before-call`` return value standing in for an AWS error."""
    return respond({"Error": {"Code": code, "Message": message, "Type": "Sender"}}, status)


def inject(
    clients: Any,
    operation: str,
    answer: Callable[[dict[str, Any]], tuple[AWSResponse, dict[str, Any]] | None],
) -> None:
    """Answer ``rds.<operation>`` with ``answer(body params)``; None lets moto answer."""

    def handler(params: dict[str, Any], **_: Any) -> Any:
        return answer(params.get("body", {}))

    clients.add_hook(f"before-call.rds.{operation}", handler)


def snapshot_description(
    identifier: str,
    *,
    status: str = "available",
    percent: int | None = 100,
    region: str = TARGET_REGION,
    account: str = ACCOUNT,
    cluster_id: str = SOURCE_CLUSTER,
    snapshot_type: str = "manual",
    created: datetime | None = None,
    tags: dict[str, str] | None = None,
    engine: str = "aurora-postgresql",
    encrypted: bool = False,
) -> dict[str, Any]:
    """A DescribeDBClusterSnapshots entry as RDS returns it."""
    entry: dict[str, Any] = {
        "DBClusterSnapshotIdentifier": identifier,
        "DBClusterIdentifier": cluster_id,
        "DBClusterSnapshotArn": f"arn:aws:rds:{region}:{account}:cluster-snapshot:{identifier}",
        "Engine": engine,
        "EngineVersion": "15.4",
        "AllocatedStorage": 120,
        "Status": status,
        "SnapshotType": snapshot_type,
        "StorageEncrypted": encrypted,
        "TagList": [{"Key": k, "Value": v} for k, v in (tags or {}).items()],
    }
    if percent is not None:
        entry["PercentProgress"] = percent
    if created is not None:
        entry["SnapshotCreateTime"] = created
    return entry
