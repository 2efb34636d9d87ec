"""Applying a validated users spec to a database through one asyncpg connection.

Order (documented in docs/users-spec.md): roles to create or alter, grants in the order given,
roles to disable, roles to drop — all in **one transaction**, so a failure leaves nothing of the
spec applied — then each script in its own transaction.

Every action compares the catalogs first (``pg_roles``, ``pg_auth_members``, the ACLs of
databases, schemas, relations and default privileges) and does only what is missing, so applying
the same spec again changes nothing and reports nothing. Names are quoted with
:func:`~steps.setup_db_users.pgsql.quote_ident`; passwords go in as SCRAM verifiers, never as text.
The connection is passed in; asyncpg is not imported here (it only appears in type hints).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from refresh.errors import DatabaseSetupFailed
from refresh.users_spec import parse_valid_until
from steps.setup_db_users.pgsql import qualified, quote_ident, quote_literal, scram_verifier

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Where scripts that ran are remembered, so a retried or repeated run does not run them twice.
LEDGER_SCHEMA = "aurora_restore"
LEDGER_TABLE = "scripts_run"
RELATION_KINDS = {"tables": ["r", "p", "v", "m", "f"], "sequences": ["S"]}
ACL_KIND = {"tables": "r", "sequences": "s"}
DEFAULT_ACL_KIND = {"tables": "r", "sequences": "S"}
BATCH = 200  # objects per GRANT statement


@dataclass(frozen=True)
class Script:
    """A post-restore SQL script, loaded (from the request or S3) before anything changes."""

    name: str
    source: str  # "inline" or the s3:// URI
    sql: str = field(repr=False)

    @property
    def sha256(self) -> str:
        """Fingerprint of the script's text: the same name with other text runs again."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass
class Changes:
    """What the spec changed; empty lists when there was nothing to do."""

    roles_created: list[str] = field(default_factory=list)
    roles_altered: list[dict[str, Any]] = field(default_factory=list)
    roles_disabled: list[str] = field(default_factory=list)
    roles_dropped: list[dict[str, Any]] = field(default_factory=list)
    grants: list[dict[str, Any]] = field(default_factory=list)
    scripts_run: list[dict[str, Any]] = field(default_factory=list)
    scripts_skipped: list[dict[str, Any]] = field(default_factory=list)
    roles_not_found: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when anything in the database changed."""
        return bool(
            self.roles_created
            or self.roles_altered
            or self.roles_disabled
            or self.roles_dropped
            or self.grants
            or self.scripts_run
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the step output."""
        return {**asdict(self), "changed": self.changed}


async def existing_login_roles(connection: Any, names: list[str]) -> set[str]:
    """Which of ``names`` exist now and may log in (the ones whose password can be checked)."""
    rows = await connection.fetch(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[]) AND rolcanlogin", names
    )
    return {row["rolname"] for row in rows}


class SpecApplier:
    """Applies one spec through one connection; collects the changes."""

    def __init__(
        self,
        connection: Any,
        spec: Mapping[str, Any],
        *,
        passwords: Mapping[str, str],
        passwords_current: set[str],
        log: Any,
    ) -> None:
        self.connection = connection
        self.spec = spec
        #: Role name -> password read from its secret (only roles with password_secret_arn).
        self.passwords = passwords
        #: Roles that already log in with that password: their password is left alone.
        self.passwords_current = passwords_current
        self.log = log
        self.changes = Changes()
        #: The spec entry being applied, named in errors.
        self.doing = ""

    async def apply(self) -> Changes:
        """Roles, grants, disable, drop in one transaction; raise ``DatabaseSetupFailed`` on error."""
        import asyncpg

        try:
            async with self.connection.transaction():
                for index, role in enumerate(self.spec.get("roles", [])):
                    await self._role(index, role)
                for index, grant in enumerate(self.spec.get("grants", [])):
                    await self._grant(index, grant)
                for index, entry in enumerate(self.spec.get("disable", [])):
                    self.doing = f"users.disable[{index}] ({entry['name']!r})"
                    await self._disable(entry["name"])
                for index, entry in enumerate(self.spec.get("drop", [])):
                    await self._drop(index, entry)
        except asyncpg.PostgresError as exc:
            raise DatabaseSetupFailed(
                f"{self.doing}: the database refused it ({_describe_error(exc)}); the users spec was rolled "
                "back, nothing of it was applied",
                field=self.doing,
                sqlstate=getattr(exc, "sqlstate", ""),
            ) from None
        except DatabaseSetupFailed as exc:
            raise DatabaseSetupFailed(
                exc.message + "; the users spec was rolled back, nothing of it was applied", **exc.details
            ) from None
        return self.changes

    # -- roles ------------------------------------------------------------------------------------
    async def _role(self, index: int, role: Mapping[str, Any]) -> None:
        name = role["name"]
        self.doing = f"users.roles[{index}] ({name!r})"
        current = await self.connection.fetchrow(
            "SELECT rolcanlogin, rolconnlimit, rolvaliduntil FROM pg_roles WHERE rolname = $1", name
        )
        attributes: list[str] = []
        changed: list[str] = []
        wants_login = role.get("login")
        if current is None or (wants_login is not None and current["rolcanlogin"] != wants_login):
            attributes.append("LOGIN" if wants_login else "NOLOGIN")
            changed.append("login")
        if "connection_limit" in role and (
            current is None or current["rolconnlimit"] != role["connection_limit"]
        ):
            attributes.append(f"CONNECTION LIMIT {int(role['connection_limit'])}")
            changed.append("connection_limit")
        if "valid_until" in role and (
            current is None or not _same_expiry(current["rolvaliduntil"], role["valid_until"])
        ):
            attributes.append(f"VALID UNTIL {quote_literal(role['valid_until'])}")
            changed.append("valid_until")
        if name in self.passwords and (current is None or name not in self.passwords_current):
            # A SCRAM verifier, not the password: server logs and errors never see the secret.
            attributes.append(f"PASSWORD {quote_literal(scram_verifier(self.passwords[name]))}")
            changed.append("password")
        if current is None:
            await self.connection.execute(f"CREATE ROLE {quote_ident(name)} WITH {' '.join(attributes)}")
            self.changes.roles_created.append(name)
            self.log.info("role created", role=name, attributes=changed)
        elif attributes:
            await self.connection.execute(f"ALTER ROLE {quote_ident(name)} WITH {' '.join(attributes)}")
            self.changes.roles_altered.append({"name": name, "changed": changed})
            self.log.info("role altered", role=name, attributes=changed)

    # -- grants -----------------------------------------------------------------------------------
    async def _grant(self, index: int, grant: Mapping[str, Any]) -> None:
        where = f"users.grants[{index}]"
        self.doing = f"{where} ({grant['type']})"
        for position, grantee in enumerate(grant["to"]):
            grantee_oid = await self._role_oid(grantee, f"{where}.to[{position}]")
            kind = grant["type"]
            if kind == "database":
                await self._grant_on_database(grant, grantee, grantee_oid, where)
            elif kind == "schema":
                await self._grant_on_schema(grant, grantee, grantee_oid, where)
            elif kind in ("tables", "sequences"):
                await self._grant_on_relations(grant, grantee, grantee_oid, where)
            elif kind == "default_privileges":
                await self._grant_default(grant, grantee, grantee_oid, where)
            else:
                await self._grant_membership(grant, grantee, grantee_oid, where)

    async def _grant_on_database(self, grant: Mapping[str, Any], grantee: str, oid: int, where: str) -> None:
        database = grant["database"]
        granted = await self.connection.fetchval(
            "SELECT array(SELECT a.privilege_type"
            " FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a WHERE a.grantee = $2)"
            " FROM pg_database d WHERE d.datname = $1",
            database,
            oid,
        )
        if granted is None:
            raise DatabaseSetupFailed(
                f"{where}.database: database {database!r} does not exist on the restored cluster",
                field=f"{where}.database",
            )
        missing = [p for p in grant["privileges"] if p not in granted]
        if missing:
            await self.connection.execute(
                f"GRANT {', '.join(missing)} ON DATABASE {quote_ident(database)} TO {quote_ident(grantee)}"
            )
            self._granted("database", database, missing, grantee, 1)

    async def _grant_on_schema(self, grant: Mapping[str, Any], grantee: str, oid: int, where: str) -> None:
        schema = grant["schema"]
        granted = await self.connection.fetchval(
            "SELECT array(SELECT a.privilege_type"
            " FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a WHERE a.grantee = $2)"
            " FROM pg_namespace n WHERE n.nspname = $1",
            schema,
            oid,
        )
        if granted is None:
            raise self._no_schema(schema, where)
        missing = [p for p in grant["privileges"] if p not in granted]
        if missing:
            await self.connection.execute(
                f"GRANT {', '.join(missing)} ON SCHEMA {quote_ident(schema)} TO {quote_ident(grantee)}"
            )
            self._granted("schema", schema, missing, grantee, 1)

    async def _grant_on_relations(self, grant: Mapping[str, Any], grantee: str, oid: int, where: str) -> None:
        kind, schema = grant["type"], grant["schema"]
        if not await self.connection.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
            raise self._no_schema(schema, where)
        rows = await self.connection.fetch(
            "SELECT c.relname, array(SELECT a.privilege_type"
            '  FROM aclexplode(coalesce(c.relacl, acldefault($4::text::"char", c.relowner))) a'
            "  WHERE a.grantee = $2) AS granted"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind::text = ANY($3::text[]) ORDER BY c.relname",
            schema,
            oid,
            RELATION_KINDS[kind],
            ACL_KIND[kind],
        )
        # Group the relations by what they lack, so one GRANT covers many.
        lacking: dict[tuple[str, ...], list[str]] = {}
        for row in rows:
            missing = tuple(p for p in grant["privileges"] if p not in row["granted"])
            if missing:
                lacking.setdefault(missing, []).append(row["relname"])
        keyword = "TABLE" if kind == "tables" else "SEQUENCE"
        for missing, names in lacking.items():
            for start in range(0, len(names), BATCH):
                targets = ", ".join(qualified(schema, n) for n in names[start : start + BATCH])
                await self.connection.execute(
                    f"GRANT {', '.join(missing)} ON {keyword} {targets} TO {quote_ident(grantee)}"
                )
            self._granted(kind, schema, list(missing), grantee, len(names))

    async def _grant_default(self, grant: Mapping[str, Any], grantee: str, oid: int, where: str) -> None:
        schema, object_type = grant["schema"], grant["object_type"]
        schema_oid = await self.connection.fetchval("SELECT oid FROM pg_namespace WHERE nspname = $1", schema)
        if schema_oid is None:
            raise self._no_schema(schema, where)
        owner = grant.get("for_role") or await self.connection.fetchval("SELECT current_user")
        owner_oid = await self._role_oid(owner, f"{where}.for_role")
        granted = await self.connection.fetchval(
            "SELECT array(SELECT a.privilege_type FROM pg_default_acl d, aclexplode(d.defaclacl) a"
            ' WHERE d.defaclrole = $1 AND d.defaclnamespace = $2 AND d.defaclobjtype = $3::text::"char"'
            " AND a.grantee = $4)",
            owner_oid,
            schema_oid,
            DEFAULT_ACL_KIND[object_type],
            oid,
        )
        missing = [p for p in grant["privileges"] if p not in granted]
        if missing:
            await self.connection.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {quote_ident(owner)} IN SCHEMA {quote_ident(schema)} "
                f"GRANT {', '.join(missing)} ON {object_type.upper()} TO {quote_ident(grantee)}"
            )
            self._granted(f"default_privileges.{object_type}", f"{schema} (for {owner})", missing, grantee, 1)

    async def _grant_membership(
        self, grant: Mapping[str, Any], member: str, member_oid: int, where: str
    ) -> None:
        role = grant["role"]
        role_oid = await self._role_oid(role, f"{where}.role")
        if not await self.connection.fetchval(
            "SELECT true FROM pg_auth_members WHERE roleid = $1 AND member = $2", role_oid, member_oid
        ):
            await self.connection.execute(f"GRANT {quote_ident(role)} TO {quote_ident(member)}")
            self.changes.grants.append({"type": "membership", "role": role, "to": member})
            self.log.info("role granted", role=role, to=member)

    def _granted(self, kind: str, on: str, privileges: list[str], grantee: str, objects: int) -> None:
        self.changes.grants.append(
            {"type": kind, "on": on, "privileges": privileges, "to": grantee, "objects": objects}
        )
        self.log.info(
            "privileges granted", type=kind, on=on, privileges=privileges, to=grantee, objects=objects
        )

    # -- disable and drop -------------------------------------------------------------------------
    async def _disable(self, name: str) -> None:
        can_login = await self.connection.fetchval(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", name
        )
        if can_login is None:
            self.changes.roles_not_found.append(name)
        elif can_login:
            # NOLOGIN and no password: even re-enabling login later would not bring the old one back.
            await self.connection.execute(f"ALTER ROLE {quote_ident(name)} WITH NOLOGIN PASSWORD NULL")
            self.changes.roles_disabled.append(name)
            self.log.info("role disabled", role=name)

    async def _drop(self, index: int, entry: Mapping[str, Any]) -> None:
        name, target = entry["name"], entry.get("reassign_to")
        where = f"users.drop[{index}]"
        self.doing = f"{where} ({name!r})"
        oid = await self.connection.fetchval("SELECT oid FROM pg_roles WHERE rolname = $1", name)
        if oid is None:
            self.changes.roles_not_found.append(name)
            return
        dependencies = await self.connection.fetch(
            "SELECT d.datname, s.dbid, s.deptype::text AS deptype,"
            " CASE WHEN s.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))"
            "  THEN pg_describe_object(s.classid, s.objid, s.objsubid) END AS object"
            " FROM pg_shdepend s LEFT JOIN pg_database d ON d.oid = s.dbid"
            " WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = $1"
            " ORDER BY 4",
            oid,
        )
        here = await self.connection.fetchval("SELECT current_database()")
        elsewhere = sorted({r["datname"] for r in dependencies if r["dbid"] != 0 and r["datname"] != here})
        if elsewhere:
            raise DatabaseSetupFailed(
                f"{where}: role {name!r} owns objects or holds privileges in other databases "
                f"({', '.join(elsewhere)}); aurora-restore works in database {here!r} only, so reassign or "
                "drop those first (or leave the role to users.disable)",
                field=where,
            )
        owned = [r["object"] for r in dependencies if r["deptype"] == "o"]
        if owned and not target:
            shown = ", ".join(owned[:5]) + (f" and {len(owned) - 5} more" if len(owned) > 5 else "")
            raise DatabaseSetupFailed(
                f"{where}.reassign_to: role {name!r} owns {len(owned)} object(s) ({shown}); "
                "give reassign_to, the role that should own them, to drop it",
                field=f"{where}.reassign_to",
            )
        if target:
            await self._role_oid(target, f"{where}.reassign_to")
            await self.connection.execute(f"REASSIGN OWNED BY {quote_ident(name)} TO {quote_ident(target)}")
        # Revokes what the role was granted (and drops what it still owns: nothing, by now).
        await self.connection.execute(f"DROP OWNED BY {quote_ident(name)}")
        await self.connection.execute(f"DROP ROLE {quote_ident(name)}")
        self.changes.roles_dropped.append(
            {"name": name, "reassigned_to": target, "objects_reassigned": len(owned)}
        )
        self.log.info("role dropped", role=name, reassigned_to=target, objects_reassigned=len(owned))

    # -- helpers ----------------------------------------------------------------------------------
    async def _role_oid(self, name: str, where: str) -> int:
        oid = await self.connection.fetchval("SELECT oid FROM pg_roles WHERE rolname = $1", name)
        if oid is None:
            raise DatabaseSetupFailed(
                f"{where}: role {name!r} does not exist on the restored cluster; add it to users.roles",
                field=where,
            )
        return int(oid)

    def _no_schema(self, schema: str, where: str) -> DatabaseSetupFailed:
        return DatabaseSetupFailed(
            f"{where}.schema: schema {schema!r} does not exist in the database the step connects to",
            field=f"{where}.schema",
        )


async def run_scripts(connection: Any, scripts: list[Script], *, operation_id: str, log: Any) -> Changes:
    """Run each script in its own transaction, once: the ledger remembers what already ran."""
    import asyncpg

    changes = Changes()
    if not scripts:
        return changes
    ledger = qualified(LEDGER_SCHEMA, LEDGER_TABLE)
    async with connection.transaction():
        await connection.execute(
            f"CREATE SCHEMA IF NOT EXISTS {quote_ident(LEDGER_SCHEMA)};"
            f"REVOKE ALL ON SCHEMA {quote_ident(LEDGER_SCHEMA)} FROM PUBLIC;"
            f"CREATE TABLE IF NOT EXISTS {ledger} (name text NOT NULL, sha256 text NOT NULL,"
            " operation_id text NOT NULL, run_at timestamptz NOT NULL DEFAULT now(),"
            " PRIMARY KEY (name, sha256))"
        )
    for script in scripts:
        entry = {"name": script.name, "source": script.source, "sha256": script.sha256}
        try:
            async with connection.transaction():
                ran_by = await connection.fetchval(
                    f"SELECT operation_id FROM {ledger} WHERE name = $1 AND sha256 = $2",
                    script.name,
                    script.sha256,
                )
                if ran_by is not None:
                    changes.scripts_skipped.append({**entry, "ran_by": ran_by})
                    continue
                await connection.execute(script.sql)
                await connection.execute(
                    f"INSERT INTO {ledger} (name, sha256, operation_id) VALUES ($1, $2, $3)",
                    script.name,
                    script.sha256,
                    operation_id,
                )
        except asyncpg.PostgresError as exc:
            before = ", ".join(s["name"] for s in changes.scripts_run) or "none"
            raise DatabaseSetupFailed(
                f"script {script.name!r} ({script.source}) failed and was rolled back: "
                f"{_describe_error(exc)}; scripts before it stay applied ({before})",
                script=script.name,
                sqlstate=getattr(exc, "sqlstate", ""),
            ) from None
        changes.scripts_run.append(entry)
        log.info("script run", script=script.name, source=script.source)
    return changes


def _same_expiry(current: datetime | None, wanted: str) -> bool:
    """Whether ``rolvaliduntil`` already says ``wanted`` (NULL and infinity both mean never)."""
    moment = parse_valid_until(wanted)
    never = current is None or current.year == datetime.max.year
    if moment is None:
        return never
    if never or current is None:
        return False
    if current.tzinfo is None:
        current = current.replace(tzinfo=timezone.utc)
    return current == moment


def _describe_error(exc: Any) -> str:
    """The database's message with its SQLSTATE, detail and hint."""
    parts = [f"{getattr(exc, 'sqlstate', '') or type(exc).__name__}: {getattr(exc, 'message', None) or exc}"]
    for label in ("detail", "hint"):
        value = getattr(exc, label, None)
        if value:
            parts.append(f"{label}: {value}")
    position = getattr(exc, "position", None)
    if position:
        parts.append(f"at character {position}")
    return "; ".join(parts)
