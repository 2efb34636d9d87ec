"""The ``postgres`` marker is on exactly the tests that start the embedded PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_not_postgres_leaves_out_every_test_whose_fixtures_start_the_server() -> None:
    # Neither file carries the marker itself: the e2e tests get the server through their autouse
    # fixture, the operator commands' real refresh through its stack fixture.
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "not postgres",
         "tests/functional/test_operator_commands.py", "tests/e2e"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    selected = [line for line in listed.splitlines() if "::" in line]
    assert "tests/functional/test_operator_commands.py::test_unlock_with_no_lock_says_so" in selected, listed
    assert not [nodeid for nodeid in selected if "test_a_real_refresh" in nodeid or "/e2e/" in nodeid]


def test_a_test_without_the_marker_cannot_start_a_server() -> None:
    # This test is not marked postgres: starting a server from it is refused before initdb runs.
    from aurora_restore.localdb import LocalPostgresServer

    with pytest.raises(
        AssertionError, match=r"test_markers\.py::test_a_test_without_the_marker.*not marked postgres"
    ):
        LocalPostgresServer().start()
