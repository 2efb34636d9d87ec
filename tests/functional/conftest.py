"""Functional fixtures: a fresh database per test on the session's PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from steps.setup_db_users.pgsql import quote_ident


@pytest.fixture
def pg_database(postgres_server: Any) -> Iterator[str]:
    """A new, empty database on the session's server; it and every role the test made go afterwards."""
    roles_before = {r["rolname"] for r in postgres_server.fetch("SELECT rolname FROM pg_roles")}
    name = f"app_{uuid.uuid4().hex[:10]}"
    postgres_server.execute(f"CREATE DATABASE {quote_ident(name)}")
    try:
        yield name
    finally:
        postgres_server.drop_database(name)
        for row in postgres_server.fetch("SELECT rolname FROM pg_roles"):
            if row["rolname"] not in roles_before:
                postgres_server.execute(
                    f"DROP OWNED BY {quote_ident(row['rolname'])}; DROP ROLE {quote_ident(row['rolname'])}"
                )
