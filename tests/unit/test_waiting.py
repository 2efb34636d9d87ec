"""The replace loops' poll bookkeeping: the shared policy, urgent polls, robust inputs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from dispatcher.errors import PollTimeout
from dispatcher.settings import Settings
from steps.lib import polling
from steps.lib.clusters import is_failed, is_renaming, member_ids
from steps.lib.polling import step_poll_fields

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def ctx(settings: Settings | None = None, now: datetime = NOW) -> Any:
    return SimpleNamespace(settings=settings or Settings(), clock=lambda: now)


def test_the_first_poll_starts_the_clock_and_waits_the_minimum() -> None:
    fields = step_poll_fields(ctx(), None, complete=False, max_wait_seconds=3600, waiting_for="x")
    assert fields["polls"] == 1
    assert polling.parse_time(fields["started_at"]) == NOW
    assert fields["elapsed_seconds"] == 0
    assert fields["next_poll_seconds"] == Settings().poll_min_seconds


def test_later_polls_keep_the_start_count_on_and_back_off_as_the_shared_policy_says() -> None:
    settings = Settings(poll_min_seconds=30, poll_max_seconds=900)
    previous = {"polls": 2, "started_at": (NOW - timedelta(minutes=10)).isoformat()}
    fields = step_poll_fields(ctx(settings), previous, complete=False, max_wait_seconds=3600, waiting_for="x")
    assert fields["polls"] == 3
    assert polling.parse_time(fields["started_at"]) == NOW - timedelta(minutes=10)
    assert fields["elapsed_seconds"] == 600
    expected = polling.next_poll_seconds(600, None, 3, min_seconds=30, max_seconds=900)
    assert fields["next_poll_seconds"] == expected > 30


def test_urgent_waits_stay_at_the_minimum() -> None:
    previous = {"polls": 9, "started_at": (NOW - timedelta(minutes=30)).isoformat()}
    settings = Settings(poll_min_seconds=15)
    fields = step_poll_fields(
        ctx(settings), previous, complete=False, max_wait_seconds=3600, waiting_for="x", urgent=True
    )
    assert fields["next_poll_seconds"] == 15


def test_a_complete_poll_needs_no_wait_even_past_the_maximum() -> None:
    previous = {"polls": 99, "started_at": (NOW - timedelta(days=3)).isoformat()}
    fields = step_poll_fields(ctx(), previous, complete=True, max_wait_seconds=3600, waiting_for="x")
    assert (fields["complete"], fields["next_poll_seconds"]) == (True, 0)


def test_waiting_past_the_maximum_raises_poll_timeout_naming_what_it_waited_for() -> None:
    previous = {"polls": 40, "started_at": (NOW - timedelta(seconds=3601)).isoformat()}
    with pytest.raises(PollTimeout, match="the restore of orders-dev is still not complete") as caught:
        step_poll_fields(
            ctx(), previous, complete=False, max_wait_seconds=3600, waiting_for="the restore of orders-dev"
        )
    assert caught.value.details["elapsed_seconds"] == 3601
    assert caught.value.details["polls"] == 41


@pytest.mark.parametrize("started_at", [None, "", "yesterday", 12345])
def test_an_unreadable_start_restarts_the_clock_instead_of_failing(started_at: Any) -> None:
    fields = step_poll_fields(
        ctx(), {"polls": 3, "started_at": started_at}, complete=False, max_wait_seconds=60, waiting_for="x"
    )
    assert polling.parse_time(fields["started_at"]) == NOW
    assert fields["polls"] == 1


def test_a_z_suffixed_start_is_read() -> None:
    previous = {"polls": 0, "started_at": "2024-05-01T11:59:00Z"}
    assert (
        step_poll_fields(ctx(), previous, complete=False, max_wait_seconds=600, waiting_for="x")["elapsed_seconds"]
        == 60
    )


@pytest.mark.parametrize(
    ("status", "failed"),
    [
        ("failed", True),
        ("inaccessible-encryption-credentials", True),
        ("incompatible-restore", True),
        ("incompatible-network", True),
        ("available", False),
        ("creating", False),
        ("renaming", False),
        ("backing-up", False),
    ],
)
def test_failed_states(status: str, failed: bool) -> None:
    assert is_failed(status) is failed


def test_a_rename_is_seen_in_the_status_or_as_a_pending_new_id() -> None:
    assert is_renaming({"Status": "renaming"})
    assert is_renaming({"Status": "available", "PendingModifiedValues": {"DBClusterIdentifier": "x"}})
    assert not is_renaming({"Status": "available", "PendingModifiedValues": {}})
    assert not is_renaming(None)


def test_readers_are_deleted_before_the_writer() -> None:
    cluster = {
        "DBClusterMembers": [
            {"DBInstanceIdentifier": "w", "IsClusterWriter": True},
            {"DBInstanceIdentifier": "r1", "IsClusterWriter": False},
            {"DBInstanceIdentifier": "r2", "IsClusterWriter": False},
        ]
    }
    assert member_ids(cluster) == ["r1", "r2", "w"]
