"""run_checks on a real PostgreSQL: the gate passes a good copy and fails a bad one, changing nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dispatcher import logs
from dispatcher.context import StepContext
from dispatcher.errors import ValidationError
from refresh.errors import ChecksFailed
from steps.run_checks import RunChecks
from tests.functional.pg_world import OPERATION, World

SCHEMA = """
CREATE TABLE customers (id serial PRIMARY KEY, email text NOT NULL, status text NOT NULL);
INSERT INTO customers (email, status) VALUES
  ('ann@example.com', 'active'), ('bob@example.com', 'active'), ('cy@prod-secret.example', 'gone');
"""


@pytest.fixture
def world(postgres_server: Any, pg_database: str, clients: Any, store: Any) -> World:
    """A restored cluster with a small customers table; setup_db_users has run (master reset)."""
    made = World.make(postgres_server, pg_database, clients, store)
    made.execute(SCHEMA)
    return made


def run_checks(world: World, checks: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """setup_db_users then run_checks, as the state machine runs them; the checks' output."""
    users = world.run()
    request = world.request(checks=checks, **fields)
    ctx = StepContext(
        event={"step": "run_checks", "request": request.to_dict(), "users": users},
        operation_id=OPERATION,
        settings=world.settings,
        aws=world.clients,
        store=world.store,
        log=logs.get_logger("test.run_checks"),
        request=request,
    )
    output: dict[str, Any] = json.loads(json.dumps(RunChecks().run(ctx)))
    return output


def failing(world: World, checks: list[dict[str, Any]]) -> tuple[ChecksFailed, dict[str, dict[str, Any]]]:
    """Run checks that must fail; the error and the audited results by name."""
    with pytest.raises(ChecksFailed) as raised:
        run_checks(world, checks)
    audited = [e for e in world.store.audit_trail(OPERATION) if e["event"] == "checks_run"]
    assert len(audited) == 1
    return raised.value, {r["name"]: r for r in audited[0]["results"]}


def customers(world: World) -> list[dict[str, Any]]:
    return world.sql("SELECT id, email, status FROM customers ORDER BY id")


def test_every_kind_of_expectation_passes_on_a_good_copy(world: World) -> None:
    # GIVEN one check of each kind, all true of the data
    checks = [
        {"name": "no-gone", "sql": "SELECT 1 FROM customers WHERE status = 'none'", "no_rows": True},
        {"name": "three", "sql": "SELECT id FROM customers;", "rows": 3},
        {"name": "some", "sql": "SELECT id FROM customers", "min_rows": 2},
        {"name": "few", "sql": "SELECT id FROM customers", "max_rows": 5},
        {"name": "count", "sql": "SELECT count(*) FROM customers", "equals": 3},
        {"name": "status", "sql": "SELECT status FROM customers WHERE id = 1", "equals": "active"},
        {"name": "floor", "sql": "SELECT avg(id) FROM customers", "at_least": 2},
        {"name": "ceiling", "sql": "SELECT max(id) FROM customers", "at_most": 3.5},
    ]
    # WHEN the gate runs
    output = run_checks(world, checks)
    # THEN every check passed, each result says what it expected and saw, and no row is reported
    assert output["ok"] is True
    assert output["counts"] == {"total": 8, "ok": 8, "failed": 0}
    seen = {r["name"]: (r["expected"], r["seen"]) for r in output["results"]}
    assert seen["no-gone"] == ("no rows", "0 rows")
    assert seen["three"] == ("exactly 3 rows", "3 rows")
    assert seen["some"] == ("at least 2 rows", "at least 2 rows")
    assert seen["count"] == ("= 3", "3")
    assert seen["status"] == ("= 'active'", "'active'")
    assert seen["ceiling"] == ("<= 3.5", "3")
    assert all(isinstance(r["duration_ms"], int) for r in output["results"])
    assert "example.com" not in json.dumps(output)
    audited = [e for e in world.store.audit_trail(OPERATION) if e["event"] == "checks_run"]
    assert audited and audited[0]["ok"] is True
    assert "example.com" not in json.dumps(audited, default=str)


def test_a_failing_check_fails_the_gate_naming_it_and_what_was_seen(world: World) -> None:
    checks = [
        {
            "name": "masked",
            "sql": "SELECT 1 FROM customers WHERE email NOT LIKE '%@example.com'",
            "no_rows": True,
        },
        {"name": "count", "sql": "SELECT count(*) FROM customers", "at_least": 100},
        {"name": "fine", "sql": "SELECT 1", "rows": 1},
    ]
    error, results = failing(world, checks)
    assert "2 of 3 checks failed" in error.message
    assert "masked (expected no rows, saw at least 1 row)" in error.message
    assert "count (expected >= 100, saw 3)" in error.message
    assert results["fine"]["ok"] is True
    assert "prod-secret" not in json.dumps(results) + error.message
    # The execution's record keeps the results for `aurora-restore status`.
    record = world.store.get_operation(OPERATION)["executions"]
    assert any(len(r.get("checks", [])) == 3 for r in record.values())


def test_a_check_that_tries_to_write_fails_and_changes_nothing(world: World) -> None:
    before = customers(world)
    checks = [
        {"name": "wipe", "sql": "DELETE FROM customers RETURNING id", "no_rows": True},
        {"name": "escape", "sql": "COMMIT; DELETE FROM customers", "no_rows": True},
        {"name": "mask", "sql": "UPDATE customers SET email = 'x' RETURNING 1", "rows": 3},
    ]
    error, results = failing(world, checks)
    assert "tried to write" in results["wipe"]["seen"]
    assert "read-only transaction" in results["wipe"]["seen"]
    assert "more than one SQL statement" in results["escape"]["seen"]
    assert "tried to write" in results["mask"]["seen"]
    assert error.details["failed"] == ["wipe", "escape", "mask"]
    assert customers(world) == before


def test_a_check_past_its_timeout_is_cancelled_and_fails(world: World) -> None:
    error, results = failing(
        world, [{"name": "slow", "sql": "SELECT pg_sleep(5)", "timeout_seconds": 1, "rows": 1}]
    )
    assert results["slow"]["seen"] == "ran past its timeout of 1 s (statement_timeout) and was cancelled"
    assert results["slow"]["duration_ms"] < 4000
    assert "slow" in error.message


def test_a_check_naming_a_missing_database_fails_clearly(world: World) -> None:
    error, results = failing(
        world, [{"name": "elsewhere", "sql": "SELECT 1", "database": "no_such_db", "rows": 1}]
    )
    assert results["elsewhere"]["seen"] == "database 'no_such_db' does not exist on the restored cluster"
    assert "elsewhere" in error.message


def test_sql_errors_fail_the_check_and_never_quote_row_data(world: World) -> None:
    error, results = failing(
        world,
        [
            {"name": "typo", "sql": "SELECT 1 FROM no_such_table", "no_rows": True},
            {"name": "cast", "sql": "SELECT email::int FROM customers WHERE id = 3", "equals": 1},
            {"name": "shape", "sql": "SELECT id, email FROM customers WHERE id = 1", "equals": 1},
        ],
    )
    assert "42P01" in results["typo"]["seen"] and "no_such_table" in results["typo"]["seen"]
    assert "22P02" in results["cast"]["seen"] and "not shown" in results["cast"]["seen"]
    assert results["shape"]["seen"] == "2 columns (a compared check returns one value)"
    assert "prod-secret" not in json.dumps(results) + error.message


def test_running_the_gate_twice_is_harmless(world: World) -> None:
    checks = [{"name": "count", "sql": "SELECT count(*) FROM customers", "equals": 3}]
    first = run_checks(world, checks)
    second = run_checks(world, checks)
    assert [r["ok"] for r in first["results"]] == [r["ok"] for r in second["results"]] == [True]


def test_no_checks_means_no_connection(world: World) -> None:
    output = run_checks(world, [])
    assert output == {
        "cluster_id": output["cluster_id"],
        "ok": True,
        "results": [],
        "counts": {"total": 0, "ok": 0, "failed": 0},
    }
    assert not [e for e in world.store.audit_trail(OPERATION) if e["event"] == "checks_run"]


def test_a_request_with_a_malformed_check_is_refused_naming_the_field(world: World) -> None:
    with pytest.raises(ValidationError) as raised:
        world.request(checks=[{"name": "a", "sql": "SELECT 1", "rows": 1, "no_rows": True}])
    assert raised.value.field == "checks[0].no_rows"


def test_a_compared_value_that_looks_like_a_secret_is_not_shown(world: World) -> None:
    world.execute("CREATE TABLE settings (api_key text); INSERT INTO settings VALUES ('Zq8#vL2!mK9$pR4x');")
    error, results = failing(
        world, [{"name": "key-reset", "sql": "SELECT api_key FROM settings", "equals": "reset"}]
    )
    assert results["key-reset"]["seen"] == "a value that looks like a secret (not shown)"
    assert "Zq8#vL2" not in error.message + json.dumps(results)


def test_more_failed_checks_than_the_message_names_are_counted(world: World) -> None:
    checks = [{"name": f"c{i}", "sql": "SELECT 1", "no_rows": True} for i in range(12)]
    error, results = failing(world, checks)
    assert len(results) == 12
    assert "12 of 12 checks failed" in error.message
    assert "c9 (expected no rows" in error.message and "c10 (" not in error.message
    assert "and 2 more (audit event checks_run)" in error.message


def test_a_connection_lost_during_a_check_is_retryable(world: World) -> None:
    # GIVEN a check running on the restored cluster, and the server ending its session mid-query
    import asyncio
    import ssl

    import asyncpg

    from dispatcher.errors import Retryable
    from steps.run_checks import run_check

    world.run()
    check = {
        "name": "slow",
        "sql": "SELECT pg_sleep(5)",
        "database": world.database,
        "timeout_seconds": 30,
        "rows": 1,
    }

    async def scenario() -> None:
        connection = await asyncpg.connect(
            host=world.server.host,
            port=world.server.port,
            user="master",
            password=world.master_password_now(),
            database=world.database,
            ssl=ssl.create_default_context(cafile=world.server.ca_file),
            server_settings={"application_name": "gate-lost-connection"},
        )
        running = asyncio.ensure_future(run_check(connection, check))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(
            world.server.execute,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gate-lost-connection'",
        )
        try:
            await running
        finally:
            await connection.close()

    # WHEN the check meets the lost connection THEN the step is retried, not failed as a check
    with pytest.raises(Retryable) as raised:
        asyncio.run(scenario())
    assert "run again" in raised.value.message
