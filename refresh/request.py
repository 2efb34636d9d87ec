"""The pipeline request: one model, validated before anything touches AWS.

It accepts the wrapped input that existing callers send (``{"body": {...}}``, the shape of the
workflow this tool replaces) and the same fields unwrapped. Every refusal is a
:class:`~dispatcher.errors.ValidationError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dispatcher.context import StepContext, derive_operation_id
from dispatcher.errors import ValidationError
from refresh.sources import CLUSTER_KINDS, FORMS, check_same_place, is_cluster_source, parse_cluster_source

CLUSTER_ID_RULE = (
    "1-63 letters, digits or hyphens, starting with a letter, with no trailing hyphen and no '--'"
)
SNAPSHOT_ID_RULE = (
    "1-255 letters, digits or hyphens (rds: before an automated snapshot's name), starting with a "
    "letter, with no trailing hyphen and no '--'"
)
PARAMETER_GROUP_RULE = (
    "1-255 letters, digits or hyphens, starting with a letter, with no trailing hyphen and no '--'"
)
SUBNET_GROUP_RULE = (
    "1-255 letters, digits, periods, underscores, spaces or hyphens, starting with a letter, "
    "and not 'default'"
)
OPERATION_ID_RULE = (
    "1-64 letters, digits, hyphens or underscores (the Step Functions execution name, with room "
    "for a retry's -retry-<n>)"
)
#: Every pattern is matched with ``fullmatch``: ``$`` also matches before a trailing newline, and
#: ``"dev-main\n"`` would pass as a name RDS refuses (or, worse, as a second target).
_RDS_NAME = r"[A-Za-z](?:[A-Za-z0-9]|-(?!-)){{0,{tail}}}(?<!-)"
_CLUSTER_ID = re.compile(_RDS_NAME.format(tail=62))
_SNAPSHOT_ID = re.compile(r"(?:rds:)?" + _RDS_NAME.format(tail=254))
_SNAPSHOT_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:rds:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d):(?P<account>\d{12})"
    r":cluster-snapshot:(?P<id>(?:rds:)?" + _RDS_NAME.format(tail=254) + ")"
)
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d")
#: What an operation id may be; the operator CLI checks ids typed on its command line with it.
#: ``\Z`` (not ``$``) so that ``match`` and ``fullmatch`` agree: no trailing newline.
OPERATION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_OPERATION_ID = OPERATION_ID_PATTERN
_INSTANCE_CLASS = re.compile(r"db\.(?:serverless|[a-z0-9]+\.[a-z0-9]+)")
_SECURITY_GROUP = re.compile(r"sg-[0-9a-f]{8,17}")
_PARAMETER_GROUP = re.compile(_RDS_NAME.format(tail=254))
_SUBNET_GROUP = re.compile(r"[A-Za-z][A-Za-z0-9._ -]{0,254}")
_KMS_KEY = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}"
    r"|alias/[A-Za-z0-9/_-]{1,250}|arn:aws(?:-[a-z]+)*:kms:[a-z0-9-]+:\d{12}:(?:key|alias)/[A-Za-z0-9/_-]+"
)
_ENGINE_VERSION = re.compile(r"\d+(?:\.\d+){0,2}(?:\.[A-Za-z0-9]+)?")
_TAG_KEY = re.compile(r"[\w.:/=+@ -]{1,128}")
#: PostgreSQL keeps at most 63 bytes of a name (NAMEDATALEN - 1) and cuts longer ones silently.
PG_NAME_MAX_BYTES = 63

#: Step Functions refuses more than 256 KiB (262,144 bytes of UTF-8 JSON) in any state's input or
#: output with States.DataLimitExceeded, which no Catch can catch: the execution dies without the
#: failure handler, its notification or the lock's release. The request travels through every
#: state beside the steps' outputs (and, on the failure path, the error), so it may fill at most
#: half of that: the execution input and the validated request are each held to this.
STATE_DATA_LIMIT_BYTES = 262_144
MAX_REQUEST_BYTES = 131_072


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON, as Step Functions counts a state's data."""
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    # A lone surrogate (JSON allows "\ud800") still counts, as its three bytes.
    return len(text.encode("utf-8", "surrogatepass"))


def check_input_size(document: Any, *, what: str = "request") -> None:
    """Refuse an execution input (a JSON text or its object) over :data:`MAX_REQUEST_BYTES`.

    ``aurora-restore start`` calls this before it calls AWS; ValidateRequest calls it first too,
    so an execution started some other way fails in its first state, with a notification.
    """
    size = json_size(document)
    if size > MAX_REQUEST_BYTES:
        raise ValidationError(
            what,
            f"{size} bytes",
            f"must be at most {MAX_REQUEST_BYTES} bytes of JSON ({MAX_REQUEST_BYTES // 1024} KiB): every "
            "state carries the request and Step Functions ends an execution whose state data passes "
            f"{STATE_DATA_LIMIT_BYTES // 1024} KiB; put large SQL scripts in S3 (users.scripts[].s3_uri)",
        )


STRATEGIES = ("swap", "delete-first")
MASTER_PASSWORD_STORAGE = ("rds-managed", "stack-secret")
MANAGED_TAG = "aurora-restore:managed"
OPERATION_TAG = "aurora-restore:operation-id"
RESERVED_TAG_PREFIXES = ("aws:", "aurora-restore:")


@dataclass(frozen=True)
class SnapshotRef:
    """How the request names the snapshot: an identifier, an ARN, or the newest of a cluster."""

    kind: str  # "identifier" | "arn" | "latest" | "clone" | "pitr" (refresh.sources)
    value: str
    #: For an ARN: its region and account; for ``latest``, ``clone`` and ``pitr``: the source cluster id.
    region: str = ""
    account: str = ""
    cluster_id: str = ""
    #: For ``clone`` and ``pitr``: ``latest`` or the point in time (ISO 8601 UTC).
    restore_to: str = ""


@dataclass(frozen=True)
class RestoreRequest:
    """One refresh of ``target_cluster_id`` in ``target_region`` from ``snapshot_id``."""

    operation_id: str
    snapshot_id: str
    source_region: str
    target_region: str
    target_cluster_id: str
    strategy: str = "swap"
    kms_key_id: str | None = None
    instance_class: str | None = None
    #: None: as many readers as the old target has (none for a new target).
    reader_count: int | None = None
    engine_version: str | None = None
    db_subnet_group: str | None = None
    vpc_security_group_ids: tuple[str, ...] = ()
    db_cluster_parameter_group: str | None = None
    port: int | None = None
    #: Instance parameter group of the writer and readers; None: the old target's, else RDS's default.
    db_parameter_group: str | None = None
    #: The restored instances are private unless the request says ``publicly_accessible: true``.
    publicly_accessible: bool = False
    iam_database_auth: bool = False
    serverless_min_capacity: float = 0.5
    serverless_max_capacity: float = 8.0
    database: str = "postgres"
    master_password_storage: str = "rds-managed"  # noqa: S105 (a mode, not a password)
    users: Mapping[str, Any] | None = None
    retention: Mapping[str, int] = field(default_factory=lambda: {"keep_copies": 3})
    tags: Mapping[str, str] = field(default_factory=dict)
    skip_final_snapshot: bool = False
    allow_disable_deletion_protection: bool = False
    #: The validation gate (refresh/checks.py): queries the restored copy must pass before the swap.
    checks: tuple[Mapping[str, Any], ...] = ()
    #: When the checks fail under swap: keep the restored cluster (tagged) instead of removing it.
    keep_failed_restore: bool = False
    #: The account that owns the snapshot when it is not the stack's (reached through its role).
    source_account: str | None = None

    @property
    def snapshot(self) -> SnapshotRef:
        """The parsed snapshot reference."""
        return parse_snapshot_ref(self.snapshot_id)

    @property
    def cross_region(self) -> bool:
        """True when the snapshot must travel to another region."""
        return self.source_region != self.target_region

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; this is what travels between states as ``$.request``."""
        data = asdict(self)
        data["vpc_security_group_ids"] = list(self.vpc_security_group_ids)
        data["users"] = dict(self.users) if self.users is not None else None
        data["retention"] = dict(self.retention)
        data["tags"] = dict(self.tags)
        data["checks"] = [dict(check) for check in self.checks]
        return data

    @classmethod
    def from_event(cls, raw: Any, *, execution_id: str | None = None) -> RestoreRequest:
        """Validate a raw request (wrapped as ``{"body": ...}`` or unwrapped) into a request."""
        return parse_request(raw, execution_id=execution_id)

    @staticmethod
    def peek_operation_id(raw: Any, execution_id: str | None = None) -> str:
        """Best-effort operation id of a raw input, for logging and records, never raising."""
        return peek_operation_id(raw, execution_id)


FIELDS: dict[str, str] = {
    "operation_id": "optional; " + OPERATION_ID_RULE + ", generated when absent",
    "snapshot_id": "required; snapshot identifier, cluster-snapshot ARN, latest:<cluster-id>, "
    "clone:<cluster-id> or pitr:<cluster-id>@<ISO 8601 UTC time or latest>",
    "source_region": "required; an AWS region name such as eu-west-1",
    "target_region": "required; an AWS region name such as eu-central-1",
    "target_cluster_id": "required; " + CLUSTER_ID_RULE,
    "strategy": "swap (default) or delete-first",
    "kms_key_id": "KMS key id, ARN or alias in the target region",
    "instance_class": "db.<family>.<size> or db.serverless",
    "reader_count": "0-15 readers besides the writer (default: as many as the old target has)",
    "engine_version": "aurora-postgresql engine version, e.g. 15.4",
    "db_subnet_group": "DB subnet group name: " + SUBNET_GROUP_RULE,
    "vpc_security_group_ids": "list of security group ids (sg-...)",
    "db_cluster_parameter_group": "DB cluster parameter group name: " + PARAMETER_GROUP_RULE,
    "port": "1150-65535",
    "db_parameter_group": "DB parameter group name of the instances: " + PARAMETER_GROUP_RULE,
    "publicly_accessible": "true or false (default false: the instances get no public address)",
    "iam_database_auth": "true or false",
    "serverless_min_capacity": "0-256 ACUs",
    "serverless_max_capacity": "1-256 ACUs",
    "database": f"database to connect to for user setup: 1-{PG_NAME_MAX_BYTES} bytes, no NUL",
    "master_password_storage": "rds-managed (default) or stack-secret",
    "users": "users spec (see README)",
    "retention": '{"keep_copies": 1-100}',
    "tags": "map of tag key to value",
    "skip_final_snapshot": "true or false",
    "allow_disable_deletion_protection": "true or false",
    "checks": "list of checks the restored copy must pass before it replaces the target (docs/checks.md)",
    "keep_failed_restore": "true or false (default false: a restore that fails its checks is removed)",
    "source_account": "12-digit account id owning the snapshot, when another account (needs its role in "
    "the stack's SourceAccountRoleArns); implied by a snapshot ARN of that account",
}


def unwrap(raw: Any) -> dict[str, Any]:
    """Return the request fields from the wrapped ``{"body": ...}`` shape or an unwrapped one."""
    if isinstance(raw, (str, bytes)):
        raw = _json_object(raw, "request")
    if not isinstance(raw, Mapping):
        raise ValidationError("request", raw, "must be a JSON object")
    if "body" in raw:
        extra = sorted((k for k in raw if k not in {"body", "step", "execution_id"}), key=str)
        if extra:
            raise ValidationError(
                _field_name(extra[0]),
                raw[extra[0]],
                "is not allowed beside 'body'; put every field in body",
                show_value=False,
            )
        body = raw["body"]
        if isinstance(body, (str, bytes)):
            body = _json_object(body, "body")
        if not isinstance(body, Mapping):
            raise ValidationError("body", body, "must be a JSON object holding the request fields")
        return dict(body)
    return {k: v for k, v in raw.items() if k not in {"step", "execution_id"}}


def peek_operation_id(raw: Any, execution_id: str | None = None) -> str:
    """Best-effort operation id of a raw input, for logging and records, never raising."""
    try:
        fields = unwrap(raw)
    except ValidationError:
        fields = {}
    candidate = fields.get("operation_id")
    if isinstance(candidate, str) and _OPERATION_ID.fullmatch(candidate):
        return candidate
    return derive_operation_id(execution_id)


def parse_request(raw: Any, *, execution_id: str | None = None) -> RestoreRequest:
    """Validate ``raw`` and return the request; raise ``ValidationError`` on the first problem."""
    check_input_size(raw)
    fields = unwrap(raw)
    unknown = sorted((k for k in fields if k not in FIELDS), key=str)
    if unknown:
        # An unknown field's value is not shown: nothing says what it holds (a password, maybe).
        raise ValidationError(
            _field_name(unknown[0]),
            fields[unknown[0]],
            "is not a known field; known fields: " + ", ".join(FIELDS),
            show_value=False,
        )

    operation_id = fields.get("operation_id")
    if operation_id is None:
        operation_id = derive_operation_id(execution_id)
    elif not isinstance(operation_id, str) or not _OPERATION_ID.fullmatch(operation_id):
        raise ValidationError("operation_id", operation_id, "must be " + OPERATION_ID_RULE)

    snapshot_id = _required_text(fields, "snapshot_id")
    snapshot = parse_snapshot_ref(snapshot_id)
    source_region = _region(fields, "source_region")
    target_region = _region(fields, "target_region")
    if snapshot.kind == "arn" and snapshot.region != source_region:
        raise ValidationError(
            "snapshot_id",
            snapshot_id,
            f"is an ARN in {snapshot.region}, but source_region is {source_region}; they must agree",
        )
    target_cluster_id = _required_text(fields, "target_cluster_id")
    if not _CLUSTER_ID.fullmatch(target_cluster_id):
        raise ValidationError("target_cluster_id", target_cluster_id, "must be " + CLUSTER_ID_RULE)
    if snapshot.kind in CLUSTER_KINDS:
        check_same_place(
            snapshot_id,
            snapshot.cluster_id,
            source_region=source_region,
            target_region=target_region,
            target_cluster_id=target_cluster_id,
        )
    if (
        snapshot.kind == "latest"
        and snapshot.cluster_id.lower() == target_cluster_id.lower()
        and source_region == target_region
    ):
        raise ValidationError(
            "target_cluster_id",
            target_cluster_id,
            "is the source cluster in the same region; the target can never be the source",
        )

    strategy = _choice(fields, "strategy", STRATEGIES, "swap")
    kms_key_id = _optional_match(fields, "kms_key_id", _KMS_KEY, "must be a KMS key id, ARN or alias/...")
    if kms_key_id and kms_key_id.startswith("arn:"):
        key_region = kms_key_id.split(":")[3]
        if key_region != target_region:
            raise ValidationError(
                "kms_key_id",
                kms_key_id,
                f"is a key in {key_region}; it must be a key in the target region {target_region}",
            )
    instance_class = _optional_match(
        fields, "instance_class", _INSTANCE_CLASS, "must look like db.r6g.large or be db.serverless"
    )
    reader_count = None if fields.get("reader_count") is None else _integer(fields, "reader_count", 0, 0, 15)
    engine_version = _optional_match(
        fields, "engine_version", _ENGINE_VERSION, "must be a version such as 15.4"
    )
    subnet_group = _optional_match(
        fields, "db_subnet_group", _SUBNET_GROUP, "must be a DB subnet group name of " + SUBNET_GROUP_RULE
    )
    if subnet_group is not None and subnet_group.lower() == "default":
        raise ValidationError("db_subnet_group", subnet_group, "must be " + SUBNET_GROUP_RULE)
    parameter_group = _optional_match(
        fields,
        "db_cluster_parameter_group",
        _PARAMETER_GROUP,
        "must be a DB cluster parameter group name of " + PARAMETER_GROUP_RULE,
    )
    instance_parameter_group = _optional_match(
        fields,
        "db_parameter_group",
        _PARAMETER_GROUP,
        "must be a DB parameter group name of " + PARAMETER_GROUP_RULE,
    )
    publicly_accessible = _boolean(fields, "publicly_accessible", False)
    security_groups = _security_groups(fields.get("vpc_security_group_ids", []))
    port = fields.get("port")
    if port is not None:
        port = _integer(fields, "port", 5432, 1150, 65535)
    iam_auth = _boolean(fields, "iam_database_auth", False)
    min_acu = _number(fields, "serverless_min_capacity", 0.5, 0, 256)
    max_acu = _number(fields, "serverless_max_capacity", 8.0, 1, 256)
    if max_acu < min_acu:
        raise ValidationError(
            "serverless_max_capacity", max_acu, f"must be at least serverless_min_capacity ({min_acu})"
        )
    database = fields.get("database", "postgres")
    if (
        not isinstance(database, str)
        or not database
        or "\x00" in database
        or len(database.encode()) > PG_NAME_MAX_BYTES
    ):
        raise ValidationError(
            "database",
            database,
            f"must be a database name of 1-{PG_NAME_MAX_BYTES} bytes (UTF-8) with no NUL character",
        )
    storage = _choice(fields, "master_password_storage", MASTER_PASSWORD_STORAGE, "rds-managed")
    users = fields.get("users")
    if users is not None:
        from refresh.users_spec import validate_users_spec

        users = validate_users_spec(users)
    retention = _retention(fields.get("retention", {"keep_copies": 3}))
    tags = _tags(fields.get("tags", {}))
    skip_final = _boolean(fields, "skip_final_snapshot", False)
    allow_unprotect = _boolean(fields, "allow_disable_deletion_protection", False)
    checks, keep_failed_restore = _gate(fields, database)

    request = RestoreRequest(
        operation_id=operation_id,
        snapshot_id=snapshot_id,
        source_region=source_region,
        target_region=target_region,
        target_cluster_id=target_cluster_id,
        strategy=strategy,
        kms_key_id=kms_key_id,
        instance_class=instance_class,
        reader_count=reader_count,
        engine_version=engine_version,
        db_subnet_group=subnet_group,
        vpc_security_group_ids=security_groups,
        db_cluster_parameter_group=parameter_group,
        port=port,
        db_parameter_group=instance_parameter_group,
        publicly_accessible=publicly_accessible,
        iam_database_auth=iam_auth,
        serverless_min_capacity=min_acu,
        serverless_max_capacity=max_acu,
        database=database,
        master_password_storage=storage,
        users=users,
        retention=retention,
        tags=tags,
        skip_final_snapshot=skip_final,
        allow_disable_deletion_protection=allow_unprotect,
        checks=checks,
        keep_failed_restore=keep_failed_restore,
        source_account=_source_account(fields, snapshot),
    )
    # Normalizing can grow a request ("ALL" privileges spelled out, defaults filled in).
    size = json_size(request.to_dict())
    if size > MAX_REQUEST_BYTES:
        raise ValidationError(
            "request",
            f"{size} bytes once validated",
            f"must be at most {MAX_REQUEST_BYTES} bytes of JSON once validated (privileges spelled out, "
            "defaults filled in); put large SQL scripts in S3 (users.scripts[].s3_uri)",
        )
    return request


def _source_account(fields: Mapping[str, Any], snapshot: SnapshotRef) -> str | None:
    """``source_account``: 12 digits, agreeing with the account of a snapshot ARN."""
    value = fields.get("source_account")
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"\d{12}", value):
        raise ValidationError("source_account", value, "must be a 12-digit AWS account id")
    if snapshot.kind == "arn" and snapshot.account != value:
        raise ValidationError(
            "source_account",
            value,
            f"differs from the account of snapshot_id ({snapshot.account}); they must agree",
        )
    return value


def parse_snapshot_ref(value: str) -> SnapshotRef:
    """Parse an identifier, a cluster-snapshot ARN, ``latest:<cluster-id>``, or a live cluster.

    ``clone:<cluster-id>`` and ``pitr:<cluster-id>@<time>`` are parsed by ``refresh.sources``.
    """
    allowed = f"must be {FORMS}; a snapshot identifier is {SNAPSHOT_ID_RULE}"
    if is_cluster_source(value):
        kind, cluster_id, restore_to = parse_cluster_source(value)
        return SnapshotRef(kind, value, cluster_id=cluster_id, restore_to=restore_to)
    if value.startswith("latest:"):
        cluster_id = value[len("latest:") :]
        if not _CLUSTER_ID.fullmatch(cluster_id):
            raise ValidationError(
                "snapshot_id", value, "latest:<cluster-id> needs a cluster id of " + CLUSTER_ID_RULE
            )
        return SnapshotRef("latest", value, cluster_id=cluster_id)
    if value.startswith("arn:"):
        match = _SNAPSHOT_ARN.fullmatch(value)
        if not match:
            raise ValidationError("snapshot_id", value, allowed)
        return SnapshotRef("arn", value, region=match["region"], account=match["account"])
    if not _SNAPSHOT_ID.fullmatch(value):
        raise ValidationError("snapshot_id", value, allowed)
    return SnapshotRef("identifier", value)


def _field_name(key: Any) -> str:
    """A field name fit for an error message, even when the key is empty, not a string or secret."""
    from dispatcher.logs import looks_like_secret

    if looks_like_secret(key):
        return "(a field whose name may be a secret)"
    return key if isinstance(key, str) and key.strip() else repr(key)


def _json_object(raw: str | bytes, name: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(name, raw, "must be a JSON object") from None


def _required_text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None or value == "":
        raise ValidationError(name, value, "is required: " + FIELDS[name].removeprefix("required; "))
    if not isinstance(value, str):
        raise ValidationError(name, value, "must be a string: " + FIELDS[name].removeprefix("required; "))
    return value


def _region(fields: Mapping[str, Any], name: str) -> str:
    value = _required_text(fields, name)
    if not _REGION.fullmatch(value):
        raise ValidationError(name, value, "must be an AWS region name such as eu-west-1 or us-east-1")
    return value


def _choice(fields: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = fields.get(name, default)
    if value not in allowed:
        raise ValidationError(name, value, "must be one of " + ", ".join(allowed))
    return str(value)


def _optional_match(fields: Mapping[str, Any], name: str, pattern: re.Pattern[str], rule: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValidationError(name, value, rule)
    return value


def _integer(fields: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = fields.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(name, value, f"must be a whole number from {low} to {high}")
    return value


def _number(fields: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = fields.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValidationError(name, value, f"must be a number from {low:g} to {high:g}")
    if value * 2 != int(value * 2):
        raise ValidationError(name, value, "must be a multiple of 0.5 ACU")
    return float(value)


def _boolean(fields: Mapping[str, Any], name: str, default: bool) -> bool:
    value = fields.get(name, default)
    if not isinstance(value, bool):
        raise ValidationError(name, value, "must be true or false (a JSON boolean)")
    return value


def _security_groups(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > 5:
        raise ValidationError("vpc_security_group_ids", value, "must be a list of at most 5 sg-... ids")
    for item in value:
        if not isinstance(item, str) or not _SECURITY_GROUP.fullmatch(item):
            raise ValidationError("vpc_security_group_ids", item, "each must be a security group id sg-...")
    return tuple(value)


def _retention(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise ValidationError("retention", value, 'must be an object such as {"keep_copies": 3}')
    unknown = sorted((k for k in value if k != "keep_copies"), key=str)
    if unknown:
        raise ValidationError(f"retention.{unknown[0]}", value[unknown[0]], "is not known; only keep_copies")
    keep = value.get("keep_copies", 3)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= 100:
        raise ValidationError("retention.keep_copies", keep, "must be a whole number from 1 to 100")
    return {"keep_copies": keep}


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or len(value) > 40:
        raise ValidationError("tags", value, "must be an object of at most 40 tag key/value strings")
    for key, tag_value in value.items():
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
            raise ValidationError("tags", key, "tag keys are 1-128 letters, digits, spaces and _.:/=+-@")
        if key.lower().startswith(RESERVED_TAG_PREFIXES):
            raise ValidationError(
                f"tags.{key}", tag_value, "keys starting with aws: or aurora-restore: are reserved"
            )
        if not isinstance(tag_value, str) or len(tag_value) > 256:
            raise ValidationError(
                f"tags.{key}", tag_value, "tag values are strings of at most 256 characters"
            )
    return dict(value)


def _gate(fields: Mapping[str, Any], database: str) -> tuple[tuple[dict[str, Any], ...], bool]:
    """The validation gate's fields: the checks (each in ``database`` unless it names another)."""
    from refresh.checks import validate_checks

    checks = tuple(validate_checks(fields.get("checks"), default_database=database))
    return checks, _boolean(fields, "keep_failed_restore", False)


def request_of(ctx: StepContext) -> RestoreRequest:
    """The step's validated request, typed: the framework carries it untyped, the domain knows it."""
    request: RestoreRequest = ctx.require_request()
    return request
