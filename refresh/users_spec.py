"""The request's ``users`` spec: what setup_db_users makes of the database's roles, checked up front.

Validated with the rest of the request, before anything touches AWS, so a typo fails the first
state and changes nothing. The spec (see docs/users-spec.md)::

    {
      "roles":   [{"name", "login", "password_secret_arn", "connection_limit", "valid_until"}],
      "grants":  [{"type": "database" | "schema" | "tables" | "sequences" | "default_privileges"
                   | "membership", ..., "to": [role, ...]}],
      "disable": [role | {"name": role}],
      "drop":    [{"name": role, "reassign_to": role}],
      "scripts": [{"name", "sql" | "s3_uri"}]
    }

A plain password is never accepted: roles name a Secrets Manager secret. The result of
:func:`validate_users_spec` is normalized (privileges upper-case, ``ALL`` expanded, ``disable``
entries as objects) and validating it again returns it unchanged, so ``$.request.users`` can be
checked again by the step. This module stays import-light: the handler imports it at cold start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from dispatcher.errors import ValidationError

SECTIONS = ("roles", "grants", "disable", "drop", "scripts")

#: PostgreSQL keeps at most 63 bytes of a name (NAMEDATALEN - 1) and silently cuts longer ones,
#: which would make the role we check differ from the role we created.
MAX_NAME_BYTES = 63
MAX_ITEMS = 500
#: Inline SQL, all scripts together: the request travels through every state of the execution
#: (Step Functions' 256 KiB limit); larger scripts are read from S3 (``s3_uri``).
MAX_INLINE_SQL_BYTES = 65_536
MAX_CONNECTION_LIMIT = 100_000

ROLE_FIELDS = ("name", "login", "password_secret_arn", "connection_limit", "valid_until")
DROP_FIELDS = ("name", "reassign_to")
SCRIPT_FIELDS = ("name", "sql", "s3_uri")

#: Privileges each grant type accepts, in PostgreSQL's order; ``ALL`` stands for all of them.
PRIVILEGES: dict[str, tuple[str, ...]] = {
    "database": ("CONNECT", "CREATE", "TEMPORARY"),
    "schema": ("USAGE", "CREATE"),
    "tables": ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"),
    "sequences": ("USAGE", "SELECT", "UPDATE"),
}
DEFAULT_PRIVILEGE_OBJECTS = ("tables", "sequences")
GRANT_FIELDS: dict[str, tuple[str, ...]] = {
    "database": ("type", "database", "privileges", "to"),
    "schema": ("type", "schema", "privileges", "to"),
    "tables": ("type", "schema", "privileges", "to"),
    "sequences": ("type", "schema", "privileges", "to"),
    "default_privileges": ("type", "schema", "object_type", "for_role", "privileges", "to"),
    "membership": ("type", "role", "to"),
}
GRANT_TYPES = tuple(GRANT_FIELDS)

#: Names PostgreSQL or RDS keep for themselves; the spec may not create, change or remove them.
_RESERVED_ROLE = re.compile(
    r"pg_.*|rds_.*|rdsadmin|rdsrepladmin|rdstopmgr|public|none|current_user|session_user|current_role",
    re.IGNORECASE | re.DOTALL,
)
_SECRET_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:secretsmanager:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}"
)
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
# An S3 key may hold any character but a control character (a newline would make a second line
# of every message that quotes it).
_S3_URI = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>[^\x00-\x1f\x7f]{1,1024})")
_SCRIPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
#: Field names that would carry a secret value; refused by name, whatever their value.
_PLAIN_SECRET_FIELDS = ("password", "passwd", "pwd", "pass", "secret", "secret_value", "master_password")


def validate_users_spec(spec: Any) -> dict[str, Any]:
    """Return the spec normalized, or raise ``ValidationError`` naming the bad field."""
    if not isinstance(spec, Mapping):
        raise ValidationError("users", spec, "must be an object with " + ", ".join(SECTIONS))
    unknown = sorted(k for k in spec if k not in SECTIONS)
    if unknown:
        raise ValidationError(
            f"users.{unknown[0]}", spec[unknown[0]], "is not known; sections: " + ", ".join(SECTIONS)
        )
    for section in SECTIONS:
        if section in spec and not isinstance(spec[section], list):
            raise ValidationError(f"users.{section}", spec[section], "must be a list")
        if len(spec.get(section, [])) > MAX_ITEMS:
            raise ValidationError(
                f"users.{section}", f"{len(spec[section])} items", f"must have at most {MAX_ITEMS} items"
            )

    result: dict[str, Any] = {}
    if "roles" in spec:
        result["roles"] = [_role(item, f"users.roles[{i}]") for i, item in enumerate(spec["roles"])]
    if "grants" in spec:
        result["grants"] = [_grant(item, f"users.grants[{i}]") for i, item in enumerate(spec["grants"])]
    if "disable" in spec:
        result["disable"] = [_disable(item, f"users.disable[{i}]") for i, item in enumerate(spec["disable"])]
    if "drop" in spec:
        result["drop"] = [_drop(item, f"users.drop[{i}]") for i, item in enumerate(spec["drop"])]
    if "scripts" in spec:
        result["scripts"] = [_script(item, f"users.scripts[{i}]") for i, item in enumerate(spec["scripts"])]
    inline = sum(len(script["sql"].encode()) for script in result.get("scripts", []) if "sql" in script)
    if inline > MAX_INLINE_SQL_BYTES:
        raise ValidationError(
            "users.scripts",
            f"{inline} bytes of inline SQL",
            f"must hold at most {MAX_INLINE_SQL_BYTES} bytes of inline SQL in all; put larger scripts in S3 "
            "(s3_uri)",
        )
    _cross_check(result)
    return result


def check_secret_prefix(spec: Mapping[str, Any] | None, prefix: str) -> None:
    """Refuse a role secret outside the stack's prefix (``AURORA_RESTORE_SECRETS_PREFIX``).

    The prefix is matched against the secret's name, or against the full ARN when the prefix
    itself is an ARN. An empty prefix allows any secret the function's role can read.
    """
    if not spec or not prefix:
        return
    for index, role in enumerate(spec.get("roles", [])):
        reference = role.get("password_secret_arn")
        if not reference:
            continue
        candidate = reference if prefix.startswith("arn:") else secret_name_of(reference)
        if not candidate.startswith(prefix):
            raise ValidationError(
                f"users.roles[{index}].password_secret_arn",
                reference,
                f"must be a secret whose {'ARN' if prefix.startswith('arn:') else 'name'} starts with "
                f"{prefix!r} (the stack's secrets prefix)",
            )


def secret_name_of(reference: str) -> str:
    """The secret's name from an ARN (with its random suffix) or a name."""
    if reference.startswith("arn:"):
        return reference.split(":secret:", 1)[1]
    return reference


def parse_valid_until(value: str) -> datetime | None:
    """The instant of a ``valid_until`` value; None for ``infinity`` (no expiry)."""
    if value == "infinity":
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return moment.astimezone(timezone.utc)


# -- sections ---------------------------------------------------------------------------------
def _role(item: Any, where: str) -> dict[str, Any]:
    entry = _object(item, where, ROLE_FIELDS)
    role: dict[str, Any] = {"name": role_name(entry.get("name"), f"{where}.name")}
    if "login" in entry:
        if not isinstance(entry["login"], bool):
            raise ValidationError(f"{where}.login", entry["login"], "must be true or false (a JSON boolean)")
        role["login"] = entry["login"]
    if "password_secret_arn" in entry:
        reference = entry["password_secret_arn"]
        if not isinstance(reference, str) or not (
            _SECRET_ARN.fullmatch(reference)
            or (not reference.startswith("arn:") and _SECRET_NAME.fullmatch(reference))
        ):
            raise ValidationError(
                f"{where}.password_secret_arn",
                reference,
                "must be a Secrets Manager secret ARN "
                "(arn:aws:secretsmanager:<region>:<account>:secret:<name>) or name, "
                "holding a JSON object with a 'password' field",
            )
        if role.get("login") is not True:
            raise ValidationError(
                f"{where}.login",
                entry.get("login"),
                "must be true when password_secret_arn is given "
                "(a password only matters for a role that logs in)",
            )
        role["password_secret_arn"] = reference
    if "connection_limit" in entry:
        limit = entry["connection_limit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or not -1 <= limit <= MAX_CONNECTION_LIMIT:
            raise ValidationError(
                f"{where}.connection_limit",
                limit,
                f"must be a whole number from -1 (no limit) to {MAX_CONNECTION_LIMIT}",
            )
        role["connection_limit"] = limit
    if "valid_until" in entry:
        role["valid_until"] = _valid_until(entry["valid_until"], f"{where}.valid_until")
    return role


def _grant(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise ValidationError(where, item, "must be an object with a type: " + ", ".join(GRANT_TYPES))
    kind = item.get("type")
    if kind not in GRANT_FIELDS:
        raise ValidationError(f"{where}.type", kind, "must be one of " + ", ".join(GRANT_TYPES))
    entry = _object(item, where, GRANT_FIELDS[kind])
    grant: dict[str, Any] = {"type": kind}
    if kind == "database":
        grant["database"] = _object_name(entry.get("database"), f"{where}.database", "database")
    elif kind == "membership":
        grant["role"] = role_name(entry.get("role"), f"{where}.role")
    else:
        grant["schema"] = _object_name(entry.get("schema"), f"{where}.schema", "schema")
    if kind == "default_privileges":
        object_type = entry.get("object_type")
        if object_type not in DEFAULT_PRIVILEGE_OBJECTS:
            raise ValidationError(
                f"{where}.object_type", object_type, "must be one of " + ", ".join(DEFAULT_PRIVILEGE_OBJECTS)
            )
        grant["object_type"] = object_type
        if entry.get("for_role") is not None:
            grant["for_role"] = role_name(entry["for_role"], f"{where}.for_role")
        grant["privileges"] = _privileges(entry.get("privileges"), f"{where}.privileges", object_type)
    elif kind != "membership":
        grant["privileges"] = _privileges(entry.get("privileges"), f"{where}.privileges", kind)
    grant["to"] = _role_list(entry.get("to"), f"{where}.to")
    if kind == "membership" and grant["role"] in grant["to"]:
        raise ValidationError(f"{where}.to", grant["role"], "a role cannot be made a member of itself")
    return grant


def _disable(item: Any, where: str) -> dict[str, Any]:
    if isinstance(item, str):
        return {"name": role_name(item, where)}
    entry = _object(item, where, ("name",))
    return {"name": role_name(entry.get("name"), f"{where}.name")}


def _drop(item: Any, where: str) -> dict[str, Any]:
    if isinstance(item, str):
        return {"name": role_name(item, where)}
    entry = _object(item, where, DROP_FIELDS)
    drop: dict[str, Any] = {"name": role_name(entry.get("name"), f"{where}.name")}
    if entry.get("reassign_to") is not None:
        target = role_name(entry["reassign_to"], f"{where}.reassign_to")
        if target == drop["name"]:
            raise ValidationError(f"{where}.reassign_to", target, "must be another role than the one dropped")
        drop["reassign_to"] = target
    return drop


def _script(item: Any, where: str) -> dict[str, Any]:
    entry = _object(item, where, SCRIPT_FIELDS)
    name = entry.get("name")
    if not isinstance(name, str) or not _SCRIPT_NAME.fullmatch(name):
        raise ValidationError(
            f"{where}.name", name, "must be 1-100 letters, digits, spaces, dots, underscores or hyphens"
        )
    has_sql, has_uri = "sql" in entry, "s3_uri" in entry
    if has_sql == has_uri:
        raise ValidationError(
            where, item, "must have exactly one of sql (inline) or s3_uri (s3://bucket/key)"
        )
    if has_sql:
        sql = entry["sql"]
        if not isinstance(sql, str) or not sql.strip():
            raise ValidationError(f"{where}.sql", sql, "must be non-empty SQL text")
        if len(sql.encode()) > MAX_INLINE_SQL_BYTES or "\x00" in sql:
            raise ValidationError(
                f"{where}.sql",
                f"{len(sql.encode())} bytes" if "\x00" not in sql else "text with a NUL character",
                f"must be at most {MAX_INLINE_SQL_BYTES} bytes with no NUL character; "
                "put larger scripts in S3 (s3_uri)",
            )
        return {"name": name, "sql": sql}
    uri = entry["s3_uri"]
    if not isinstance(uri, str) or not _S3_URI.fullmatch(uri):
        raise ValidationError(f"{where}.s3_uri", uri, "must be an S3 object URI s3://bucket/key")
    return {"name": name, "s3_uri": uri}


def _cross_check(spec: dict[str, Any]) -> None:
    """Refuse a spec that contradicts itself (one role both kept and dropped, ...)."""
    _unique([r["name"] for r in spec.get("roles", [])], "users.roles", "name")
    _unique([d["name"] for d in spec.get("disable", [])], "users.disable", "name")
    _unique([d["name"] for d in spec.get("drop", [])], "users.drop", "name")
    _unique([s["name"] for s in spec.get("scripts", [])], "users.scripts", "name")
    kept = {r["name"] for r in spec.get("roles", [])}
    disabled = {d["name"] for d in spec.get("disable", [])}
    dropped = {d["name"] for d in spec.get("drop", [])}
    for index, entry in enumerate(spec.get("disable", [])):
        if entry["name"] in kept:
            raise ValidationError(
                f"users.disable[{index}]",
                entry["name"],
                "is also in users.roles; a role is either set up or disabled",
            )
    for index, entry in enumerate(spec.get("drop", [])):
        if entry["name"] in kept or entry["name"] in disabled:
            section = "users.roles" if entry["name"] in kept else "users.disable"
            raise ValidationError(
                f"users.drop[{index}].name",
                entry["name"],
                f"is also in {section}; a dropped role cannot be kept",
            )
        if entry.get("reassign_to") in dropped:
            raise ValidationError(
                f"users.drop[{index}].reassign_to",
                entry["reassign_to"],
                "is dropped too; reassign to a role that stays",
            )
    for index, grant in enumerate(spec.get("grants", [])):
        named = [*grant["to"], grant.get("role"), grant.get("for_role")]
        gone = [n for n in named if n in dropped]
        if gone:
            raise ValidationError(f"users.grants[{index}]", gone[0], "names a role that users.drop removes")


# -- small checks -----------------------------------------------------------------------------
def role_name(value: Any, where: str) -> str:
    """A role name as PostgreSQL stores it (exact, case-sensitive), or ``ValidationError``."""
    name = _object_name(value, where, "role")
    if _RESERVED_ROLE.fullmatch(name):
        raise ValidationError(
            where, name, "is reserved by PostgreSQL or RDS (pg_*, rds_*, rdsadmin, public, current_user...)"
        )
    return name


def _object_name(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(where, value, f"must be a {what} name (a non-empty string)")
    if "\x00" in value or len(value.encode()) > MAX_NAME_BYTES:
        raise ValidationError(
            where, value, f"must be a {what} name of at most {MAX_NAME_BYTES} bytes with no NUL character"
        )
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        # PostgreSQL would take "rdsadmin\n" as a name of its own; in every log line it would
        # read as rdsadmin.
        raise ValidationError(
            where, value, f"must be a {what} name with no control character (newline, tab...)"
        )
    return value


def _role_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValidationError(where, value, "must be a non-empty list of role names")
    names = [role_name(v, f"{where}[{i}]") for i, v in enumerate(value)]
    _unique(names, where, None)
    return names


def _privileges(value: Any, where: str, kind: str) -> list[str]:
    allowed = PRIVILEGES[kind]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValidationError(where, value, f"must be a non-empty list of: ALL, {', '.join(allowed)}")
    wanted = {v.strip().upper() for v in value}
    if "ALL" in wanted or "ALL PRIVILEGES" in wanted:
        return list(allowed)
    bad = sorted(wanted - set(allowed))
    if bad:
        raise ValidationError(where, bad[0], f"is not a {kind} privilege; allowed: ALL, {', '.join(allowed)}")
    return [p for p in allowed if p in wanted]


def _valid_until(value: Any, where: str) -> str:
    rule = "must be an ISO 8601 time with a time zone (2030-01-31T00:00:00Z) or 'infinity'"
    if value == "infinity":
        return value
    if not isinstance(value, str):
        raise ValidationError(where, value, rule)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValidationError(where, value, rule) from None
    if moment.tzinfo is None:
        raise ValidationError(where, value, rule + "; a time without a zone is ambiguous")
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _object(item: Any, where: str, fields: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise ValidationError(where, item, "must be an object with " + ", ".join(fields))
    from dispatcher.logs import is_secret_key

    for key in item:
        if isinstance(key, str) and (key.lower() in _PLAIN_SECRET_FIELDS or is_secret_key(key)):
            # The value is never shown: it may be the very password we refuse to carry.
            raise ValidationError(
                f"{where}.{key}",
                "(not shown)",
                "plain passwords are never accepted in the request (it travels through Step Functions "
                "and the audit trail); store the password in Secrets Manager and give password_secret_arn",
            )
    unknown = sorted(str(k) for k in item if k not in fields)
    if unknown:
        raise ValidationError(
            f"{where}.{unknown[0]}",
            item[unknown[0]],
            "is not known; fields: " + ", ".join(fields),
            show_value=False,
        )
    return item


def _unique(names: list[str], where: str, field: str | None) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            suffix = f".{field}" if field else ""
            raise ValidationError(f"{where}[{index}]{suffix}", name, "appears twice; name each one once")
        seen.add(name)
