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
    r"(pass(word|wd|phrase)?|pwd|secret|token|credential|private_?key|"
    r"api_?key|session_?key|authorization|presigned|pre_signed|dsn|connection_?string|"
    # An STS external id only proves who asks for a role; kept out of logs like the rest.
    r"external_?id)",
    re.IGNORECASE,
)
#: Keys that name a reference to a secret or a setting about one, not its value.
_REFERENCE_SUFFIX = re.compile(
    r"(arn|_id|_ids|secretid|name|prefix|storage|mode|field|_reset|_managed|_rotated|_status)$", re.IGNORECASE
)
#: ``postgresql://user:password@host`` style strings anywhere in a value.
# The look-behind starts a scheme only at a token's beginning (linear time on long text).
_URL_PASSWORD = re.compile(
    r"(?<![a-z0-9+.-])(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)@", re.IGNORECASE
)

#: ``Bearer abc...`` / ``Basic abc...`` in free text.
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_AUTH_SCHEME_NAME = re.compile(r"^(Bearer|Basic)$", re.IGNORECASE)
#: ``key=value``, ``key: value``, ``"key": "value"``, ``'key': 'value'`` in free text.
_KEY_VALUE = re.compile(
    # The look-behind starts keys only at a token's beginning: without it a long run of letters
    # is rescanned from every position (quadratic time on a long error message).
    # The value is only looked at, not consumed, so ``failed: password=x`` still finds ``password``.
    r"""(?<![\w.\[\]-])(?P<key>[A-Za-z_][\w.\[\]-]*)(?P<close>["']?)(?P<sep>\s*[=:]\s*)"""
    r"""(?=(?P<value>"[^"]*"|'[^']*'|[^\s,;&)}\]]+))"""
)
#: botocore's parameter validation: ``Invalid type for parameter MasterUserPassword, value: x, type: ...``.
_BOTOCORE_PARAMETER = re.compile(
    r"(?P<head>parameter\s+(?P<key>[\w.\[\]-]+),\s*value:\s*)(?P<value>.*?)(?=,\s*(?:type|valid)\b|\n|$)",
    re.IGNORECASE,
)


def scrub_text(text: str) -> str:
    """``text`` with secret-looking values masked: ``password=hunter2`` -> ``password=***``.

    Error messages are free text that may quote a request or an AWS parameter; the key-based
    :func:`~dispatcher.logs.redact` cannot see inside them. Credentials in URLs are masked too.
    """

    def masked_values(source: str) -> str:
        pieces: list[str] = []
        last = covered = 0
        for match in _KEY_VALUE.finditer(source):
            value = match["value"]
            if match.start() < covered:
                continue  # inside a value already seen (masked, quoted, an ARN or a URL)
            if not is_secret_key(match["key"].split(".")[-1].strip("[]")) or _AUTH_SCHEME_NAME.match(value):
                # Not a secret's name, or ``Authorization: Bearer ***`` already masked after the scheme.
                # A quoted value, an ARN or a URL is one token: no key starts inside it.
                if value[:1] in {'"', "'"} or value.startswith("arn:") or "://" in value:
                    covered = match.end("value")
                continue
            quote = value[0] if value[:1] in {'"', "'"} else ""
            pieces.append(source[last : match.start("value")] + f"{quote}{REDACTED}{quote}")
            last = covered = match.end("value")
        return "".join(pieces) + source[last:]

    def parameter(match: re.Match[str]) -> str:
        if not is_secret_key(match["key"].split(".")[-1]):
            return match[0]
        return match["head"] + REDACTED

    text = _AUTH_SCHEME.sub(lambda m: f"{m[1]} {REDACTED}", text)
    text = _BOTOCORE_PARAMETER.sub(parameter, text)
    text = masked_values(text)
    cleaned: str = redact(text)
    return cleaned


_configured = False


def is_secret_key(key: str) -> bool:
    """True when a key names a secret (password, token, ...), not a reference to one (secret_arn)."""
    return bool(SECRET_KEY.search(key)) and not _REFERENCE_SUFFIX.search(key)


#: Well-known shapes of secrets: PEM keys, AWS access keys, credentials in a URL.
_SECRET_SHAPE = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|[a-z][a-z0-9+.-]*://[^/@\s:]+:[^@\s]+@",
    re.IGNORECASE,
)


def looks_like_secret(value: Any) -> bool:
    """True when ``value`` (or a string anywhere inside it) may be a password, key or token.

    A guess that errs on the side of hiding: a token of 8 or more characters that mixes three
    of lower case, upper case, digits and punctuation (how generated passwords look), a
    well-known secret shape, or a secret-named key inside an object. An ARN is a reference,
    never a secret, and is shown.
    """
    if isinstance(value, Mapping):
        return any(
            (isinstance(k, str) and is_secret_key(k) and v not in (None, ""))
            or looks_like_secret(k)
            or looks_like_secret(v)
            for k, v in value.items()
        )
    if isinstance(value, (list, tuple)):
        return any(looks_like_secret(v) for v in value)
    if not isinstance(value, str):
        return False
    if _SECRET_SHAPE.search(value) or scrub_text(value) != value:
        return True
    for token in value.split():
        if len(token) < 8 or token.startswith("arn:"):
            continue
        kinds = (
            any(c.islower() for c in token)
            + any(c.isupper() for c in token)
            + any(c.isdigit() for c in token)
            + any(not c.isalnum() for c in token)
        )
        if kinds >= 3 and any(c.isupper() for c in token):
            return True
    return False


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
