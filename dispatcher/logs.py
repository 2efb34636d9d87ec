"""structlog, configured once: JSON lines in Lambda, readable lines on a terminal, secrets redacted."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "***"
#: Keys whose values are never written anywhere: logs, audit items, outputs, notifications.
SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|credential|private_?key|"
    r"api_?key|session_?key|authorization|presigned|pre_signed|dsn|connection_?string)",
    re.IGNORECASE,
)
#: Keys that name a reference to a secret or a setting about one, not its value.
_REFERENCE_SUFFIX = re.compile(
    r"(arn|_id|_ids|name|prefix|storage|mode|field|_reset|_managed|_rotated|_status)$", re.IGNORECASE
)
#: ``postgresql://user:password@host`` style strings anywhere in a value.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)@", re.IGNORECASE)

_configured = False


def is_secret_key(key: str) -> bool:
    """True when a key names a secret (password, token, ...), not a reference to one (secret_arn)."""
    return bool(SECRET_KEY.search(key)) and not _REFERENCE_SUFFIX.search(key)


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-named key's value replaced by ``***``."""
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_secret_key(k) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return _URL_PASSWORD.sub(lambda m: m["scheme"] + REDACTED + "@", value)
    return value


def redact_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """structlog processor form of :func:`redact`."""
    cleaned: Mapping[str, Any] = redact(event_dict)
    return cleaned


def in_lambda() -> bool:
    """True inside the Lambda runtime."""
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ and "AWS_EXECUTION_ENV" in os.environ


def configure(*, json_lines: bool | None = None, level: str | None = None, stream: Any = None) -> None:
    """Configure structlog once (later calls only reconfigure when arguments are given)."""
    global _configured
    if _configured and json_lines is None and level is None and stream is None:
        return
    if json_lines is None:
        json_lines = in_lambda() or not sys.stderr.isatty()
    level_name = (level or os.environ.get("AURORA_RESTORE_LOG_LEVEL", "INFO")).upper()
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level_name)),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str = "aurora_restore") -> Any:
    """A structlog logger (configures logging on first use)."""
    configure()
    return structlog.get_logger(name)
