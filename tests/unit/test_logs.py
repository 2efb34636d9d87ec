"""Secrets never reach the logs: the redaction processor and the URL scrubber."""

from __future__ import annotations

import io
import json

import structlog

from dispatcher import logs


def test_secret_named_keys_are_redacted_at_any_depth() -> None:
    data = {
        "password": "hunter2",
        "nested": {"MasterUserPassword": "p@ss", "api_token": "t0k", "list": [{"client_secret": "s"}]},
        "password_secret_arn": "arn:aws:secretsmanager:eu-central-1:1:secret:x",
        "master_password_storage": "rds-managed",
        "keep": "visible",
    }
    clean = logs.redact(data)
    assert clean["password"] == "***"
    assert clean["nested"]["MasterUserPassword"] == "***"
    assert clean["nested"]["api_token"] == "***"
    assert clean["nested"]["list"][0]["client_secret"] == "***"
    # References to secrets are not secrets.
    assert clean["password_secret_arn"].startswith("arn:aws:secretsmanager")
    assert clean["master_password_storage"] == "rds-managed"
    assert clean["keep"] == "visible"
    assert data["password"] == "hunter2", "redact must not change its input"


def test_a_secret_id_names_the_secret_its_value_stays_hidden() -> None:
    # GetSecretValue's SecretId is which secret was read (the IAM check and the plan need it);
    # the value fields of a Secrets Manager call stay redacted.
    call = {"SecretId": "aurora-restore/orders-dev/app", "SecretString": "hunter2", "ClientRequestToken": "t"}
    clean = logs.redact(call)
    assert clean == {
        "SecretId": "aurora-restore/orders-dev/app",
        "SecretString": "***",
        "ClientRequestToken": "***",
    }


def test_passwords_inside_urls_are_scrubbed() -> None:
    assert logs.redact("postgresql://app:s3cr3t@db:5432/x") == "postgresql://app:***@db:5432/x"


def test_log_lines_are_json_with_secrets_redacted() -> None:
    stream = io.StringIO()
    before = structlog.get_config()
    logs.configure(json_lines=True, stream=stream)
    try:
        logs.get_logger("t").info("connecting", password="hunter2", host="db")
    finally:
        structlog.configure(**before)  # leave logging as the next test expects it
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["password"] == "***"
    assert line["host"] == "db"
    assert "hunter2" not in stream.getvalue()
    assert line["timestamp"].endswith("Z")


def test_a_refused_secret_field_is_not_echoed_in_the_error() -> None:
    from dispatcher.errors import ValidationError

    error = ValidationError("users.roles[0].password", "hunter2", "plain passwords are not accepted")
    assert "hunter2" not in str(error)
    assert "users.roles[0].password: *** is not valid" in str(error)


def test_error_details_scrub_secrets_quoted_in_free_text() -> None:
    from dispatcher.handler import error_detail

    detail = error_detail(RuntimeError("connect failed: password=hunter2 host=db"))
    assert "hunter2" not in detail["message"]
    assert "host=db" in detail["message"]
