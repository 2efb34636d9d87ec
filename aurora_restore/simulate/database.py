"""The real PostgreSQL that stands in for the restored cluster during a rehearsal.

``setup_db_users`` connects to the restored cluster's writer endpoint. In a rehearsal there is no
cluster to connect to, so the Lambda's environment points the step at a real PostgreSQL server
instead (``AURORA_RESTORE_DB_ENDPOINT_OVERRIDE``, the step's one simulation seam): the embedded
server ``aurora_restore.simulate.localdb`` starts with TLS (no manual setup), or the server named by
``--database-url``.

The server plays the restored cluster faithfully where it matters: it opens with the *source*
cluster's master user and password (a restore keeps production's credentials, which is why the
step resets them), and :class:`~aurora_restore.simulate.localdb.RdsMasterPasswordEmulation` applies the
master password change to it the way RDS would, so the old password really stops working.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from aurora_restore.simulate.world import ClusterSpec, World
    from refresh.request import RestoreRequest

T = TypeVar("T")


class DatabaseError(RuntimeError):
    """The rehearsal's database could not be started or reached; the message says what to do."""


@dataclass
class ExternalPostgres:
    """A server the operator runs (``--database-url``), driven with the URL's (superuser) role.

    It offers what the rehearsal needs of ``aurora_restore.simulate.localdb.LocalPostgres``: the endpoint
    and CA bundle for the step, and setting a role's password the way RDS does.
    """

    url: str
    host: str
    port: int
    ca_file: str = ""

    @classmethod
    def from_url(cls, url: str, ca_file: str = "") -> ExternalPostgres:
        """Parse ``postgresql://user:password@host:port/database``."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            raise DatabaseError(
                f"--database-url {_shown(url)}: expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
            )
        return cls(url=url, host=parts.hostname, port=parts.port or 5432, ca_file=ca_file)

    @property
    def endpoint(self) -> str:
        """``host:port`` for ``AURORA_RESTORE_DB_ENDPOINT_OVERRIDE``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def run(self, work: Callable[[Any], Coroutine[Any, Any, T]], *, database: str | None = None) -> T:
        """``await work(connection)`` on a thread of its own (callers may be inside an event loop)."""
        result: list[T] = []
        failure: list[BaseException] = []

        async def main() -> None:
            import asyncpg

            extra = {"database": database} if database else {}
            connection = await asyncpg.connect(dsn=self.url, timeout=10, **extra)
            try:
                result.append(await work(connection))
            finally:
                await connection.close()

        def target() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=target, name="aurora-restore-rehearsal-db")
        thread.start()
        thread.join(60)
        if failure:
            raise DatabaseError(f"--database-url {_shown(self.url)}: {failure[0]}") from failure[0]
        return result[0]

    def execute(self, sql: str, *, database: str | None = None) -> None:
        """Run SQL as the URL's role, in the URL's database or ``database``."""

        async def work(connection: Any) -> None:
            await connection.execute(sql)

        self.run(work, database=database)

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Rows of a query as dicts."""

        async def work(connection: Any) -> list[dict[str, Any]]:
            return [dict(row) for row in await connection.fetch(sql, *args)]

        return self.run(work)

    def add_master_user(self, username: str, password: str) -> None:
        """Create (or reset) the role that plays the restored cluster's master user."""
        from steps.setup_db_users.pgsql import quote_ident, quote_literal

        verb = "ALTER" if self.fetch("SELECT 1 FROM pg_roles WHERE rolname = $1", username) else "CREATE"
        self.execute(
            f"{verb} ROLE {quote_ident(username)} WITH LOGIN SUPERUSER PASSWORD {quote_literal(password)}"
        )

    def set_password(self, username: str, password: str) -> None:
        """Give ``username`` a new password (what RDS does when the master password changes)."""
        from steps.setup_db_users.pgsql import quote_ident, quote_literal

        self.execute(f"ALTER ROLE {quote_ident(username)} WITH PASSWORD {quote_literal(password)}")


def _shown(url: str) -> str:
    from dispatcher.logs import redact

    return str(redact(url))


@dataclass
class RehearsalDatabase:
    """The server in use, who the restored cluster's master user is, and the Lambda's settings."""

    server: Any
    embedded: bool
    master_username: str | None = None
    #: The password the restored cluster opens with: the source's (kept for the report's checks).
    opening_password: str | None = field(default=None, repr=False)
    emulation: Any = None

    @property
    def environment(self) -> dict[str, str]:
        """The Lambda settings that send setup_db_users to this server."""
        ca_file = getattr(self.server, "ca_file", "") or ""
        return {
            "AURORA_RESTORE_DB_ENDPOINT_OVERRIDE": self.server.endpoint,
            "AURORA_RESTORE_DB_CA_BUNDLE": ca_file,
            # --database-url without --database-ca: the operator chose TLS without verification.
            "AURORA_RESTORE_DB_TLS_VERIFY": "true" if ca_file else "false",
            # A local server answers at once or not at all: fail in seconds, not minutes.
            "AURORA_RESTORE_DB_CONNECT_ATTEMPTS": "3",
            "AURORA_RESTORE_DB_CONNECT_TIMEOUT_SECONDS": "5",
        }

    def install_emulation(self, add_hook: Callable[[str, Any], None], clients: Callable[..., Any]) -> None:
        """Apply master password changes made through the dispatcher's clients to the server, as RDS would.

        The hooks go on the dispatcher's clients (that is where the step calls ModifyDBCluster);
        the emulation's own calls (writing the RDS-managed secret) go through ``clients``, so they
        are not counted as the pipeline's calls.
        """
        from aurora_restore.simulate.localdb import RdsMasterPasswordEmulation

        self.emulation = RdsMasterPasswordEmulation(self.server, _HookedClients(add_hook, clients)).install()

    def describe(self) -> dict[str, Any]:
        """Where the database was and what the emulation applied (no password)."""
        return {
            "endpoint": self.server.endpoint,
            "embedded": self.embedded,
            "master_username": self.master_username,
            "master_password_changes": list(getattr(self.emulation, "applied", []) or []),
        }


@dataclass
class NoDatabase:
    """For a pipeline without setup_db_users (a rehearsal of third-party or test steps)."""

    environment: dict[str, str] = field(default_factory=dict)
    master_username: str | None = None
    opening_password: str | None = None

    def install_emulation(self, add_hook: Callable[[str, Any], None], clients: Callable[..., Any]) -> None:
        """Nothing to emulate."""

    def describe(self) -> dict[str, Any]:
        """No database was used."""
        return {}


class _HookedClients:
    """``add_hook`` of one Clients object, calls through another."""

    def __init__(self, add_hook: Callable[[str, Any], None], clients: Callable[..., Any]) -> None:
        self.add_hook = add_hook
        self._clients = clients

    def __call__(self, service: str, region: str | None = None) -> Any:
        return self._clients(service, region)


def source_cluster(world: World, request: RestoreRequest | None) -> ClusterSpec | None:
    """The cluster the request's snapshot was taken of (its credentials are the restore's)."""
    from aurora_restore.simulate.world import ACCOUNT

    if request is None:
        return None
    ref = request.snapshot
    # The snapshot's own account: the request's source_account, an ARN's, else the stack's.
    account = request.source_account or (ref.account if ref.kind == "arn" else "") or ACCOUNT
    if ref.kind in ("latest", "clone", "pitr"):
        return world.cluster(ref.cluster_id, request.source_region, account)
    snapshot_id = ref.value.split(":cluster-snapshot:")[-1] if ref.kind == "arn" else ref.value
    for snapshot in world.snapshots:
        if (
            snapshot.id.lower() == snapshot_id.lower()
            and snapshot.region == request.source_region
            and snapshot.account == account
        ):
            return world.cluster(snapshot.cluster, snapshot.region, account)
    return None


@contextlib.contextmanager
def rehearsal_database(
    *,
    server: Any = None,
    database_url: str | None = None,
    ca_file: str = "",
    world: World,
    request: RestoreRequest | None,
) -> Iterator[RehearsalDatabase]:
    """The database for one rehearsal: ``server`` as given, the URL's, or an embedded one started now.

    An embedded server is stopped (and its files deleted) when the block ends.
    """
    with contextlib.ExitStack() as stack:
        embedded = False
        if server is None and database_url:
            server = ExternalPostgres.from_url(database_url, ca_file)
        elif server is None:
            from aurora_restore.simulate.localdb import LocalPostgresError, local_postgres

            try:
                server = stack.enter_context(local_postgres())
            except LocalPostgresError as exc:
                raise DatabaseError(
                    f"could not start the embedded PostgreSQL: {exc}; or pass --database-url"
                ) from exc
            embedded = True
        database = RehearsalDatabase(server=server, embedded=embedded)
        source = source_cluster(world, request)
        if source is not None:
            server.add_master_user(source.master_username, source.master_password)
            database.master_username = source.master_username
            database.opening_password = source.master_password
        if request is not None and not server.fetch(
            "SELECT 1 FROM pg_database WHERE datname = $1", request.database
        ):
            # The restored copy holds production's databases; the request names the one to set up.
            from steps.setup_db_users.pgsql import quote_ident

            server.execute(f"CREATE DATABASE {quote_ident(request.database)}")
            if source is not None and source.data_sql:
                # The snapshot's data, as the world file describes it, in the database it names.
                server.execute(source.data_sql, database=request.database)
        yield database
