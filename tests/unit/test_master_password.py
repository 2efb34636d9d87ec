"""When a master password change counts as applied, and what the stack secret is called."""

from __future__ import annotations

import pytest

from dispatcher.errors import ValidationError
from dispatcher.settings import Settings, split_endpoint
from steps.lib.pg_connect import RetryPolicy
from steps.setup_db_users.master_password import (
    PASSWORD_ALPHABET,
    generate_master_password,
    password_change_pending,
    stack_secret_name,
)

MANAGED = {
    "SecretArn": "arn:aws:secretsmanager:eu-central-1:1:secret:rds!cluster-1",
    "SecretStatus": "active",
}


@pytest.mark.parametrize(
    ("cluster", "storage", "pending"),
    [
        ({"Status": "available", "MasterUserSecret": MANAGED}, "rds-managed", ""),
        (
            {"Status": "resetting-master-credentials", "MasterUserSecret": MANAGED},
            "rds-managed",
            "status is resetting",
        ),
        (
            {"Status": "available", "PendingModifiedValues": {"MasterUserPassword": "****"}},
            "stack-secret",
            "pending",
        ),
        ({"Status": "available"}, "rds-managed", "not made the master user secret"),
        (
            {"Status": "available", "MasterUserSecret": {**MANAGED, "SecretStatus": "creating"}},
            "rds-managed",
            "creating",
        ),
        ({"Status": "available"}, "stack-secret", ""),
    ],
)
def test_a_change_applies_when_the_cluster_says_so(cluster: dict, storage: str, pending: str) -> None:
    reason = password_change_pending(cluster, storage)
    assert (reason == "") == (pending == "")
    assert pending in reason


def test_stack_secret_is_one_per_target_under_the_prefix() -> None:
    assert stack_secret_name("", "Orders-Dev") == "aurora-restore/orders-dev/master"
    assert stack_secret_name("team/dev/", "orders-dev") == "team/dev/orders-dev/master"
    arn_prefix = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:team/"
    assert stack_secret_name(arn_prefix, "orders-dev") == "team/orders-dev/master"


def test_generated_passwords_are_long_random_and_acceptable_to_rds() -> None:
    passwords = {generate_master_password() for _ in range(20)}
    assert len(passwords) == 20
    for password in passwords:
        assert len(password) == 40
        assert set(password) <= set(PASSWORD_ALPHABET)
        assert not set(password) & set("/'\"@ ")


def test_the_endpoint_override_is_host_and_port() -> None:
    settings = Settings.from_env({"AURORA_RESTORE_DB_ENDPOINT_OVERRIDE": "127.0.0.1:54321"})
    assert split_endpoint(settings.db_endpoint_override) == ("127.0.0.1", 54321)
    assert split_endpoint("[::1]:5432") == ("::1", 5432)
    assert Settings.from_env({}).db_endpoint_override == ""
    with pytest.raises(ValidationError) as caught:
        Settings.from_env({"AURORA_RESTORE_DB_ENDPOINT_OVERRIDE": "localhost"})
    assert caught.value.field == "AURORA_RESTORE_DB_ENDPOINT_OVERRIDE"


def test_connection_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(backoff_base_seconds=1, backoff_max_seconds=8)
    for attempt, cap in ((1, 1), (2, 2), (3, 4), (4, 8), (7, 8)):
        pause = policy.backoff(attempt)
        assert cap / 2 <= pause <= cap
