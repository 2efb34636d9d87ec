"""The local PostgreSQL the tests and the rehearsal use: TLS required, real passwords, clean stop."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path
from typing import Any

import pytest

from aurora_restore.simulate.localdb import local_postgres


def connect_error(server: Any, *, user: str, password: str, tls: Any) -> str:
    """'' when the login works, else the error's class name."""
    import asyncpg

    async def attempt() -> str:
        try:
            connection = await asyncpg.connect(
                host=server.host,
                port=server.port,
                user=user,
                password=password,
                database="postgres",
                ssl=tls,
                timeout=5,
            )
        except (asyncpg.PostgresError, OSError) as exc:
            return type(exc).__name__
        await connection.close()
        return ""

    return asyncio.run(attempt())


def test_tls_is_required_and_verifiable(postgres_server: Any) -> None:
    verified = ssl.create_default_context(cafile=postgres_server.ca_file)
    assert verified.check_hostname
    assert (
        connect_error(
            postgres_server, user=postgres_server.superuser, password=postgres_server.password, tls=verified
        )
        == ""
    )
    # Plaintext is refused the way RDS refuses it with rds.force_ssl=1.
    assert (
        connect_error(
            postgres_server, user=postgres_server.superuser, password=postgres_server.password, tls=False
        )
        == "InvalidAuthorizationSpecificationError"
    )
    # Another CA does not vouch for this server.
    assert (
        connect_error(
            postgres_server,
            user=postgres_server.superuser,
            password=postgres_server.password,
            tls=ssl.create_default_context(),
        )
        == "SSLCertVerificationError"
    )


def test_passwords_are_checked(postgres_server: Any) -> None:
    verified = ssl.create_default_context(cafile=postgres_server.ca_file)
    assert connect_error(postgres_server, user=postgres_server.superuser, password="wrong", tls=verified) == (
        "InvalidPasswordError"
    )


@pytest.mark.postgres  # starts a server of its own, not through the fixture
def test_a_server_stops_cleanly_and_leaves_nothing_behind() -> None:
    # GIVEN a second, short-lived server
    with local_postgres(superuser="other") as server:
        pid = int(Path(server.data_dir, "postmaster.pid").read_text().splitlines()[0])
        directory = Path(server.data_dir).parent
        assert server.fetch("SELECT current_user AS me") == [{"me": "other"}]
    # THEN its process has exited and its files are gone
    assert not running(pid)
    assert not directory.exists()


def running(pid: int) -> bool:
    """True while ``pid`` runs; an exited process not yet reaped by init (a zombie) does not count."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in {"Z", "X"}
