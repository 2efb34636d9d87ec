"""The request's ``checks``: the validation gate a restored copy must pass before it replaces the target.

Each check is one flat object: a name, one SQL query run on the restored cluster (in a read-only
transaction with a statement timeout), an optional database and timeout, and exactly one
expectation::

    {"name": "masked", "sql": "SELECT 1 FROM users WHERE email NOT LIKE '%@example.com'", "no_rows": true}

Row-count expectations (``rows``, ``min_rows``, ``max_rows``, ``no_rows``) count the rows the query
returns; value expectations (``equals``, ``at_least``, ``at_most``) compare the single value of a
query that returns one row of one column. Validated with the rest of the request, before anything
touches AWS; the result is normalized (``database`` and ``timeout_seconds`` filled in, trailing
semicolons dropped) and validating it again returns it unchanged. docs/checks.md has the details.
This module stays import-light: the handler imports it at cold start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from dispatcher.errors import ValidationError

#: Row-count expectations: the query's rows are counted (never kept).
ROW_EXPECTATIONS = ("rows", "min_rows", "max_rows", "no_rows")
#: Value expectations: the query returns one row of one column, and that value is compared.
VALUE_EXPECTATIONS = ("equals", "at_least", "at_most")
EXPECTATIONS = ROW_EXPECTATIONS + VALUE_EXPECTATIONS
FIELDS = ("name", "sql", "database", "timeout_seconds", *EXPECTATIONS)

#: Every result travels in the step's output through the later states beside the request (Step
#: Functions' 256 KiB limit on a state's data): 50 results of about 400 bytes are about 20 KB.
MAX_CHECKS = 50
#: One check's SQL, and all checks' SQL together (the request itself is capped at 128 KiB).
MAX_SQL_BYTES = 8_192
MAX_TOTAL_SQL_BYTES = 32_768
#: Row counts are counted by fetching the rows (at most the bound plus one); larger counts belong in
#: ``SELECT count(*) ...`` with ``at_least``/``at_most``, which the server counts.
MAX_ROW_COUNT = 10_000
DEFAULT_TIMEOUT_SECONDS = 30
MAX_TIMEOUT_SECONDS = 300
#: All checks run in one invocation of the function (Lambda's 900 s timeout), one after another.
MAX_TOTAL_TIMEOUT_SECONDS = 600
#: What an expected string may hold.
MAX_VALUE_CHARS = 256
#: An expected or seen value as a result reports it: each result travels through the later states.
SHOWN_VALUE_CHARS = 64
NAME_RULE = "1-63 letters, digits, underscores, hyphens or periods, starting with a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
#: PostgreSQL keeps at most 63 bytes of a name (NAMEDATALEN - 1).
PG_NAME_MAX_BYTES = 63


def validate_checks(value: Any, *, default_database: str, field: str = "checks") -> list[dict[str, Any]]:
    """The checks, normalized; ``ValidationError`` naming ``checks[i].<field>`` on the first problem."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(field, value, "must be a list of check objects (see docs/checks.md)")
    if len(value) > MAX_CHECKS:
        raise ValidationError(
            field,
            f"{len(value)} checks",
            f"must hold at most {MAX_CHECKS} checks (each result travels "
            "through the later states, which Step Functions holds to 256 KiB)",
        )
    checks = [_check(item, f"{field}[{index}]", default_database) for index, item in enumerate(value)]
    seen: dict[str, int] = {}
    for index, check in enumerate(checks):
        key = check["name"].lower()
        if key in seen:
            raise ValidationError(
                f"{field}[{index}].name",
                check["name"],
                f"is already the name of {field}[{seen[key]}]; check names must be unique (case-insensitive)",
            )
        seen[key] = index
    total_sql = sum(len(check["sql"].encode()) for check in checks)
    if total_sql > MAX_TOTAL_SQL_BYTES:
        raise ValidationError(
            field,
            f"{total_sql} bytes of SQL",
            f"the checks' SQL must be at most {MAX_TOTAL_SQL_BYTES} bytes together",
        )
    total_timeout = sum(check["timeout_seconds"] for check in checks)
    if total_timeout > MAX_TOTAL_TIMEOUT_SECONDS:
        raise ValidationError(
            field,
            f"{total_timeout} s of timeouts",
            f"the checks' timeout_seconds must add up to at most {MAX_TOTAL_TIMEOUT_SECONDS} s: they run one "
            "after another in one invocation of the function, whose timeout is 900 s",
        )
    return checks


def expectation_of(check: Mapping[str, Any]) -> tuple[str, Any]:
    """The check's one expectation: its key and expected value."""
    key = next(k for k in EXPECTATIONS if k in check)
    return key, check[key]


def describe_expectation(check: Mapping[str, Any]) -> str:
    """The expectation in words: ``no rows``, ``at least 3 rows``, ``= 'done'``, ``>= 100``."""
    key, expected = expectation_of(check)
    if key == "no_rows":
        return "no rows"
    if key == "rows":
        return f"exactly {expected} row{'s' if expected != 1 else ''}"
    if key == "min_rows":
        return f"at least {expected} row{'s' if expected != 1 else ''}"
    if key == "max_rows":
        return f"at most {expected} row{'s' if expected != 1 else ''}"
    if isinstance(expected, str) and len(expected) > SHOWN_VALUE_CHARS:
        expected = expected[: SHOWN_VALUE_CHARS - 3] + "..."
    shown = "null" if expected is None else repr(expected) if isinstance(expected, str) else str(expected)
    if isinstance(expected, bool):
        shown = "true" if expected else "false"
    return {"equals": "= ", "at_least": ">= ", "at_most": "<= "}[key] + shown


def _check(item: Any, where: str, default_database: str) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise ValidationError(
            where,
            item,
            'must be an object such as {"name": "users", "sql": "SELECT 1 FROM users", "min_rows": 1}',
        )
    unknown = sorted((k for k in item if k not in FIELDS), key=str)
    if unknown:
        raise ValidationError(
            f"{where}.{unknown[0]}",
            item[unknown[0]],
            "is not a known field; known: " + ", ".join(FIELDS),
            show_value=False,
        )
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationError(f"{where}.name", name, "must be " + NAME_RULE)
    sql = item.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise ValidationError(f"{where}.sql", sql, "is required: one SQL query (a SELECT) as a string")
    if "\x00" in sql:
        raise ValidationError(f"{where}.sql", sql, "must not contain a NUL character")
    # A trailing semicolon is harmless to a reader but makes no second statement; drop it so the
    # query reads the same to the server's one-statement protocol.
    sql = sql.strip().rstrip(";").rstrip()
    if not sql:
        raise ValidationError(f"{where}.sql", item.get("sql"), "is required: one SQL query (a SELECT)")
    if len(sql.encode()) > MAX_SQL_BYTES:
        raise ValidationError(
            f"{where}.sql", f"{len(sql.encode())} bytes", f"must be at most {MAX_SQL_BYTES} bytes"
        )
    database = item.get("database", default_database)
    if (
        not isinstance(database, str)
        or not database
        or "\x00" in database
        or len(database.encode()) > PG_NAME_MAX_BYTES
    ):
        raise ValidationError(
            f"{where}.database",
            database,
            f"must be a database name of 1-{PG_NAME_MAX_BYTES} bytes (UTF-8) with no NUL character",
        )
    timeout = item.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_TIMEOUT_SECONDS:
        raise ValidationError(
            f"{where}.timeout_seconds",
            timeout,
            f"must be a whole number of seconds from 1 to {MAX_TIMEOUT_SECONDS}",
        )
    given = [key for key in EXPECTATIONS if key in item]
    if len(given) != 1:
        raise ValidationError(
            where if not given else f"{where}.{given[1]}",
            ", ".join(given) or "no expectation",
            "needs exactly one expectation among " + ", ".join(EXPECTATIONS),
            show_value=bool(given),
        )
    key = given[0]
    expected = _expected(key, item[key], f"{where}.{key}")
    return {
        "name": name,
        "sql": sql,
        "database": database,
        "timeout_seconds": timeout,
        key: expected,
    }


def _expected(key: str, value: Any, where: str) -> Any:
    if key == "no_rows":
        if value is not True:
            raise ValidationError(where, value, "must be true (the query must return no rows)")
        return True
    if key in ("rows", "min_rows", "max_rows"):
        low = 1 if key == "min_rows" else 0
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_ROW_COUNT:
            raise ValidationError(
                where,
                value,
                f"must be a whole number from {low} to {MAX_ROW_COUNT}; for larger counts use "
                "SELECT count(*) ... with at_least or at_most",
            )
        return value
    if key == "equals":
        if (
            value is None
            or isinstance(value, bool)
            or (isinstance(value, str) and len(value) <= MAX_VALUE_CHARS)
        ):
            return value
        if isinstance(value, (int, float)) and _finite(value):
            return value
        raise ValidationError(
            where,
            value,
            f"must be a string of at most {MAX_VALUE_CHARS} characters, a number, true, false or null",
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise ValidationError(where, value, "must be a number")
    return value


def _finite(value: float) -> bool:
    return Decimal(str(value)).is_finite()


def check_line(result: Mapping[str, Any]) -> str:
    """One check's result on one line: ``PASS masked (expected no rows, saw 0 rows; 12 ms)``.

    No ``name: value`` shape: a check named like a secret (``password-reset``) would have what
    follows the colon masked by the log and notification scrubbing.
    """
    verdict = "PASS" if result.get("ok") else "FAIL"
    duration = result.get("duration_ms")
    took = f"; {duration} ms" if isinstance(duration, int) else ""
    return (
        f"{verdict} {result.get('name')} (expected {result.get('expected')}, saw {result.get('seen')}{took})"
    )
