"""TLS to the restored cluster is verified by default, against the suite's real PostgreSQL TLS front.

The server's certificate chain and host name are checked against the stack's CA bundle
(``DbCaBundle``); only ``DbTlsVerify=false`` turns that off. A bundle that is not configured or not
in the function is refused, naming the path and the parameter, before anything changes.
"""

from __future__ import annotations

import socket
import ssl
import struct
from pathlib import Path
from typing import Any

import pytest

from dispatcher.errors import ValidationError
from dispatcher.handler import Dispatcher
from dispatcher.settings import Settings
from steps.lib.pg_connect import tls_context
from tests.functional.pg_world import MASTER, PRODUCTION_PASSWORD, World

#: PostgreSQL's SSLRequest: length 8, then the magic code 80877103; the server answers b"S".
SSL_REQUEST = struct.pack("!II", 8, 80877103)


def handshake(server: Any, context: ssl.SSLContext, server_hostname: str) -> str:
    """Open TLS to the server's front the way a PostgreSQL client does; returns the TLS version."""
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        raw.sendall(SSL_REQUEST)
        assert raw.recv(1) == b"S"
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return str(tls.version())


def test_the_connection_verifies_the_chain_and_the_host_name(postgres_server: Any, tmp_path: Path) -> None:
    from aurora_restore.simulate.localdb import make_certificates

    # GIVEN the context the step builds from the stack's bundle
    context = tls_context(postgres_server.ca_file)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # WHEN it meets the server under the name its certificate was issued for: connected
    assert handshake(postgres_server, context, postgres_server.host).startswith("TLSv1.")
    # WHEN the name is another (a DNS answer pointing elsewhere): refused
    with pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch|doesn't match"):
        handshake(postgres_server, context, "orders-dev.cluster-abc.us-west-2.rds.amazonaws.com")
    # WHEN the bundle holds another CA: refused
    _, _, other_ca = make_certificates(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError, match=r"unable to get local issuer|self.signed"):
        handshake(postgres_server, tls_context(str(other_ca)), postgres_server.host)
    # AND only an explicit opt-out skips verification (still TLS)
    assert handshake(postgres_server, tls_context("", verify=False), "anything").startswith("TLSv1.")


def test_the_right_bundle_connects_through_the_step(
    postgres_server: Any, pg_database: str, clients: Any, store: Any
) -> None:
    world = World.make(postgres_server, pg_database, clients, store)
    assert world.settings.db_tls_verify is True
    output = world.run({"roles": [{"name": "reporting"}]})
    assert output["roles_created"] == ["reporting"]


@pytest.mark.parametrize(
    ("bundle", "expected"),
    [
        ("/var/task/certs/global-bundle.pem", "'/var/task/certs/global-bundle.pem' is not valid; no such file"),
        ("", "DbTlsVerify is true (the default), so the restored cluster's TLS certificate is verified"),
    ],
)
def test_a_bundle_not_there_is_refused_before_anything_changes(
    postgres_server: Any, pg_database: str, clients: Any, store: Any, bundle: str, expected: str
) -> None:
    # GIVEN a stack whose DbCaBundle names a file the zip does not hold (or no bundle at all)
    world = World.make(postgres_server, pg_database, clients, store, db_ca_bundle=bundle)
    # WHEN setup_db_users runs
    with pytest.raises(ValidationError) as caught:
        world.run({"roles": [{"name": "reporting"}]})
    # THEN the error names the parameter, the path and both ways out
    message = str(caught.value)
    assert caught.value.field == "DbCaBundle"
    assert expected in message
    assert "--ca-bundle global-bundle.pem" in message and "DbTlsVerify=false" in message
    # AND nothing changed: the master password was not reset, no role made
    assert "ModifyDBCluster" not in world.rds_calls
    assert world.login(MASTER, PRODUCTION_PASSWORD) == ""
    assert world.sql("SELECT 1 FROM pg_roles WHERE rolname = 'reporting'") == []


def test_verification_turned_off_explicitly_connects_without_a_bundle(
    postgres_server: Any, pg_database: str, clients: Any, store: Any
) -> None:
    world = World.make(postgres_server, pg_database, clients, store, db_ca_bundle="", db_tls_verify=False)
    output = world.run({"roles": [{"name": "reporting"}]})
    assert output["roles_created"] == ["reporting"]


def test_validate_request_refuses_a_bundle_the_function_does_not_hold(
    registry: Any, clients: Any, store: Any, seed_input: dict[str, Any]
) -> None:
    settings = Settings(db_ca_bundle="/var/task/certs/global-bundle.pem")
    app = Dispatcher(registry=registry, settings=settings, clients=clients)
    app._store = store
    calls: list[str] = []
    clients.add_hook("before-call.rds", lambda model, **_: calls.append(model.name))
    with pytest.raises(ValidationError) as caught:
        app.handle({"step": "validate_request", "input": seed_input, "execution_id": "exec-1"})
    assert "DbCaBundle: '/var/task/certs/global-bundle.pem' is not valid; no such file" in str(caught.value)
    assert calls == []
