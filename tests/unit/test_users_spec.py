"""The users spec is checked with the request: every bad spec is refused, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.errors import ValidationError
from refresh.request import parse_request
from refresh.users_spec import check_secret_prefix, validate_users_spec

ARN = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:aurora-restore/app_rw-AbCdEf"

GOOD: dict[str, Any] = {
    "roles": [
        {"name": "app_rw", "login": True, "password_secret_arn": ARN, "connection_limit": 20},
        {"name": "reporting", "login": False, "valid_until": "2031-01-01T00:00:00+01:00"},
    ],
    "grants": [
        {"type": "database", "database": "orders", "privileges": ["connect"], "to": ["app_rw"]},
        {"type": "schema", "schema": "sales", "privileges": ["USAGE"], "to": "reporting"},
        {"type": "tables", "schema": "sales", "privileges": ["ALL"], "to": ["app_rw"]},
        {"type": "sequences", "schema": "sales", "privileges": ["USAGE", "SELECT"], "to": ["app_rw"]},
        {
            "type": "default_privileges",
            "schema": "sales",
            "object_type": "tables",
            "for_role": "app_owner",
            "privileges": ["SELECT"],
            "to": ["reporting"],
        },
        {"type": "membership", "role": "reporting", "to": ["app_rw"]},
    ],
    "disable": ["legacy_batch", {"name": "old_admin"}],
    "drop": [{"name": "etl", "reassign_to": "app_owner"}, "temp_user"],
    "scripts": [
        {"name": "mask-emails", "sql": "UPDATE customers SET email = md5(email);"},
        {"name": "scrub", "s3_uri": "s3://masking-scripts/scrub.sql"},
    ],
}


def test_a_good_spec_is_normalized() -> None:
    spec = validate_users_spec(GOOD)
    assert spec["roles"][1]["valid_until"] == "2030-12-31T23:00:00Z"
    assert spec["grants"][0]["privileges"] == ["CONNECT"]
    assert spec["grants"][1]["to"] == ["reporting"]
    assert spec["grants"][2]["privileges"] == [
        "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"
    ]  # fmt: skip
    assert spec["disable"] == [{"name": "legacy_batch"}, {"name": "old_admin"}]
    assert spec["drop"][1] == {"name": "temp_user"}


def test_validating_the_normalized_spec_again_changes_nothing() -> None:
    once = validate_users_spec(GOOD)
    assert validate_users_spec(once) == once


def test_the_request_carries_the_normalized_spec() -> None:
    request = parse_request(
        {
            "snapshot_id": "snap-1",
            "source_region": "eu-west-1",
            "target_region": "eu-central-1",
            "target_cluster_id": "orders-dev",
            "users": GOOD,
        }
    )
    assert request.to_dict()["users"]["disable"] == [{"name": "legacy_batch"}, {"name": "old_admin"}]


def with_role(**fields: Any) -> dict[str, Any]:
    return {"roles": [{"name": "app_rw", "login": True, **fields}]}


BAD: list[tuple[str, Any, str, str]] = [
    ("not an object", ["app"], "users", "must be an object"),
    ("unknown section", {"people": []}, "users.people", "is not known"),
    ("section not a list", {"roles": {"name": "x"}}, "users.roles", "must be a list"),
    ("plain password", with_role(password="hunter2"), "users.roles[0].password", "plain passwords are never accepted"),
    ("plain password any case", with_role(Password="x"), "users.roles[0].Password", "Secrets Manager"),
    ("unknown role field", with_role(superuser=True), "users.roles[0].superuser", "is not known"),
    ("name missing", {"roles": [{"login": True}]}, "users.roles[0].name", "must be a role name"),
    ("name too long", {"roles": [{"name": "r" * 64}]}, "users.roles[0].name", "at most 63 bytes"),
    ("name multibyte too long", {"roles": [{"name": "é" * 32}]}, "users.roles[0].name", "at most 63 bytes"),
    ("name with NUL", {"roles": [{"name": "a\x00b"}]}, "users.roles[0].name", "NUL"),
    ("reserved pg_", {"roles": [{"name": "pg_monitor"}]}, "users.roles[0].name", "reserved"),
    ("reserved rds", {"drop": ["rds_superuser"]}, "users.drop[0]", "reserved"),
    ("reserved public", {"grants": [{"type": "membership", "role": "x", "to": ["PUBLIC"]}]}, "users.grants[0].to[0]", "reserved"),
    ("login not bool", with_role(login="yes"), "users.roles[0].login", "true or false"),
    ("secret not an ARN", with_role(password_secret_arn="arn:aws:s3:::bucket"), "users.roles[0].password_secret_arn", "Secrets Manager secret ARN"),
    ("secret without login", {"roles": [{"name": "r", "password_secret_arn": ARN}]}, "users.roles[0].login", "must be true"),
    ("connection limit too low", with_role(connection_limit=-2), "users.roles[0].connection_limit", "-1 (no limit)"),
    ("connection limit bool", with_role(connection_limit=True), "users.roles[0].connection_limit", "whole number"),
    ("valid_until without zone", with_role(valid_until="2030-01-01T00:00:00"), "users.roles[0].valid_until", "time zone"),
    ("valid_until garbage", with_role(valid_until="next year"), "users.roles[0].valid_until", "ISO 8601"),
    ("duplicate role", {"roles": [{"name": "a"}, {"name": "a"}]}, "users.roles[1].name", "appears twice"),
    ("grant type unknown", {"grants": [{"type": "column", "to": ["a"]}]}, "users.grants[0].type", "must be one of"),
    ("grant privilege unknown", {"grants": [{"type": "schema", "schema": "s", "privileges": ["SELECT"], "to": ["a"]}]}, "users.grants[0].privileges", "is not a schema privilege"),
    ("grant privileges empty", {"grants": [{"type": "tables", "schema": "s", "privileges": [], "to": ["a"]}]}, "users.grants[0].privileges", "non-empty list"),
    ("grant without grantee", {"grants": [{"type": "database", "database": "d", "privileges": ["CONNECT"]}]}, "users.grants[0].to", "non-empty list"),
    ("grant without schema", {"grants": [{"type": "tables", "privileges": ["SELECT"], "to": ["a"]}]}, "users.grants[0].schema", "schema name"),
    ("grant unknown field", {"grants": [{"type": "schema", "schema": "s", "privileges": ["USAGE"], "to": ["a"], "cascade": True}]}, "users.grants[0].cascade", "is not known"),
    ("default privileges object", {"grants": [{"type": "default_privileges", "schema": "s", "object_type": "views", "privileges": ["SELECT"], "to": ["a"]}]}, "users.grants[0].object_type", "tables, sequences"),
    ("member of itself", {"grants": [{"type": "membership", "role": "a", "to": ["a"]}]}, "users.grants[0].to", "member of itself"),
    ("disabled and kept", {"roles": [{"name": "a"}], "disable": ["a"]}, "users.disable[0]", "also in users.roles"),
    ("dropped and kept", {"roles": [{"name": "a"}], "drop": ["a"]}, "users.drop[0].name", "also in users.roles"),
    ("reassign to itself", {"drop": [{"name": "a", "reassign_to": "a"}]}, "users.drop[0].reassign_to", "another role"),
    ("reassign to dropped", {"drop": [{"name": "a", "reassign_to": "b"}, "b"]}, "users.drop[0].reassign_to", "dropped too"),
    ("grant to dropped", {"drop": ["a"], "grants": [{"type": "membership", "role": "x", "to": ["a"]}]}, "users.grants[0]", "users.drop removes"),
    ("script without body", {"scripts": [{"name": "s"}]}, "users.scripts[0]", "exactly one of sql"),
    ("script with both", {"scripts": [{"name": "s", "sql": "x", "s3_uri": "s3://b1/k"}]}, "users.scripts[0]", "exactly one of sql"),
    ("script bad name", {"scripts": [{"name": "../x", "sql": "select 1"}]}, "users.scripts[0].name", "letters, digits"),
    ("script empty", {"scripts": [{"name": "s", "sql": "  "}]}, "users.scripts[0].sql", "non-empty SQL"),
    ("script bad uri", {"scripts": [{"name": "s", "s3_uri": "https://bucket/key"}]}, "users.scripts[0].s3_uri", "s3://bucket/key"),
    ("duplicate script", {"scripts": [{"name": "s", "sql": "select 1"}, {"name": "s", "sql": "select 2"}]}, "users.scripts[1].name", "appears twice"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "spec", "field", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_specs_are_refused_naming_the_field(case: str, spec: Any, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_users_spec(spec)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_a_refused_plain_password_is_never_shown() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_users_spec(with_role(password="hunter2"))
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value.to_dict())


def test_a_bad_spec_fails_the_whole_request_by_name() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_request(
            {
                "snapshot_id": "snap-1",
                "source_region": "eu-west-1",
                "target_region": "eu-central-1",
                "target_cluster_id": "orders-dev",
                "users": with_role(password="x"),
            }
        )
    assert caught.value.field == "users.roles[0].password"


def test_secrets_must_sit_under_the_stacks_prefix() -> None:
    spec = validate_users_spec(GOOD)
    check_secret_prefix(spec, "aurora-restore/")
    check_secret_prefix(spec, "arn:aws:secretsmanager:eu-central-1:123456789012:secret:aurora-restore/")
    check_secret_prefix(spec, "")
    with pytest.raises(ValidationError) as caught:
        check_secret_prefix(spec, "aurora-restore/prod/")
    assert caught.value.field == "users.roles[0].password_secret_arn"
    assert "'aurora-restore/prod/'" in str(caught.value)
    with pytest.raises(ValidationError, match="whose ARN starts with"):
        check_secret_prefix(spec, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:")
