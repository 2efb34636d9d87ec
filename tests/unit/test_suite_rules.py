"""The suite's own rules: the ``postgres`` marker is on every test that starts the embedded
PostgreSQL server, and the test judging the states the e2e tests entered runs after them all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def collected(*args: str) -> list[str]:
    """The test ids ``pytest --collect-only`` lists for ``args``, in the order they would run."""
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    return [line for line in listed.splitlines() if "::" in line]


def test_not_postgres_leaves_out_every_test_whose_fixtures_start_the_server() -> None:
    # Neither file carries the marker itself: the e2e tests get the server through their autouse
    # fixture, the operator commands' real refresh through its stack fixture.
    selected = collected("-m", "not postgres", "tests/functional/test_operator_commands.py", "tests/e2e")
    assert "tests/functional/test_operator_commands.py::test_unlock_with_no_lock_says_so" in selected
    assert not [nodeid for nodeid in selected if "test_a_real_refresh" in nodeid or "/e2e/" in nodeid]


def test_a_test_without_the_marker_cannot_start_a_server() -> None:
    # This test is not marked postgres: starting a server from it is refused before initdb runs.
    from aurora_restore.simulate.localdb import LocalPostgresServer

    with pytest.raises(
        AssertionError, match=r"test_suite_rules\.py::test_a_test_without_the_marker.*not marked postgres"
    ):
        LocalPostgresServer().start()


def test_the_every_state_judge_runs_last_whatever_the_file_order() -> None:
    # Its file named first on the command line, and sorting before others in the directory.
    order = collected(
        "tests/e2e/test_every_state_entered.py", "tests/e2e/test_safety_battery.py", "tests/e2e"
    )
    assert (
        order[-1] == "tests/e2e/test_every_state_entered.py::test_every_state_of_the_definition_was_entered"
    )
    assert len(order) > 10
