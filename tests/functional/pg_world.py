"""A restored cluster as setup_db_users sees it: moto for RDS and Secrets Manager, a real PostgreSQL.

moto holds the cluster (tagged as restored by the operation) and the secrets; the session's local
server plays the cluster's database, reached through ``AURORA_RESTORE_DB_ENDPOINT_OVERRIDE``, and
:class:`~aurora_restore.simulate.localdb.RdsMasterPasswordEmulation` applies master password changes to it
the way RDS would.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

from aurora_restore.simulate.localdb import LocalPostgres, RdsMasterPasswordEmulation
from dispatcher import logs
from dispatcher.context import StepContext
from dispatcher.request import MANAGED_TAG, OPERATION_TAG, RestoreRequest, parse_request
from dispatcher.settings import Settings

REGION = "eu-central-1"
OPERATION = "op-dbusers-1"
TARGET = "orders-dev"
CLUSTER = "orders-dev-new-4f2a9c"
MASTER = "master"
#: The production master password the restored copy opens with (quotes and a backslash on purpose).
PRODUCTION_PASSWORD = 'prod\'s \\ master "pw" 1'


@dataclass
class World:
    """One test's world: the cluster in moto, its database on the real server, and the step's context."""

    server: LocalPostgres
    database: str
    clients: Any
    store: Any
    settings: Settings
    emulation: RdsMasterPasswordEmulation
    rds_calls: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, server: LocalPostgres, database: str, clients: Any, store: Any, **settings: Any) -> World:
        """The restored cluster (tagged by this operation), its master user, the emulation."""
        clients("rds", REGION).create_db_cluster(
            DBClusterIdentifier=CLUSTER,
            Engine="aurora-postgresql",
            MasterUsername=MASTER,
            MasterUserPassword="restored-from-snapshot",
            Tags=[{"Key": MANAGED_TAG, "Value": "true"}, {"Key": OPERATION_TAG, "Value": OPERATION}],
        )
        server.add_master_user(MASTER, PRODUCTION_PASSWORD)
        defaults: dict[str, Any] = {
            "db_endpoint_override": server.endpoint,
            "db_ca_bundle": server.ca_file,
            "db_connect_attempts": 3,
            "db_connect_timeout_seconds": 5.0,
            "secrets_prefix": "aurora-restore/",
        }
        world = cls(
            server=server,
            database=database,
            clients=clients,
            store=store,
            settings=Settings(**{**defaults, **settings}),
            emulation=RdsMasterPasswordEmulation(server, clients).install(),
        )
        clients.add_hook("before-call.rds", lambda model, **_: world.rds_calls.append(model.name))
        return world

    # -- inputs -----------------------------------------------------------------------------------
    def request(self, users: dict[str, Any] | None = None, **fields: Any) -> RestoreRequest:
        """A validated request for this world."""
        return parse_request(
            {
                "operation_id": OPERATION,
                "snapshot_id": "rds:orders-2026-11-20-02-00",
                "source_region": "us-east-1",
                "target_region": REGION,
                "target_cluster_id": TARGET,
                "database": self.database,
                **({"users": users} if users is not None else {}),
                **fields,
            }
        )

    def context(self, request: RestoreRequest, restore: dict[str, Any] | None = None) -> StepContext:
        """The step's context, as the dispatcher would build it."""
        return StepContext(
            event={
                "step": "setup_db_users",
                "request": request.to_dict(),
                "restore": restore if restore is not None else {"cluster_id": CLUSTER},
            },
            operation_id=OPERATION,
            settings=self.settings,
            aws=self.clients,
            store=self.store,
            log=logs.get_logger("test.setup_db_users"),
            request=request,
        )

    def run(self, users: dict[str, Any] | None = None, step: Any = None, **fields: Any) -> dict[str, Any]:
        """Run setup_db_users once and return its output (JSON round-tripped, as Step Functions sees it)."""
        step = step or fast_step()
        output = step.run(self.context(self.request(users, **fields)))
        loaded: dict[str, Any] = json.loads(json.dumps(output))
        return loaded

    def role_secret(self, name: str, value: Any) -> str:
        """A secret under the stack's prefix holding ``value`` (a dict becomes JSON); returns its ARN."""
        text = value if isinstance(value, str) else json.dumps(value)
        made = self.clients("secretsmanager", REGION).create_secret(
            Name=f"aurora-restore/{name}", SecretString=text
        )
        arn: str = made["ARN"]
        return arn

    # -- looking at the result --------------------------------------------------------------------
    def sql(self, query: str, *args: Any) -> list[dict[str, Any]]:
        """Rows of a query in the test's database, as the superuser."""
        return self.server.fetch(query, *args, database=self.database)

    def execute(self, statements: str) -> None:
        """Run SQL in the test's database, as the superuser."""
        self.server.execute(statements, database=self.database)

    def master_password_now(self) -> str:
        """The master password RDS keeps in the cluster's secret (rds-managed)."""
        cluster = self.clients("rds", REGION).describe_db_clusters(DBClusterIdentifier=CLUSTER)["DBClusters"][
            0
        ]
        value = self.clients("secretsmanager", REGION).get_secret_value(
            SecretId=cluster["MasterUserSecret"]["SecretArn"]
        )
        password: str = json.loads(value["SecretString"])["password"]
        return password

    def login(self, user: str, password: str, *, tls: bool = True) -> str:
        """Log in through the TLS endpoint like any client; '' on success, else the error's name."""
        import asyncpg

        async def attempt() -> str:
            context = ssl.create_default_context(cafile=self.server.ca_file) if tls else False
            try:
                connection = await asyncpg.connect(
                    host=self.server.host,
                    port=self.server.port,
                    user=user,
                    password=password,
                    database=self.database,
                    ssl=context,
                    timeout=5,
                )
            except (asyncpg.PostgresError, OSError) as exc:
                return type(exc).__name__
            await connection.close()
            return ""

        return asyncio.run(attempt())


def fast_step() -> Any:
    """The step with waits that cost no wall-clock time (sleeps are recorded instead)."""
    from steps.setup_db_users import SetupDBUsers

    step = SetupDBUsers()
    step.slept = []  # type: ignore[attr-defined]
    step.sleep = step.slept.append  # type: ignore[attr-defined]
    return step
