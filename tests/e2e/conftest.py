"""End to end: the generated state machine, run by moto's engine, served by the real dispatcher.

Every test here goes through ``aurora_restore.simulate.Rehearsal`` exactly as
``aurora-restore simulate`` does: the definition from ``infra.state_machine.build_definition``,
the built-in steps, moto for AWS, and the session's real PostgreSQL (``postgres_server``) standing
in for the restored cluster. Each test records the states its executions entered; the test in
``test_every_state_entered.py``, run after all of them, checks that together they entered every
state of the definition.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aurora_restore.simulate.rehearsal import Options, Rehearsal, Report
from aurora_restore.simulate.world import SecretSpec, World, default_world
from refresh.request import RestoreRequest

HERE = Path(__file__).parent
#: The e2e tests collected before any -m/-k deselection (the coverage test judges only a full run),
#: without the exhaustive ``slow`` variants, which the normal run leaves out.
COLLECTED = pytest.StashKey[set[str]]()
#: The test that judges, from the states the other e2e tests' executions entered, that every state
#: of the definition was entered; it must run after them.
EVERY_STATE_TEST = "test_every_state_of_the_definition_was_entered"
#: Where the users' passwords live (the stack's secrets prefix) in these worlds.
SECRETS_PREFIX = "aurora-restore/"
APP_ROLE = "app_rw"
REPORTING_ROLE = "reporting_ro"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Iterator[None]:
    """Remember every e2e test collected before ``-m`` / ``-k`` deselect any; run the judge last.

    The outermost wrapper: its first half runs before any selection (slow ones aside, the normal
    run leaves them out), its second half after every other plugin has selected and ordered, so
    the test judging the states entered runs after all the others, wherever its file sorts.
    """
    config.stash[COLLECTED] = {
        item.nodeid
        for item in items
        if Path(str(item.path)).parent == HERE and item.get_closest_marker("slow") is None
    }
    result = yield
    # A stable sort: only the judge moves, to the end.
    items.sort(key=lambda item: getattr(item, "originalname", item.name) == EVERY_STATE_TEST)
    return result


@pytest.fixture(scope="session")
def definition() -> dict[str, Any]:
    """The definition the template deploys."""
    state_machine = pytest.importorskip(
        "infra.state_machine", reason="the template (infra/) is not merged yet"
    )
    built: dict[str, Any] = state_machine.build_definition()
    return built


@pytest.fixture(scope="session")
def entered_states() -> set[str]:
    """Every state any e2e execution entered, across the session."""
    return set()


@pytest.fixture
def rehearse(
    definition: dict[str, Any], entered_states: set[str], postgres_server: Any
) -> Callable[..., Report]:
    """Run one rehearsal (poll waits of 0 s) and record the states it entered."""

    def run(raw_input: Any, *, world: World | None = None, **options: Any) -> Report:
        settings = {"poll_min_seconds": 0, "poll_max_seconds": 0, **options}
        report = Rehearsal(Options(input=raw_input, world=world, postgres=postgres_server, **settings)).run()
        entered_states.update(run.name for run in report.states)
        return report

    return run


@pytest.fixture(autouse=True)
def leave_the_server_as_found(postgres_server: Any) -> Iterator[None]:
    """The session's server is shared with other tests: drop the roles and databases a run made."""
    from steps.setup_db_users.pgsql import quote_ident

    roles = {row["rolname"] for row in postgres_server.fetch("SELECT rolname FROM pg_roles")}
    databases = {row["datname"] for row in postgres_server.fetch("SELECT datname FROM pg_database")}
    yield
    for row in postgres_server.fetch("SELECT datname FROM pg_database"):
        if row["datname"] not in databases:
            postgres_server.drop_database(row["datname"])
    for row in postgres_server.fetch("SELECT rolname FROM pg_roles"):
        if row["rolname"] not in roles:
            name = quote_ident(row["rolname"])
            postgres_server.execute(f"DROP OWNED BY {name}; DROP ROLE {name}")


def seed_request(seed_input: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The seed's input with fields changed (``None`` removes one), still in the seed's shape."""
    body = {**seed_input["body"], **fields}
    return {"body": {k: v for k, v in body.items() if v is not None}}


def users_spec(database: str) -> dict[str, Any]:
    """Two roles and a grant: what 'users exist in PostgreSQL' is checked against."""
    return {
        "roles": [
            {"name": APP_ROLE, "login": True, "password_secret_arn": f"{SECRETS_PREFIX}rehearsal/{APP_ROLE}"},
            {"name": REPORTING_ROLE, "login": False},
        ],
        "grants": [{"type": "database", "database": database, "privileges": ["CONNECT"], "to": [APP_ROLE]}],
    }


def with_users(raw_input: dict[str, Any]) -> tuple[dict[str, Any], World]:
    """The input with a users spec on a database of its own, and the default world plus its secret."""
    database = f"e2e_{uuid.uuid4().hex[:8]}"
    with_spec = seed_request(raw_input, database=database, users=users_spec(database))
    request = RestoreRequest.from_event(with_spec)
    world = default_world(request)
    world = dataclasses.replace(
        world,
        secrets=(
            SecretSpec(
                request.target_region,
                f"{SECRETS_PREFIX}rehearsal/{APP_ROLE}",
                {"password": f"app-{uuid.uuid4().hex}"},
            ),
        ),
        stack={**world.stack, "secrets_prefix": SECRETS_PREFIX},
    )
    return with_spec, world
