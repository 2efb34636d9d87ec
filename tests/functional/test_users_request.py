"""The stack's secrets prefix is enforced in the first state, before anything touches AWS."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.errors import ValidationError
from dispatcher.handler import Dispatcher
from dispatcher.settings import Settings
from tests.conftest import STACK_PLACEMENT


def test_a_role_secret_outside_the_prefix_fails_validate_request(
    registry: Any, clients: Any, store: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN a stack that lets the users spec read secrets under aurora-restore/ only
    app = Dispatcher(registry=registry, settings=Settings(secrets_prefix="aurora-restore/", **STACK_PLACEMENT), clients=clients)
    app._store = store
    calls: list[str] = []
    clients.add_hook("before-call.rds", lambda model, **_: calls.append(model.name))
    role = {"name": "app_rw", "login": True, "password_secret_arn": "prod/app_rw"}
    body = {**seed_input["body"], "users": {"roles": [role]}}
    # WHEN the first state validates the request
    with pytest.raises(ValidationError) as caught:
        app.handle({"step": "validate_request", "input": {"body": body}, "execution_id": "exec-1"})
    # THEN it names the field and the prefix, and no AWS resource was looked at
    assert caught.value.field == "users.roles[0].password_secret_arn"
    assert "'aurora-restore/'" in str(caught.value)
    assert calls == []
    # AND a secret under the prefix passes
    role["password_secret_arn"] = "aurora-restore/app_rw"
    output = app.handle({"step": "validate_request", "input": {"body": body}, "execution_id": "exec-2"})
    assert output["users"]["roles"][0]["password_secret_arn"] == "aurora-restore/app_rw"
