"""The request's checks: each malformed check refused naming its field, the value and what is allowed."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.errors import ValidationError
from refresh.checks import (
    MAX_CHECKS,
    MAX_SQL_BYTES,
    check_line,
    describe_expectation,
    validate_checks,
)
from refresh.request import RestoreRequest, parse_request

BASE = {
    "snapshot_id": "rds:orders-2026-11-20-02-00",
    "source_region": "eu-west-1",
    "target_region": "eu-central-1",
    "target_cluster_id": "orders-dev",
    "database": "orders",
}


def check(**fields: Any) -> dict[str, Any]:
    return {"name": "masked", "sql": "SELECT 1 FROM users WHERE email NOT LIKE '%@example.com'", **fields}


def refused(checks: Any) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        parse_request({**BASE, "checks": checks})
    return raised.value


def test_a_valid_check_is_normalized_and_survives_a_second_validation() -> None:
    request = parse_request({**BASE, "checks": [check(no_rows=True, sql="SELECT 1 FROM users;  ")]})
    assert request.checks == (
        {
            "name": "masked",
            "sql": "SELECT 1 FROM users",
            "database": "orders",
            "timeout_seconds": 30,
            "no_rows": True,
        },
    )
    again = RestoreRequest.from_event(request.to_dict())
    assert again.checks == request.checks
    assert again.keep_failed_restore is False


@pytest.mark.parametrize(
    ("checks", "field", "words"),
    [
        ({"name": "x"}, "checks", "must be a list"),
        (["SELECT 1"], "checks[0]", "must be an object"),
        ([check()], "checks[0]", "exactly one expectation"),
        ([check(rows=1, no_rows=True)], "checks[0].no_rows", "exactly one expectation"),
        ([check(no_rows=False)], "checks[0].no_rows", "must be true"),
        ([check(rows=-1)], "checks[0].rows", "whole number from 0"),
        ([check(min_rows=0)], "checks[0].min_rows", "whole number from 1"),
        ([check(max_rows=20_000)], "checks[0].max_rows", "SELECT count(*)"),
        ([check(at_least="10")], "checks[0].at_least", "must be a number"),
        ([check(equals=[1])], "checks[0].equals", "a number, true, false or null"),
        ([check(name="bad name", rows=1)], "checks[0].name", "letters, digits"),
        ([check(sql="  ;  ", rows=1)], "checks[0].sql", "is required"),
        ([check(sql="SELECT '\x00'", rows=1)], "checks[0].sql", "NUL"),
        ([check(sql="SELECT 1 " + "x" * MAX_SQL_BYTES, rows=1)], "checks[0].sql", f"at most {MAX_SQL_BYTES}"),
        ([check(database="", rows=1)], "checks[0].database", "database name"),
        ([check(timeout_seconds=0, rows=1)], "checks[0].timeout_seconds", "from 1 to 300"),
        ([check(timeout_seconds=True, rows=1)], "checks[0].timeout_seconds", "from 1 to 300"),
        ([check(rows=1, where="x")], "checks[0].where", "not a known field"),
        ([check(rows=1), check(name="MASKED", rows=2)], "checks[1].name", "unique"),
        ([check(name=f"c{i}", rows=1) for i in range(MAX_CHECKS + 1)], "checks", f"at most {MAX_CHECKS}"),
        ([check(name=f"c{i}", rows=1, timeout_seconds=300) for i in range(3)], "checks", "at most 600 s"),
    ],
)
def test_a_malformed_check_is_refused_naming_the_field(checks: Any, field: str, words: str) -> None:
    error = refused(checks)
    assert error.field == field
    assert words in error.message


def test_keep_failed_restore_must_be_a_boolean() -> None:
    with pytest.raises(ValidationError) as raised:
        parse_request({**BASE, "keep_failed_restore": "yes"})
    assert raised.value.field == "keep_failed_restore"


def test_expectations_and_results_read_as_one_line() -> None:
    assert describe_expectation(check(no_rows=True)) == "no rows"
    assert describe_expectation(check(rows=1)) == "exactly 1 row"
    assert describe_expectation(check(min_rows=5)) == "at least 5 rows"
    assert describe_expectation(check(equals="done")) == "= 'done'"
    assert describe_expectation(check(equals=None)) == "= null"
    assert describe_expectation(check(equals=True)) == "= true"
    assert describe_expectation(check(at_most=2.5)) == "<= 2.5"
    line = check_line(
        {"name": "masked", "expected": "no rows", "seen": "at least 1 row", "ok": False, "duration_ms": 4}
    )
    assert line == "FAIL masked (expected no rows, saw at least 1 row; 4 ms)"


def test_no_checks_is_an_empty_gate() -> None:
    assert validate_checks(None, default_database="postgres") == []
    assert parse_request(BASE).checks == ()


def test_the_results_of_the_most_checks_fit_the_state_data_beside_the_largest_request() -> None:
    # GIVEN 50 checks with the longest names, databases and expected strings, all failing with the
    # longest SQL error a result reports
    from refresh.checks import MAX_CHECKS, SHOWN_VALUE_CHARS
    from refresh.request import MAX_REQUEST_BYTES, STATE_DATA_LIMIT_BYTES, json_size
    from steps.run_checks import ERROR_MAX_CHARS, _counts, _result

    longest = [
        {
            "name": f"{i:02d}" + "n" * 61,
            "sql": "SELECT 1",
            "database": "d" * 63,
            "timeout_seconds": 300,
            "equals": "v" * 256,
        }
        for i in range(MAX_CHECKS)
    ]
    seen = "SQL error 42P01 (UndefinedTableError): " + "m" * ERROR_MAX_CHARS
    results = [_result(check, False, seen, 300_000) for check in longest]
    output = {"cluster_id": "c" * 63, "ok": False, "results": results, "counts": _counts(results)}
    # THEN the gate's output stays near 20 KB: beside the largest request (128 KiB) and the other
    # steps' outputs it is far from Step Functions' 256 KiB
    assert all(len(r["expected"]) <= SHOWN_VALUE_CHARS + 5 for r in results)
    assert json_size(output) < 24 * 1024
    assert MAX_REQUEST_BYTES + 16 * 1024 + json_size(output) < STATE_DATA_LIMIT_BYTES


def test_a_check_named_like_a_secret_still_reads_whole_after_scrubbing() -> None:
    from dispatcher.logs import scrub_text

    line = check_line(
        {"name": "password-reset", "expected": "no rows", "seen": "0 rows", "ok": True, "duration_ms": 1}
    )
    assert scrub_text(line) == line == "PASS password-reset (expected no rows, saw 0 rows; 1 ms)"


def test_the_documented_example_and_the_shipped_example_are_valid_checks() -> None:
    import json
    from pathlib import Path

    root = Path(__file__).parents[2]
    text = (root / "docs" / "checks.md").read_text()
    documented = json.loads(text.split("```json")[1].split("```")[0])
    assert len(validate_checks(documented["checks"], default_database=documented["database"])) == 5
    shipped = json.loads((root / "aurora_restore" / "examples" / "masking-input.json").read_text())
    request = parse_request(shipped)
    assert [check["name"] for check in request.checks] == [
        "emails-masked",
        "phones-removed",
        "customers-kept",
        "orders-present",
    ]
