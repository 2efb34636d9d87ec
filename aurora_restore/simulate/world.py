"""The rehearsal's AWS world: what exists before the run, seeded into moto, and read back after.

A world file names clusters, snapshots, KMS keys, secrets, DB subnet groups and VPC security
groups in the operator's terms. Without one, :func:`default_world` builds the world the request
implies: the source cluster and its snapshot, KMS keys in both regions, and an existing, managed
target cluster, each in its own subnet group and security group, so the swap strategy really swaps
and the restore's placement (inherited from the target) is rehearsed.

Security groups are named in the world file (AWS makes their ``sg-`` ids): a cluster lists the
names of its groups, and the stack's ``default_security_group_ids`` may name the world's groups
too; seeding turns the names into the ids moto made.
"""

from __future__ import annotations

import json
import re
import secrets as token_source
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from refresh.request import MANAGED_TAG, RestoreRequest

if TYPE_CHECKING:
    from collections.abc import Callable

#: The account moto's world lives in.
ACCOUNT = "123456789012"
ENGINES = ("aurora-postgresql", "aurora-mysql")
SNAPSHOT_TYPES = ("manual", "automated")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
_IDENTIFIER = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|-(?!-)){0,62}(?<!-)$")
_SNAPSHOT = re.compile(r"^(?:rds:)?[A-Za-z](?:[A-Za-z0-9]|-(?!-)){0,254}(?<!-)$")
_ALIAS = re.compile(r"^alias/[A-Za-z0-9/_-]{1,250}$")
_GROUP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._ -]{0,254}$")
_AUTOMATED_DATE = re.compile(r"-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}$")
#: Keys of the optional ``stack`` section: the stack parameters the rehearsal's Lambda gets.
STACK_SETTINGS = (
    "allowed_target_pattern",
    "default_kms_key_id",
    "default_instance_class",
    "default_subnet_group",
    "default_security_group_ids",
    "default_cluster_parameter_group",
    "secrets_prefix",
    "scripts_s3_prefix",
    "export_bucket",
    "export_role_arn",
    "export_kms_key_id",
    "copy_max_wait_seconds",
    "restore_max_wait_seconds",
    # Set from source_account_stacks unless given (a trap: a wrong external id, no role).
    "source_account_role_arns",
    "source_kms_key_arns",
    "source_account_external_id",
)
_ACCOUNT = re.compile(r"^\d{12}$")


class WorldError(ValueError):
    """The world file (or the world a request implies) cannot be built; names the field and value."""


@dataclass(frozen=True)
class ClusterSpec:
    """An Aurora cluster that exists before the run."""

    id: str
    region: str
    engine: str = "aurora-postgresql"
    engine_version: str = "15.4"
    master_username: str = "postgres"
    #: Random unless the world file gives one; never printed or reported.
    master_password: str = field(default_factory=lambda: token_source.token_urlsafe(18), repr=False)
    instances: tuple[str, ...] = ()
    instance_class: str = "db.r6g.large"
    storage_encrypted: bool = False
    #: Alias of the cluster's KMS key (a key of the world in the same region); None = the first one.
    kms_key: str | None = None
    deletion_protection: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Name of a DB subnet group of the world in the cluster's region; None: RDS's default.
    subnet_group: str | None = None
    #: Names of security groups of the world in the cluster's region.
    security_groups: tuple[str, ...] = ()
    port: int | None = None
    #: Tags of instances that do not carry the cluster's own (``{"id": ..., "tags": ...}`` entries).
    instance_tags: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: Days of automated backups (1-35): a point-in-time restore may go this far back.
    backup_retention_days: int = 1
    #: SQL that stands in for the data a snapshot of this cluster holds: the rehearsal runs it in the
    #: restored copy's database before the refresh, so masking scripts and checks have rows to work on.
    data_sql: str = ""
    #: The account that owns it (production in another account); the stack's account by default.
    account: str = ACCOUNT


@dataclass(frozen=True)
class SubnetGroupSpec:
    """A DB subnet group (seeded over two subnets of the region's rehearsal VPC)."""

    region: str
    name: str


@dataclass(frozen=True)
class SecurityGroupSpec:
    """A VPC security group (in the region's rehearsal VPC), named; AWS makes its id."""

    region: str
    name: str


@dataclass(frozen=True)
class SnapshotSpec:
    """A cluster snapshot of one of the world's clusters."""

    id: str
    region: str
    cluster: str
    type: str = "manual"
    encrypted: bool | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    account: str = ACCOUNT


@dataclass(frozen=True)
class KmsKeySpec:
    """A KMS key with an alias."""

    region: str
    alias: str
    account: str = ACCOUNT


@dataclass(frozen=True)
class SourceStackSpec:
    """The source-account stack deployed in another account: its role and its shareable key."""

    account: str
    region: str
    #: False: the key policy leaves the stack's account out (a trap the refresh must refuse).
    key_grants_target: bool = True


@dataclass(frozen=True)
class SecretSpec:
    """A Secrets Manager secret (a JSON object or a plain string)."""

    region: str
    name: str
    value: Any


@dataclass(frozen=True)
class World:
    """Everything that exists before the run, plus the stack's settings."""

    clusters: tuple[ClusterSpec, ...] = ()
    snapshots: tuple[SnapshotSpec, ...] = ()
    kms_keys: tuple[KmsKeySpec, ...] = ()
    secrets: tuple[SecretSpec, ...] = ()
    #: Stack parameters (``STACK_SETTINGS``), e.g. ``{"allowed_target_pattern": "^dev-"}``.
    stack: Mapping[str, Any] = field(default_factory=dict)
    subnet_groups: tuple[SubnetGroupSpec, ...] = ()
    security_groups: tuple[SecurityGroupSpec, ...] = ()
    source_account_stacks: tuple[SourceStackSpec, ...] = ()

    @property
    def accounts(self) -> list[str]:
        """The stack's account first, then every other account the world has something in."""
        others = {c.account for c in self.clusters} | {s.account for s in self.snapshots}
        others |= {k.account for k in self.kms_keys} | {s.account for s in self.source_account_stacks}
        return [ACCOUNT, *sorted(others - {ACCOUNT})]

    @property
    def regions(self) -> list[str]:
        """Every region the world has something in, sorted."""
        found = {c.region for c in self.clusters} | {s.region for s in self.snapshots}
        found |= {k.region for k in self.kms_keys} | {s.region for s in self.secrets}
        found |= {g.region for g in self.subnet_groups} | {g.region for g in self.security_groups}
        return sorted(found)

    def cluster(self, cluster_id: str, region: str, account: str = ACCOUNT) -> ClusterSpec | None:
        """The world's cluster ``cluster_id`` in ``region`` (of ``account``)."""
        for cluster in self.clusters:
            if (
                cluster.id.lower() == cluster_id.lower()
                and cluster.region == region
                and cluster.account == account
            ):
                return cluster
        return None


# -- reading a world file ------------------------------------------------------------------------
def load_world(text: str, source: str = "world") -> World:
    """Parse a world file's text; ``WorldError`` names the first problem."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise WorldError(f"{source}: not valid JSON ({exc})") from None
    return parse_world(raw)


def parse_world(raw: Any) -> World:
    """Validate a world given as plain data."""
    if not isinstance(raw, Mapping):
        raise WorldError("world: must be a JSON object with clusters, snapshots, kms_keys, secrets")
    known = (
        "clusters",
        "snapshots",
        "kms_keys",
        "secrets",
        "subnet_groups",
        "security_groups",
        "source_account_stacks",
        "stack",
    )
    for key in raw:
        if key not in known:
            raise WorldError(f"world.{key}: is not known; sections: {', '.join(known)}")
    kms_keys = tuple(_kms_key(f"kms_keys[{i}]", v) for i, v in enumerate(_list(raw, "kms_keys")))
    clusters = tuple(_cluster(f"clusters[{i}]", v) for i, v in enumerate(_list(raw, "clusters")))
    snapshots = tuple(_snapshot(f"snapshots[{i}]", v) for i, v in enumerate(_list(raw, "snapshots")))
    secret_specs = tuple(_secret(f"secrets[{i}]", v) for i, v in enumerate(_list(raw, "secrets")))
    subnet_groups = tuple(
        SubnetGroupSpec(*_region_and_name(f"subnet_groups[{i}]", v, _GROUP_NAME, "a DB subnet group name"))
        for i, v in enumerate(_list(raw, "subnet_groups"))
    )
    security_groups = tuple(
        SecurityGroupSpec(*_region_and_name(f"security_groups[{i}]", v, _GROUP_NAME, "a security group name"))
        for i, v in enumerate(_list(raw, "security_groups"))
    )
    stack = _stack(raw.get("stack", {}))
    source_stacks = tuple(
        _source_stack(f"source_account_stacks[{i}]", v)
        for i, v in enumerate(_list(raw, "source_account_stacks"))
    )
    world = World(
        clusters, snapshots, kms_keys, secret_specs, stack, subnet_groups, security_groups, source_stacks
    )
    _check_references(world)
    return world


def _list(raw: Mapping[str, Any], key: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise WorldError(f"world.{key}: must be a list, got {type(value).__name__}")
    return value


def _object(where: str, value: Any, known: tuple[str, ...], required: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise WorldError(f"{where}: must be an object")
    for key in value:
        if key not in known:
            raise WorldError(f"{where}.{key}: is not known; fields: {', '.join(known)}")
    for key in required:
        if value.get(key) in (None, ""):
            raise WorldError(f"{where}.{key}: is required")
    return value


def _text(where: str, value: Any, pattern: re.Pattern[str] | None = None, rule: str = "") -> str:
    if not isinstance(value, str):
        raise WorldError(f"{where}: must be a string, got {value!r}")
    if pattern is not None and not pattern.match(value):
        raise WorldError(f"{where}: {value!r} is not valid; {rule}")
    return value


def _flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise WorldError(f"{where}: must be true or false, got {value!r}")
    return value


def _tags(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise WorldError(f"{where}: must be an object of string keys and string values")
    return dict(value)


_REGION_RULE = "an AWS region name such as eu-west-1"
_ID_RULE = "letters, digits and single hyphens, starting with a letter, at most 63 characters"


def _data_sql(where: str, value: Any) -> str:
    """SQL text, or a list of statements joined (a world file reads better one statement a line)."""
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "\n".join(value)
    if not isinstance(value, str):
        raise WorldError(f"{where}: must be SQL text or a list of SQL statements")
    return value


def _cluster(where: str, value: Any) -> ClusterSpec:
    known = (
        "id",
        "region",
        "engine",
        "engine_version",
        "master_username",
        "master_password",
        "instances",
        "instance_class",
        "storage_encrypted",
        "kms_key",
        "deletion_protection",
        "tags",
        "subnet_group",
        "security_groups",
        "port",
        "backup_retention_days",
        "data_sql",
        "account",
    )
    raw = _object(where, value, known, ("id", "region"))
    engine = raw.get("engine", "aurora-postgresql")
    if engine not in ENGINES:
        raise WorldError(f"{where}.engine: {engine!r} is not valid; one of {', '.join(ENGINES)}")
    instances = raw.get("instances", [])
    if not isinstance(instances, list):
        raise WorldError(f"{where}.instances: must be a list of instance ids")
    instances = list(instances)
    # An instance is its id (tagged like the cluster) or {"id": ..., "tags": {...}} (tagged its own way).
    instance_tags: dict[str, dict[str, str]] = {}
    for i, item in enumerate(instances):
        if isinstance(item, Mapping):
            entry = _object(f"{where}.instances[{i}]", item, ("id", "tags"), ("id",))
            instances[i] = entry["id"]
            instance_tags[str(entry["id"])] = _tags(f"{where}.instances[{i}].tags", entry.get("tags", {}))
    password = raw.get("master_password") or token_source.token_urlsafe(18)
    kms_key = raw.get("kms_key")
    subnet_group = raw.get("subnet_group")
    groups = raw.get("security_groups", [])
    if not isinstance(groups, list):
        raise WorldError(f"{where}.security_groups: must be a list of security group names of the world")
    port = raw.get("port")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 1150 <= port <= 65535
    ):
        raise WorldError(f"{where}.port: {port!r} is not valid; a port from 1150 to 65535")
    retention = raw.get("backup_retention_days", 1)
    if isinstance(retention, bool) or not isinstance(retention, int) or not 1 <= retention <= 35:
        raise WorldError(
            f"{where}.backup_retention_days: {retention!r} is not valid; a whole number of days from 1 to 35"
        )
    return ClusterSpec(
        backup_retention_days=retention,
        id=_text(f"{where}.id", raw["id"], _IDENTIFIER, _ID_RULE),
        region=_text(f"{where}.region", raw["region"], _REGION, _REGION_RULE),
        engine=engine,
        engine_version=_text(f"{where}.engine_version", raw.get("engine_version", "15.4")),
        master_username=_text(f"{where}.master_username", raw.get("master_username", "postgres")),
        master_password=_text(f"{where}.master_password", password),
        instances=tuple(
            _text(f"{where}.instances[{i}]", v, _IDENTIFIER, _ID_RULE) for i, v in enumerate(instances)
        ),
        instance_class=_text(f"{where}.instance_class", raw.get("instance_class", "db.r6g.large")),
        storage_encrypted=_flag(f"{where}.storage_encrypted", raw.get("storage_encrypted", False)),
        kms_key=None if kms_key is None else _text(f"{where}.kms_key", kms_key, _ALIAS, "alias/<name>"),
        deletion_protection=_flag(f"{where}.deletion_protection", raw.get("deletion_protection", False)),
        tags=_tags(f"{where}.tags", raw.get("tags", {})),
        subnet_group=None
        if subnet_group is None
        else _text(f"{where}.subnet_group", subnet_group, _GROUP_NAME, "a DB subnet group name"),
        security_groups=tuple(_text(f"{where}.security_groups[{i}]", g) for i, g in enumerate(groups)),
        port=port,
        data_sql=_data_sql(f"{where}.data_sql", raw.get("data_sql", "")),
        instance_tags=instance_tags,
        account=_account(where, raw),
    )


def _account(where: str, raw: Mapping[str, Any]) -> str:
    """The optional ``account`` of an entry: 12 digits, the stack's account when absent."""
    return _text(f"{where}.account", raw.get("account", ACCOUNT), _ACCOUNT, "a 12-digit AWS account id")


def _source_stack(where: str, value: Any) -> SourceStackSpec:
    raw = _object(where, value, ("account", "region", "key_grants_target"), ("account", "region"))
    account = _account(where, raw)
    if account == ACCOUNT:
        raise WorldError(f"{where}.account: {account} is the stack's own account; name the source account")
    return SourceStackSpec(
        account=account,
        region=_text(f"{where}.region", raw["region"], _REGION, _REGION_RULE),
        key_grants_target=_flag(f"{where}.key_grants_target", raw.get("key_grants_target", True)),
    )


def _region_and_name(where: str, value: Any, pattern: re.Pattern[str], rule: str) -> tuple[str, str]:
    raw = _object(where, value, ("region", "name"), ("region", "name"))
    return (
        _text(f"{where}.region", raw["region"], _REGION, _REGION_RULE),
        _text(f"{where}.name", raw["name"], pattern, rule),
    )


def _snapshot(where: str, value: Any) -> SnapshotSpec:
    raw = _object(
        where,
        value,
        ("id", "region", "cluster", "type", "encrypted", "tags", "account"),
        ("id", "region", "cluster"),
    )
    kind = raw.get("type", "manual")
    if kind not in SNAPSHOT_TYPES:
        raise WorldError(f"{where}.type: {kind!r} is not valid; one of {', '.join(SNAPSHOT_TYPES)}")
    snapshot_id = _text(
        f"{where}.id", raw["id"], _SNAPSHOT, "a cluster snapshot identifier (rds:... for automated ones)"
    )
    if kind == "automated" and not snapshot_id.startswith("rds:"):
        raise WorldError(f"{where}.id: {snapshot_id!r} is automated, so its id must start with 'rds:'")
    if kind == "manual" and snapshot_id.startswith("rds:"):
        raise WorldError(
            f"{where}.id: {snapshot_id!r} starts with 'rds:', which only automated snapshots use"
        )
    encrypted = raw.get("encrypted")
    return SnapshotSpec(
        id=snapshot_id,
        region=_text(f"{where}.region", raw["region"], _REGION, _REGION_RULE),
        cluster=_text(f"{where}.cluster", raw["cluster"], _IDENTIFIER, _ID_RULE),
        type=kind,
        encrypted=None if encrypted is None else _flag(f"{where}.encrypted", encrypted),
        tags=_tags(f"{where}.tags", raw.get("tags", {})),
        account=_account(where, raw),
    )


def _kms_key(where: str, value: Any) -> KmsKeySpec:
    raw = _object(where, value, ("region", "alias", "account"), ("region", "alias"))
    return KmsKeySpec(
        region=_text(f"{where}.region", raw["region"], _REGION, _REGION_RULE),
        alias=_text(f"{where}.alias", raw["alias"], _ALIAS, "alias/<name>"),
        account=_account(where, raw),
    )


def _secret(where: str, value: Any) -> SecretSpec:
    raw = _object(where, value, ("region", "name", "value"), ("region", "name"))
    secret_value = raw.get("value", {})
    if not isinstance(secret_value, (str, Mapping)):
        raise WorldError(f"{where}.value: must be a JSON object or a string")
    return SecretSpec(
        region=_text(f"{where}.region", raw["region"], _REGION, _REGION_RULE),
        name=_text(f"{where}.name", raw["name"]),
        value=dict(secret_value) if isinstance(secret_value, Mapping) else secret_value,
    )


def _stack(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise WorldError("world.stack: must be an object of stack settings")
    for key, setting in value.items():
        if key not in STACK_SETTINGS:
            raise WorldError(f"world.stack.{key}: is not known; settings: {', '.join(STACK_SETTINGS)}")
        if not isinstance(setting, (str, int)) and not (
            isinstance(setting, list) and all(isinstance(s, str) for s in setting)
        ):
            raise WorldError(f"world.stack.{key}: must be a string, a number or a list of strings")
    return dict(value)


def _check_references(world: World) -> None:
    seen: set[tuple[str, str]] = set()
    instance_ids: set[tuple[str, str]] = set()
    for i, cluster in enumerate(world.clusters):
        key = (cluster.account + cluster.region, cluster.id.lower())
        if key in seen:
            raise WorldError(f"clusters[{i}].id: {cluster.id!r} appears twice in {cluster.region}")
        seen.add(key)
        for instance in cluster.instances:
            if (cluster.region, instance.lower()) in instance_ids:
                raise WorldError(f"clusters[{i}].instances: {instance!r} appears twice in {cluster.region}")
            instance_ids.add((cluster.region, instance.lower()))
        # alias/aws/rds is the AWS managed key every account has: no entry needed.
        if (
            cluster.kms_key
            and not cluster.kms_key.startswith("alias/aws/")
            and not any(
                k.alias == cluster.kms_key and k.region == cluster.region and k.account == cluster.account
                for k in world.kms_keys
            )
        ):
            raise WorldError(
                f"clusters[{i}].kms_key: {cluster.kms_key!r} is not a key of the world in {cluster.region}; "
                "add it to kms_keys"
            )
    _check_placement_references(world)
    snapshot_ids: set[tuple[str, str]] = set()
    for i, snapshot in enumerate(world.snapshots):
        source_cluster = world.cluster(snapshot.cluster, snapshot.region, snapshot.account)
        if source_cluster is None:
            raise WorldError(
                f"snapshots[{i}].cluster: {snapshot.cluster!r} is not a cluster of the world in "
                f"{snapshot.region}; a snapshot is taken of a cluster in its own region"
            )
        if snapshot.encrypted is not None and snapshot.encrypted != source_cluster.storage_encrypted:
            state = "encrypted" if source_cluster.storage_encrypted else "not encrypted"
            raise WorldError(
                f"snapshots[{i}].encrypted: {snapshot.encrypted} contradicts its cluster "
                f"{source_cluster.id}, which is {state} (a snapshot is encrypted exactly when its cluster is)"
            )
        key = (snapshot.account + snapshot.region, snapshot.id.lower())
        if key in snapshot_ids:
            raise WorldError(f"snapshots[{i}].id: {snapshot.id!r} appears twice in {snapshot.region}")
        snapshot_ids.add(key)


def _check_placement_references(world: World) -> None:
    """Subnet groups and security groups are unique per region; clusters and the stack name real ones."""
    sections: tuple[tuple[str, tuple[SubnetGroupSpec | SecurityGroupSpec, ...]], ...] = (
        ("subnet_groups", world.subnet_groups),
        ("security_groups", world.security_groups),
    )
    for section, specs in sections:
        seen: set[tuple[str, str]] = set()
        for i, spec in enumerate(specs):
            if (spec.region, spec.name) in seen:
                raise WorldError(f"{section}[{i}].name: {spec.name!r} appears twice in {spec.region}")
            seen.add((spec.region, spec.name))
    for i, cluster in enumerate(world.clusters):
        if (
            cluster.subnet_group
            and SubnetGroupSpec(cluster.region, cluster.subnet_group) not in world.subnet_groups
        ):
            raise WorldError(
                f"clusters[{i}].subnet_group: {cluster.subnet_group!r} is not a subnet group of the world in "
                f"{cluster.region}; add it to subnet_groups"
            )
        for j, name in enumerate(cluster.security_groups):
            if SecurityGroupSpec(cluster.region, name) not in world.security_groups:
                raise WorldError(
                    f"clusters[{i}].security_groups[{j}]: {name!r} is not a security group of the world in "
                    f"{cluster.region}; add it to security_groups"
                )
    defaults = world.stack.get("default_security_group_ids", [])
    for name in [defaults] if isinstance(defaults, str) else defaults:
        regions = {g.region for g in world.security_groups if g.name == name}
        if len(regions) > 1:
            raise WorldError(
                f"world.stack.default_security_group_ids: {name!r} names a security group in several regions "
                f"({', '.join(sorted(regions))}); give the stack's groups names unique in the world"
            )


# -- the world a request implies -----------------------------------------------------------------
def source_cluster_name(snapshot_name: str) -> str:
    """The source cluster a snapshot name implies: ``rds:orders-2026-11-20-02-00`` -> ``orders``."""
    name = snapshot_name.removeprefix("rds:")
    name = _AUTOMATED_DATE.sub("", name)
    for suffix in ("-snapshot", "-snap"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    name = re.sub(r"[^A-Za-z0-9-]", "-", name)
    name = re.sub(r"-{2,}", "-", name).strip("-")[:63].rstrip("-")
    return name if name and name[0].isalpha() else "source-" + name if name else "source-cluster"


def default_world(request: RestoreRequest) -> World:
    """The world the request implies: source cluster + snapshot, KMS keys, a managed target."""
    ref = request.snapshot
    if ref.kind == "arn" and ref.account != ACCOUNT:
        raise WorldError(
            f"snapshot_id: {request.snapshot_id!r} is in account {ref.account}; the default world lives in "
            f"account {ACCOUNT}. Describe the world with --world FILE, or name the snapshot by identifier"
        )
    if ref.kind in ("latest", "clone", "pitr"):
        source_id = ref.cluster_id
        snapshot_id = f"rds:{source_id}-2026-11-20-02-00"
    else:
        snapshot_id = ref.value.split(":cluster-snapshot:")[-1] if ref.kind == "arn" else ref.value
        source_id = source_cluster_name(snapshot_id)
    if (
        source_id.lower() == request.target_cluster_id.lower()
        and request.source_region == request.target_region
    ):
        source_id = source_id[:56].rstrip("-") + "-source"
    # Production is encrypted with its own region's key; the copy needs one in the target region.
    target_key = KmsKeySpec(request.target_region, "alias/aurora-restore-rehearsal")
    source_key = target_key
    if request.cross_region:
        source_key = KmsKeySpec(request.source_region, "alias/aurora-restore-rehearsal-source")
    keys = (source_key, target_key) if request.cross_region else (target_key,)
    # Each cluster in its own subnet group and security group: the restore must land in the
    # target's, never production's (nor the region's default VPC).
    source_subnets = SubnetGroupSpec(request.source_region, f"{source_id}-subnets")
    source_group = SecurityGroupSpec(request.source_region, f"{source_id}-db")
    target_subnets = SubnetGroupSpec(request.target_region, f"{request.target_cluster_id}-subnets")
    target_group = SecurityGroupSpec(request.target_region, f"{request.target_cluster_id}-db")
    source = ClusterSpec(
        id=source_id,
        region=request.source_region,
        instances=(f"{source_id[:61].rstrip('-')}-1",),
        storage_encrypted=True,
        kms_key=source_key.alias,
        master_password=token_source.token_urlsafe(18),
        tags={"environment": "production"},
        subnet_group=source_subnets.name,
        security_groups=(source_group.name,),
    )
    target = ClusterSpec(
        id=request.target_cluster_id,
        region=request.target_region,
        instances=(f"{request.target_cluster_id[:61].rstrip('-')}-1",),
        storage_encrypted=True,
        kms_key=target_key.alias,
        master_password=token_source.token_urlsafe(18),
        tags={MANAGED_TAG: "true", "environment": "rehearsal"},
        subnet_group=target_subnets.name,
        security_groups=(target_group.name,),
    )
    snapshot = SnapshotSpec(
        id=snapshot_id,
        region=request.source_region,
        cluster=source_id,
        type="automated" if snapshot_id.startswith("rds:") else "manual",
        encrypted=True,
    )
    return World(
        clusters=(source, target),
        snapshots=(snapshot,),
        kms_keys=keys,
        stack={"default_kms_key_id": target_key.alias},
        subnet_groups=(source_subnets, target_subnets),
        security_groups=(source_group, target_group),
    )


# -- seeding moto --------------------------------------------------------------------------------
@dataclass
class SeededWorld:
    """What seeding made: key ARNs by (region, alias), for settings and reports."""

    world: World
    key_arns: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Security group ids by (region, name).
    security_group_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Clients acting in each other account of the world (seeding and reading back only).
    elsewhere: dict[str, Any] = field(default_factory=dict)

    def key_arn(self, region: str, alias: str, account: str = ACCOUNT) -> str:
        """The ARN of the world's key ``alias`` in ``region`` (of ``account``)."""
        if account != ACCOUNT:
            return self.key_arns[(f"{account}/{region}", alias)]
        return self.key_arns[(region, alias)]


def seed(world: World, clients: Any) -> SeededWorld:
    """Create the world in moto through the AWS APIs (automated snapshots through moto's backend).

    Another account's resources are made with clients of that account (a seeding role there, which
    the refresh never uses); a source-account stack is deployed as its template says.
    """
    seeded = SeededWorld(world)
    there: dict[str, Any] = {ACCOUNT: clients}
    for account in world.accounts[1:]:
        there[account] = _clients_in(clients, account)
    seeded.elsewhere = {a: c for a, c in there.items() if a != ACCOUNT}
    for key in world.kms_keys:
        kms = there[key.account]("kms", key.region)
        key_id = kms.create_key(Description=f"rehearsal key {key.alias}")["KeyMetadata"]["Arn"]
        kms.create_alias(AliasName=key.alias, TargetKeyId=key_id)
        where = key.region if key.account == ACCOUNT else f"{key.account}/{key.region}"
        seeded.key_arns[(where, key.alias)] = key_id
    _seed_network(world, seeded, clients)
    for cluster in world.clusters:
        _seed_cluster(cluster, world, seeded, there[cluster.account])
    for snapshot in world.snapshots:
        _seed_snapshot(snapshot, there[snapshot.account]("rds", snapshot.region), snapshot.account)
    _seed_source_account_stacks(seeded, clients)
    for secret in world.secrets:
        value = secret.value if isinstance(secret.value, str) else json.dumps(secret.value)
        clients("secretsmanager", secret.region).create_secret(Name=secret.name, SecretString=value)
    return seeded


def _seed_network(world: World, seeded: SeededWorld, clients: Callable[[str, str], Any]) -> None:
    """One VPC with two subnets per region that needs one; the world's security and subnet groups in it.

    The stack's ``default_security_group_ids`` naming the world's groups become their ids, as the
    stack parameter holds them.
    """
    regions = sorted({g.region for g in world.subnet_groups} | {g.region for g in world.security_groups})
    for region in regions:
        ec2 = clients("ec2", region)
        vpc_id = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        subnet_ids = [
            ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=f"{region}{zone}")[
                "Subnet"
            ]["SubnetId"]
            for i, zone in enumerate("ab")
        ]
        for group in (g for g in world.security_groups if g.region == region):
            made = ec2.create_security_group(
                GroupName=group.name, Description=f"rehearsal group {group.name}", VpcId=vpc_id
            )
            seeded.security_group_ids[(region, group.name)] = made["GroupId"]
        for subnets in (g for g in world.subnet_groups if g.region == region):
            clients("rds", region).create_db_subnet_group(
                DBSubnetGroupName=subnets.name,
                DBSubnetGroupDescription=f"rehearsal subnet group {subnets.name}",
                SubnetIds=subnet_ids,
            )
    defaults = world.stack.get("default_security_group_ids")
    if defaults:
        by_name = {name: group_id for (_, name), group_id in seeded.security_group_ids.items()}
        names = [defaults] if isinstance(defaults, str) else list(defaults)
        seeded.world = replace(
            world, stack={**world.stack, "default_security_group_ids": [by_name.get(n, n) for n in names]}
        )


def _clients_in(clients: Any, account: str) -> Any:
    """Clients acting in ``account``, through a seeding role made there (moto's IAM backend)."""
    from moto.iam.models import iam_backends

    iam = iam_backends[account]["aws"]
    role = next((r for r in iam.roles.values() if r.name == "aurora-restore-rehearsal-seeder"), None)
    if role is None:
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
        }
        role = iam.create_role(
            "aurora-restore-rehearsal-seeder", json.dumps(trust), "/", None, "rehearsal seeding", [], None
        )
    credentials = clients("sts").assume_role(RoleArn=role.arn, RoleSessionName="rehearsal-seed")[
        "Credentials"
    ]
    return clients.assumed(credentials, account)


def _seed_source_account_stacks(seeded: SeededWorld, clients: Any) -> None:
    """Deploy each source-account stack; the refresh stack's settings name their roles and keys."""
    from aurora_restore.simulate.accounts import EXTERNAL_ID, deploy_source_account

    world = seeded.world
    if not world.source_account_stacks:
        return
    roles, keys = [], []
    for spec in world.source_account_stacks:
        made = deploy_source_account(
            clients,
            account=spec.account,
            region=spec.region,
            target_account=ACCOUNT,
            key_grants_target=spec.key_grants_target,
        )
        roles.append(made.role_arn)
        keys.append(made.key_arn)
    stack = {
        "source_account_role_arns": roles,
        "source_kms_key_arns": keys,
        "source_account_external_id": EXTERNAL_ID,
        **world.stack,
    }
    seeded.world = replace(world, stack=stack)


def _seed_cluster(cluster: ClusterSpec, world: World, seeded: SeededWorld, clients: Any) -> None:
    rds = clients("rds", cluster.region)
    kwargs: dict[str, Any] = {
        "DBClusterIdentifier": cluster.id,
        "Engine": cluster.engine,
        "EngineVersion": cluster.engine_version,
        "MasterUsername": cluster.master_username,
        "MasterUserPassword": cluster.master_password,
        "StorageEncrypted": cluster.storage_encrypted,
        "DeletionProtection": cluster.deletion_protection,
        "Tags": [{"Key": k, "Value": v} for k, v in cluster.tags.items()],
        "BackupRetentionPeriod": cluster.backup_retention_days,
    }
    if cluster.subnet_group:
        kwargs["DBSubnetGroupName"] = cluster.subnet_group
    if cluster.security_groups:
        kwargs["VpcSecurityGroupIds"] = [
            seeded.security_group_ids[(cluster.region, name)] for name in cluster.security_groups
        ]
    if cluster.port is not None:
        kwargs["Port"] = cluster.port
    if cluster.storage_encrypted and cluster.kms_key and cluster.kms_key.startswith("alias/aws/"):
        # The AWS managed key: every account has it, AWS makes it on first use.
        kwargs["KmsKeyId"] = clients("kms", cluster.region).describe_key(KeyId=cluster.kms_key)[
            "KeyMetadata"
        ]["Arn"]
    elif cluster.storage_encrypted:
        alias = cluster.kms_key or next(
            (k.alias for k in world.kms_keys if k.region == cluster.region and k.account == cluster.account),
            None,
        )
        if alias is None:
            raise WorldError(
                f"cluster {cluster.id} in {cluster.region} is encrypted but the world has no KMS key in "
                f"{cluster.region}; add one to kms_keys"
            )
        kwargs["KmsKeyId"] = seeded.key_arn(cluster.region, alias, cluster.account)
    rds.create_db_cluster(**kwargs)
    # A world's cluster has run for longer than its retention period: RDS can restore it to any
    # second of that period (EarliestRestorableTime), not only since it was seeded.
    from moto.rds.models import rds_backends

    clusters = rds_backends[cluster.account][rds.meta.region_name].clusters
    made = next(c for key, c in clusters.items() if key.lower() == cluster.id.lower())
    made.earliest_restorable_time -= timedelta(days=cluster.backup_retention_days)
    for instance in cluster.instances:
        rds.create_db_instance(
            DBInstanceIdentifier=instance,
            DBClusterIdentifier=cluster.id,
            Engine=cluster.engine,
            DBInstanceClass=cluster.instance_class,
            Tags=[
                {"Key": k, "Value": v} for k, v in cluster.instance_tags.get(instance, cluster.tags).items()
            ],
        )


def _seed_snapshot(snapshot: SnapshotSpec, rds: Any, account: str = ACCOUNT) -> None:
    tags = [{"Key": k, "Value": v} for k, v in snapshot.tags.items()]
    if snapshot.type == "manual":
        rds.create_db_cluster_snapshot(
            DBClusterSnapshotIdentifier=snapshot.id, DBClusterIdentifier=snapshot.cluster, Tags=tags
        )
        return
    # No API makes an automated snapshot under a chosen name; moto's backend has the call RDS's
    # own backup schedule would make.
    from moto.rds.models import rds_backends

    backend = rds_backends[account][rds.meta.region_name]
    made = backend.create_auto_cluster_snapshot(snapshot.cluster, snapshot.id)
    made.tags = tags


# -- reading the world back ----------------------------------------------------------------------
def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    return [item for page in client.get_paginator(operation).paginate(**kwargs) for item in page[key]]


def _tag_dict(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("TagList", []) or []}


def describe_world(
    clients: Callable[[str, str], Any], regions: list[str], elsewhere: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Clusters (id, region, status, instances, tags...) and snapshots in ``regions``, as JSON data.

    ``elsewhere`` (clients by account) adds other accounts' clusters and snapshots, each with its
    ``account``, and for snapshots the accounts they are shared with (``shared_with``).
    """
    found = _describe_account(clients, regions)
    for account, there in sorted((elsewhere or {}).items()):
        other = _describe_account(there, regions)
        for cluster in other["clusters"]:
            cluster["account"] = account
        rds_by_region = {region: there("rds", region) for region in regions}
        for snapshot in other["snapshots"]:
            snapshot["account"] = account
            result = rds_by_region[snapshot["region"]].describe_db_cluster_snapshot_attributes(
                DBClusterSnapshotIdentifier=snapshot["id"]
            )["DBClusterSnapshotAttributesResult"]["DBClusterSnapshotAttributes"]
            snapshot["shared_with"] = next(
                (a["AttributeValues"] for a in result if a["AttributeName"] == "restore"), []
            )
        found["clusters"].extend(other["clusters"])
        found["snapshots"].extend(other["snapshots"])
    return found


def _describe_account(clients: Callable[[str, str], Any], regions: list[str]) -> dict[str, Any]:
    clusters: list[dict[str, Any]] = []
    snapshots: list[dict[str, Any]] = []
    for region in sorted(set(regions)):
        rds = clients("rds", region)
        instances = {
            i["DBInstanceIdentifier"]: i for i in _pages(rds, "describe_db_instances", "DBInstances")
        }
        for cluster in _pages(rds, "describe_db_clusters", "DBClusters"):
            members = cluster.get("DBClusterMembers", [])
            writer = next((m["DBInstanceIdentifier"] for m in members if m.get("IsClusterWriter")), None)
            clusters.append(
                {
                    "id": cluster["DBClusterIdentifier"],
                    "region": region,
                    "status": cluster.get("Status"),
                    "instances": [m["DBInstanceIdentifier"] for m in members],
                    "writer": writer,
                    "instance_status": {
                        m["DBInstanceIdentifier"]: instances.get(m["DBInstanceIdentifier"], {}).get(
                            "DBInstanceStatus"
                        )
                        for m in members
                    },
                    "tags": _tag_dict(cluster),
                    "engine_version": cluster.get("EngineVersion"),
                    "storage_encrypted": bool(cluster.get("StorageEncrypted")),
                    "kms_key_id": cluster.get("KmsKeyId"),
                    "deletion_protection": bool(cluster.get("DeletionProtection")),
                    "master_password_managed": "MasterUserSecret" in cluster,
                    "subnet_group": cluster.get("DBSubnetGroup"),
                    "security_groups": [
                        g.get("VpcSecurityGroupId") for g in cluster.get("VpcSecurityGroups", []) or []
                    ],
                    "endpoint": cluster.get("Endpoint"),
                }
            )
        for snapshot in _pages(rds, "describe_db_cluster_snapshots", "DBClusterSnapshots"):
            snapshots.append(
                {
                    "id": snapshot["DBClusterSnapshotIdentifier"],
                    "region": region,
                    "status": snapshot.get("Status"),
                    "type": snapshot.get("SnapshotType"),
                    "cluster": snapshot.get("DBClusterIdentifier"),
                    "encrypted": bool(snapshot.get("StorageEncrypted")),
                    "kms_key_id": snapshot.get("KmsKeyId"),
                    "tags": _tag_dict(snapshot),
                }
            )
    return {"clusters": clusters, "snapshots": snapshots}
