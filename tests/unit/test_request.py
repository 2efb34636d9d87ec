"""The request model: the seed's input is accepted as is; every bad input is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.errors import ValidationError
from refresh.request import RestoreRequest, derive_operation_id, parse_request

GOOD = {
    "operation_id": "op-test002",
    "snapshot_id": "rds:my-source-snapshot",
    "source_region": "us-east-1",
    "target_region": "us-west-2",
    "target_cluster_id": "new-cluster-id",
}


def test_seed_input_is_accepted_exactly(seed_input: dict[str, Any]) -> None:
    request = parse_request(seed_input)
    assert request.operation_id == "op-test002"
    assert request.snapshot_id == "rds:my-source-snapshot"
    assert request.target_cluster_id == "new-cluster-id"
    assert request.strategy == "swap"
    assert request.retention == {"keep_copies": 3}
    assert request.cross_region


def test_unwrapped_and_json_string_bodies_match_the_wrapped_form(seed_input: dict[str, Any]) -> None:
    import json

    wrapped = parse_request(seed_input)
    assert parse_request(seed_input["body"]) == wrapped
    assert parse_request({"body": json.dumps(seed_input["body"])}) == wrapped


def test_operation_id_is_generated_stably_per_execution() -> None:
    fields = {k: v for k, v in GOOD.items() if k != "operation_id"}
    first = parse_request(fields, execution_id="arn:aws:states:us-east-1:1:execution:sm:abc")
    again = parse_request(fields, execution_id="arn:aws:states:us-east-1:1:execution:sm:abc")
    assert first.operation_id == again.operation_id
    assert first.operation_id.startswith("op-")
    assert parse_request(fields).operation_id != parse_request(fields).operation_id
    assert derive_operation_id(None).startswith("op-")


def test_snapshot_forms() -> None:
    arn = "arn:aws:rds:us-east-1:123456789012:cluster-snapshot:rds:orders-2026-11-20-02-00"
    assert parse_request({**GOOD, "snapshot_id": arn}).snapshot.kind == "arn"
    latest = parse_request({**GOOD, "snapshot_id": "latest:orders"}).snapshot
    assert (latest.kind, latest.cluster_id) == ("latest", "orders")
    assert parse_request({**GOOD, "snapshot_id": "manual-snap-1"}).snapshot.kind == "identifier"


def test_placement_left_out_is_inherited_and_instances_are_private() -> None:
    # Nothing said about placement: None (the old target's, else the stack's), never public.
    request = RestoreRequest.from_event(GOOD)
    assert (request.reader_count, request.db_parameter_group, request.publicly_accessible) == (None, None, False)
    # Said explicitly, even as zero readers, it is kept.
    explicit = RestoreRequest.from_event({**GOOD, "reader_count": 0, "publicly_accessible": True})
    assert (explicit.reader_count, explicit.publicly_accessible) == (0, True)


def test_to_dict_round_trips() -> None:
    request = parse_request(
        {**GOOD, "tags": {"team": "orders"}, "vpc_security_group_ids": ["sg-0123456789abcdef0"]}
    )
    assert RestoreRequest.from_event(request.to_dict()) == request


BAD: list[tuple[str, dict[str, Any] | Any, str, list[str]]] = [
    ("not an object", ["x"], "request", ["JSON object"]),
    ("body not an object", {"body": 42}, "body", ["JSON object"]),
    ("body is broken JSON", {"body": "{not json"}, "body", ["JSON object"]),
    ("field beside body", {"body": GOOD, "extra": 1}, "extra", ["beside 'body'"]),
    (
        "unknown field",
        {**GOOD, "target_cluster": "x"},
        "target_cluster",
        ["not a known field", "target_cluster_id"],
    ),
    ("missing snapshot", {k: v for k, v in GOOD.items() if k != "snapshot_id"}, "snapshot_id", ["required"]),
    (
        "missing target",
        {k: v for k, v in GOOD.items() if k != "target_cluster_id"},
        "target_cluster_id",
        ["required"],
    ),
    (
        "missing source region",
        {k: v for k, v in GOOD.items() if k != "source_region"},
        "source_region",
        ["required"],
    ),
    ("empty target region", {**GOOD, "target_region": ""}, "target_region", ["required"]),
    ("region not AWS form", {**GOOD, "source_region": "europe"}, "source_region", ["region name"]),
    ("region with capitals", {**GOOD, "target_region": "EU-WEST-1"}, "target_region", ["region name"]),
    (
        "cluster id starts with digit",
        {**GOOD, "target_cluster_id": "1orders"},
        "target_cluster_id",
        ["starting with a letter"],
    ),
    (
        "cluster id trailing hyphen",
        {**GOOD, "target_cluster_id": "orders-"},
        "target_cluster_id",
        ["trailing hyphen"],
    ),
    ("cluster id double hyphen", {**GOOD, "target_cluster_id": "orders--dev"}, "target_cluster_id", ["'--'"]),
    ("cluster id too long", {**GOOD, "target_cluster_id": "a" * 64}, "target_cluster_id", ["1-63"]),
    (
        "cluster id underscore",
        {**GOOD, "target_cluster_id": "orders_dev"},
        "target_cluster_id",
        ["letters, digits or hyphens"],
    ),
    ("cluster id not a string", {**GOOD, "target_cluster_id": 7}, "target_cluster_id", ["string"]),
    (
        "snapshot id with space",
        {**GOOD, "snapshot_id": "my snap"},
        "snapshot_id",
        ["latest:<source-cluster-id>"],
    ),
    (
        "snapshot ARN of an instance snapshot",
        {**GOOD, "snapshot_id": "arn:aws:rds:us-east-1:123456789012:snapshot:x"},
        "snapshot_id",
        ["cluster-snapshot"],
    ),
    (
        "snapshot ARN in another region",
        {**GOOD, "snapshot_id": "arn:aws:rds:eu-west-1:123456789012:cluster-snapshot:x"},
        "snapshot_id",
        ["eu-west-1", "source_region"],
    ),
    ("latest without cluster", {**GOOD, "snapshot_id": "latest:"}, "snapshot_id", ["latest:<cluster-id>"]),
    (
        "target is the source",
        {**GOOD, "snapshot_id": "latest:orders", "target_cluster_id": "orders", "target_region": "us-east-1"},
        "target_cluster_id",
        ["source cluster"],
    ),
    ("operation id with slash", {**GOOD, "operation_id": "op/1"}, "operation_id", ["1-64 letters"]),
    ("operation id too long", {**GOOD, "operation_id": "o" * 65}, "operation_id", ["1-64"]),
    ("strategy unknown", {**GOOD, "strategy": "in-place"}, "strategy", ["swap", "delete-first"]),
    ("reader count negative", {**GOOD, "reader_count": -1}, "reader_count", ["0 to 15"]),
    ("reader count not a number", {**GOOD, "reader_count": "2"}, "reader_count", ["whole number"]),
    ("reader count boolean", {**GOOD, "reader_count": True}, "reader_count", ["whole number"]),
    ("instance parameter group bad", {**GOOD, "db_parameter_group": "pg--dev"}, "db_parameter_group", ["1-255 letters"]),
    ("publicly accessible as text", {**GOOD, "publicly_accessible": "false"}, "publicly_accessible", ["true or false"]),
    ("instance class bad", {**GOOD, "instance_class": "r6g.large"}, "instance_class", ["db.serverless"]),
    (
        "kms key in another region",
        {**GOOD, "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/abc"},
        "kms_key_id",
        ["target region", "us-west-2"],
    ),
    ("kms key nonsense", {**GOOD, "kms_key_id": "my key"}, "kms_key_id", ["KMS key"]),
    (
        "security group bad",
        {**GOOD, "vpc_security_group_ids": ["default"]},
        "vpc_security_group_ids",
        ["sg-"],
    ),
    (
        "security groups not a list",
        {**GOOD, "vpc_security_group_ids": "sg-0123456789abcdef0"},
        "vpc_security_group_ids",
        ["list"],
    ),
    ("port out of range", {**GOOD, "port": 80}, "port", ["1150 to 65535"]),
    ("boolean as string", {**GOOD, "skip_final_snapshot": "yes"}, "skip_final_snapshot", ["true or false"]),
    ("retention zero", {**GOOD, "retention": {"keep_copies": 0}}, "retention.keep_copies", ["1 to 100"]),
    ("retention unknown key", {**GOOD, "retention": {"days": 3}}, "retention.days", ["keep_copies"]),
    (
        "reserved tag",
        {**GOOD, "tags": {"aurora-restore:managed": "true"}},
        "tags.aurora-restore:managed",
        ["reserved"],
    ),
    ("tag value not a string", {**GOOD, "tags": {"team": 5}}, "tags.team", ["strings"]),
    (
        "serverless max below min",
        {**GOOD, "serverless_min_capacity": 4, "serverless_max_capacity": 2},
        "serverless_max_capacity",
        ["at least"],
    ),
    (
        "serverless capacity off grid",
        {**GOOD, "serverless_min_capacity": 0.3},
        "serverless_min_capacity",
        ["0.5"],
    ),
    (
        "password storage unknown",
        {**GOOD, "master_password_storage": "plain"},
        "master_password_storage",
        ["rds-managed", "stack-secret"],
    ),
    ("users not an object", {**GOOD, "users": ["app"]}, "users", ["object"]),
    ("users unknown section", {**GOOD, "users": {"people": []}}, "users.people", ["not known"]),
    ("engine version bad", {**GOOD, "engine_version": "fifteen"}, "engine_version", ["15.4"]),
]


@pytest.mark.parametrize(("case", "raw", "field", "words"), BAD, ids=[c[0] for c in BAD])
def test_bad_request_is_refused_by_field(case: str, raw: Any, field: str, words: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_request(raw)
    error = caught.value
    assert error.field == field, case
    message = str(error)
    assert message.startswith(field + ":")
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"


def test_bad_request_table_is_large_and_distinct() -> None:
    assert len({c[0] for c in BAD}) >= 25
    assert len(BAD) == len({c[0] for c in BAD})


# -- AWS's own rules: what RDS, PostgreSQL and Step Functions would refuse is refused first -------
_ROLE = {"name": "app", "login": True}
#: (case, request, field named, words in the message). A trailing newline passed every pattern
#: that ended in ``$``: each field matched by a pattern is tried with one.
AWS_RULES: list[tuple[str, dict[str, Any], str, list[str]]] = [
    *[
        (f"{name} with a trailing newline", {**GOOD, name: value + "\n"}, name, ["not valid"])
        for name, value in {
            "operation_id": "op-test002",
            "snapshot_id": "rds:my-source-snapshot",
            "source_region": "us-east-1",
            "target_region": "us-west-2",
            "target_cluster_id": "dev-main",
            "kms_key_id": "alias/aurora",
            "instance_class": "db.r6g.large",
            "engine_version": "15.4",
            "db_subnet_group": "private",
            "db_cluster_parameter_group": "pg15-custom",
        }.items()
    ],
    (
        "snapshot ARN with a trailing newline",
        {**GOOD, "snapshot_id": "arn:aws:rds:us-east-1:123456789012:cluster-snapshot:s1\n"},
        "snapshot_id",
        ["cluster-snapshot"],
    ),
    (
        "latest with a trailing newline",
        {**GOOD, "snapshot_id": "latest:orders\n"},
        "snapshot_id",
        ["latest:"],
    ),
    (
        "security group with a trailing newline",
        {**GOOD, "vpc_security_group_ids": ["sg-0123456789abcdef0\n"]},
        "vpc_security_group_ids",
        ["sg-"],
    ),
    ("tag key with a trailing newline", {**GOOD, "tags": {"team\n": "x"}}, "tags", ["tag keys"]),
    (
        "secret ARN with a trailing newline",
        {
            **GOOD,
            "users": {
                "roles": [
                    {
                        **_ROLE,
                        "password_secret_arn": "arn:aws:secretsmanager:us-west-2:123456789012:secret:app-AbCdEf\n",
                    }
                ]
            },
        },
        "users.roles[0].password_secret_arn",
        ["Secrets Manager"],
    ),
    (
        "secret name with a trailing newline",
        {**GOOD, "users": {"roles": [{**_ROLE, "password_secret_arn": "app/pw\n"}]}},
        "users.roles[0].password_secret_arn",
        ["Secrets Manager"],
    ),
    (
        "script name with a trailing newline",
        {**GOOD, "users": {"scripts": [{"name": "grants\n", "sql": "select 1"}]}},
        "users.scripts[0].name",
        ["1-100"],
    ),
    (
        "S3 URI with a trailing newline",
        {**GOOD, "users": {"scripts": [{"name": "s", "s3_uri": "s3://bucket/key.sql\n"}]}},
        "users.scripts[0].s3_uri",
        ["s3://"],
    ),
    (
        "reserved role with a trailing newline",
        {**GOOD, "users": {"roles": [{"name": "rdsadmin\n"}]}},
        "users.roles[0].name",
        ["control character"],
    ),
    ("snapshot id of 256 characters", {**GOOD, "snapshot_id": "s" * 256}, "snapshot_id", ["1-255"]),
    ("snapshot id with a double hyphen", {**GOOD, "snapshot_id": "snap--1"}, "snapshot_id", ["'--'"]),
    ("snapshot id ending in a hyphen", {**GOOD, "snapshot_id": "snap-"}, "snapshot_id", ["trailing hyphen"]),
    (
        "parameter group with an underscore",
        {**GOOD, "db_cluster_parameter_group": "pg_15"},
        "db_cluster_parameter_group",
        ["letters, digits or hyphens"],
    ),
    (
        "parameter group with a double hyphen",
        {**GOOD, "db_cluster_parameter_group": "pg--15"},
        "db_cluster_parameter_group",
        ["'--'"],
    ),
    (
        "parameter group ending in a hyphen",
        {**GOOD, "db_cluster_parameter_group": "pg15-"},
        "db_cluster_parameter_group",
        ["trailing hyphen"],
    ),
    (
        "parameter group of 256 characters",
        {**GOOD, "db_cluster_parameter_group": "p" * 256},
        "db_cluster_parameter_group",
        ["1-255"],
    ),
    (
        "subnet group named default",
        {**GOOD, "db_subnet_group": "default"},
        "db_subnet_group",
        ["not 'default'"],
    ),
    (
        "subnet group starting with a digit",
        {**GOOD, "db_subnet_group": "1private"},
        "db_subnet_group",
        ["letter"],
    ),
    (
        "subnet group with a slash",
        {**GOOD, "db_subnet_group": "a/b"},
        "db_subnet_group",
        ["periods, underscores, spaces"],
    ),
    ("database of 64 bytes", {**GOOD, "database": "d" * 64}, "database", ["1-63 bytes"]),
    ("database of 32 two-byte characters", {**GOOD, "database": "é" * 32}, "database", ["1-63 bytes"]),
    ("database with NUL", {**GOOD, "database": "app\x00"}, "database", ["NUL"]),
    (
        "role of 64 bytes",
        {**GOOD, "users": {"roles": [{"name": "r" * 64}]}},
        "users.roles[0].name",
        ["63 bytes"],
    ),
    ("role with NUL", {**GOOD, "users": {"roles": [{"name": "app\x00"}]}}, "users.roles[0].name", ["NUL"]),
    ("operation id with a space", {**GOOD, "operation_id": "op 1"}, "operation_id", ["1-64 letters"]),
    (
        "cluster id with a lone surrogate",
        {**GOOD, "target_cluster_id": "x\ud800"},
        "target_cluster_id",
        ["1-63"],
    ),
    ("operation id with a colon", {**GOOD, "operation_id": "op:1"}, "operation_id", ["execution name"]),
    ("operation id with a bracket", {**GOOD, "operation_id": "op[1]"}, "operation_id", ["1-64"]),
]


@pytest.mark.parametrize(("case", "raw", "field", "words"), AWS_RULES, ids=[c[0] for c in AWS_RULES])
def test_what_aws_would_refuse_is_refused_first(
    case: str, raw: dict[str, Any], field: str, words: list[str]
) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_request(raw)
    assert caught.value.field == field, case
    message = str(caught.value)
    assert message.startswith(field + ":")
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"


def test_names_at_the_limits_of_the_rules_are_accepted() -> None:
    request = parse_request(
        {
            **GOOD,
            "operation_id": "o" * 64,
            "snapshot_id": "rds:" + "s" * 255,
            "target_cluster_id": "a" + "-b" * 31,
            "db_cluster_parameter_group": "p" * 255,
            "db_subnet_group": "my subnet_group.1",
            "database": "é" * 31 + "x",
        }
    )
    assert len(request.target_cluster_id) == 63
    assert len(request.database.encode()) == 63


PASSWORD = "Tr0ub4dor&3-Horse"
#: A secret in the wrong place: the error names the field and the rule, never the value.
SECRET_LEAKS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown field pwd", {**GOOD, "pwd": PASSWORD}, "pwd"),
    ("unknown field with a plain name", {**GOOD, "note": PASSWORD}, "note"),
    ("unknown field beside body", {"body": GOOD, "pwd": PASSWORD}, "pwd"),
    (
        "password pasted into password_secret_arn",
        {**GOOD, "users": {"roles": [{**_ROLE, "password_secret_arn": PASSWORD}]}},
        "users.roles[0].password_secret_arn",
    ),
    ("password pasted into a plain field", {**GOOD, "target_cluster_id": PASSWORD}, "target_cluster_id"),
    ("password pasted into a tag", {**GOOD, "tags": {"owner": PASSWORD * 20}}, "tags.owner"),
    (
        "password field in a role",
        {**GOOD, "users": {"roles": [{**_ROLE, "pwd": PASSWORD}]}},
        "users.roles[0].pwd",
    ),
    (
        "unknown field in a role",
        {**GOOD, "users": {"roles": [{**_ROLE, "pw": PASSWORD}]}},
        "users.roles[0].pw",
    ),
    ("URL with credentials", {**GOOD, "snapshot_id": f"postgresql://app:{PASSWORD}@db/x"}, "snapshot_id"),
]


@pytest.mark.parametrize(("case", "raw", "field"), SECRET_LEAKS, ids=[c[0] for c in SECRET_LEAKS])
def test_a_secret_in_the_wrong_place_is_never_echoed(case: str, raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_request(raw)
    error = caught.value
    assert error.field == field, case
    for text in (str(error), repr(error.to_dict()), error.allowed):
        assert PASSWORD not in text, case
        assert PASSWORD[:8] not in text, case
    assert str(error).startswith(field + ":")


# -- another account's snapshot ------------------------------------------------------------------
def test_source_account_is_optional_and_checked(seed_input: dict[str, Any]) -> None:
    body = dict(seed_input["body"]) if "body" in seed_input else dict(seed_input)
    assert parse_request({"body": body}).source_account is None
    assert (
        parse_request({"body": {**body, "source_account": "111111111111"}}).source_account == "111111111111"
    )
    with pytest.raises(ValidationError, match=r"source_account: '1111' is not valid; must be a 12-digit"):
        parse_request({"body": {**body, "source_account": "1111"}})


def test_source_account_must_agree_with_a_snapshot_arn(seed_input: dict[str, Any]) -> None:
    body = dict(seed_input["body"]) if "body" in seed_input else dict(seed_input)
    arn = f"arn:aws:rds:{body['source_region']}:222222222222:cluster-snapshot:orders-manual"
    with pytest.raises(ValidationError, match="differs from the account of snapshot_id"):
        parse_request({"body": {**body, "snapshot_id": arn, "source_account": "111111111111"}})
    assert parse_request({"body": {**body, "snapshot_id": arn, "source_account": "222222222222"}})


def test_source_account_settings_are_read_as_lists() -> None:
    from dispatcher.settings import Settings

    settings = Settings.from_env(
        {
            "AURORA_RESTORE_SOURCE_ACCOUNT_ROLE_ARNS": "arn:aws:iam::111111111111:role/a, ,arn:aws:iam::222222222222:role/b",
            "AURORA_RESTORE_SOURCE_KMS_KEY_ARNS": "",
            "AURORA_RESTORE_SOURCE_ACCOUNT_EXTERNAL_ID": "x" * 20,
        }
    )
    assert settings.source_account_role_arns == (
        "arn:aws:iam::111111111111:role/a",
        "arn:aws:iam::222222222222:role/b",
    )
    assert settings.source_kms_key_arns == ()

    from refresh.source_accounts import role_for, shareable_key_for

    assert role_for(settings, "222222222222") == "arn:aws:iam::222222222222:role/b"
    assert role_for(settings, "333333333333") is None
    assert shareable_key_for(settings, "111111111111", "eu-west-1") is None
