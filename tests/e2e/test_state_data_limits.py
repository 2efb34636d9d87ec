"""Step Functions' limits on state data (256 KiB) and history (25,000 events), held by design.

On AWS a state whose data passes 262,144 bytes of UTF-8 JSON ends the execution with
``States.DataLimitExceeded``, which no Catch catches: no failure step, no notification, the lock
held. The request travels through every state, so validation holds it to 128 KiB; these runs show
the largest request validation accepts refreshing the target within the limits, and a larger one
failing in the first state with its one notification. The rehearsal's engine fails a run wherever
AWS would, so "within the limits" here is what AWS would do, not moto's leniency.
"""

from __future__ import annotations

import json
from typing import Any

from aurora_restore.simulate.engine import HISTORY_EVENT_LIMIT, STATE_DATA_LIMIT_BYTES
from refresh.request import MAX_REQUEST_BYTES, RestoreRequest, json_size
from refresh.users_spec import MAX_INLINE_SQL_BYTES, MAX_ITEMS
from tests.e2e.conftest import seed_request


def largest_valid_request(seed_input: dict[str, Any]) -> dict[str, Any]:
    """The seed's request with the most roles and grants allowed and inline SQL up to the cap."""
    roles = [{"name": f"limit_role_{i:03d}_" + "x" * 40, "login": False} for i in range(MAX_ITEMS)]
    grants = [
        {"type": "schema", "schema": "public", "privileges": ["USAGE"], "to": [role["name"]]}
        for role in roles[: MAX_ITEMS - 1]
    ]
    users: dict[str, Any] = {"roles": roles, "grants": grants, "scripts": []}
    raw = seed_request(seed_input, users=users)
    room = MAX_REQUEST_BYTES - json_size(RestoreRequest.from_event(raw).to_dict())
    users["scripts"] = [{"name": "fill", "sql": ""}]
    overhead = json_size(RestoreRequest.from_event(_with_sql(raw, "select 1;")).to_dict()) - (
        MAX_REQUEST_BYTES - room
    )
    filler = min(MAX_INLINE_SQL_BYTES, room - overhead + len("select 1;")) - len("select 1;\n")
    return _with_sql(raw, "-" * 2 + "x" * (filler - 3) + "\nselect 1;")


def _with_sql(raw: dict[str, Any], sql: str) -> dict[str, Any]:
    users = {**raw["body"]["users"], "scripts": [{"name": "fill", "sql": sql}]}
    return seed_request(raw, users=users)


#: What the steps' outputs may add to the request in the state data: 500 roles and 499 grants
#: listed in full were 95 KB once; the outputs are kept small by design.
OUTPUTS_BUDGET_BYTES = 16 * 1024


def test_the_largest_valid_request_refreshes_the_target_within_the_limits(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN the largest request validation accepts: 500 roles, 499 grants, inline SQL to the cap
    raw = largest_valid_request(seed_input)
    request = RestoreRequest.from_event(raw)
    size = json_size(request.to_dict())
    assert MAX_REQUEST_BYTES - 2048 < size <= MAX_REQUEST_BYTES
    assert json_size(raw) <= MAX_REQUEST_BYTES
    # WHEN the whole pipeline runs it
    report = rehearse(raw, copy_polls=1, restore_polls=1)
    # THEN it succeeds, with one notification, and no state's data came near AWS's limit
    assert report.status == "SUCCEEDED", report.error
    assert [n["attributes"]["status"] for n in report.notifications] == ["SUCCEEDED"]
    assert size < report.max_state_bytes < size + OUTPUTS_BUDGET_BYTES < STATE_DATA_LIMIT_BYTES
    # AND the users step's output lists are cut, with every count kept
    users = (report.state_item or {})["results"]["setup_db_users"]
    assert users["counts"]["roles_created"] == MAX_ITEMS and len(users["roles_created"]) == 25
    assert users["lists_truncated"] is True
    assert 0 < report.history_events < HISTORY_EVENT_LIMIT
    assert report.to_dict()["max_state_bytes"] == report.max_state_bytes
    assert report.to_dict()["history_events"] == report.history_events


def test_a_200_kib_request_fails_at_validation_with_one_notification(
    rehearse: Any, seed_input: dict[str, Any]
) -> None:
    # GIVEN a request of 200 KiB (an inline script far over the cap)
    raw = seed_request(seed_input, users={"scripts": [{"name": "big", "sql": "select 1;\n" * 20480}]})
    assert json_size(raw) > 200 * 1024
    # WHEN it runs
    report = rehearse(raw)
    # THEN the first state refuses it by size and the failure step reports it once
    assert report.status == "FAILED"
    names = [run.name for run in report.states]
    assert names[0] == "ValidateRequest" and "SnapshotCheck" not in names, names
    assert [n["attributes"]["status"] for n in report.notifications] == ["FAILED"]
    message = json.dumps(report.notifications[0])
    assert f"at most {MAX_REQUEST_BYTES} bytes" in message
    assert "select 1;\\nselect 1;" not in message
    assert report.locks == []
    assert report.max_state_bytes < STATE_DATA_LIMIT_BYTES
