"""Adding a step is writing one module: a poll loop from a plug-in package, and nothing else edited.

The module below is the whole plug-in (docs/architecture.md, "Adding a step", walks through it).
It is installed the way a third-party package is, a ``*.dist-info`` with an ``aurora_restore.steps``
entry point on ``sys.path``, and loaded as the dispatcher loads plug-ins. Everything that lists
steps is derived from the registry, so the state machine, the dispatcher role's permissions and the
diagram all show the new loop.
"""

from __future__ import annotations

import json
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from dispatcher.registry import Registry
from infra.build_template import build_template
from infra.state_machine import build_definition, to_mermaid
from infra.state_table import to_state_table
from tests.contract import contract_registry

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.template

PLUGIN_MODULE = '''
"""start_activity_stream: stream the restored cluster's database activity to Kinesis."""

from __future__ import annotations

from typing import Any

from dispatcher.poll_loop import PollLoopStep


class StartActivityStream(PollLoopStep):
    """Start the restored cluster's database activity stream and wait until it is started."""

    run_after = "setup_db_users"
    reads = ("request", "restore")
    result_key = "activity_stream"
    output_doc = "`stream_status`, `kinesis_stream_name`, and the poll fields"
    max_wait_setting = "restore_max_wait_seconds"
    aws_actions = ("rds:StartActivityStream", "rds:DescribeDBClusters")

    def start(self, ctx: Any) -> dict[str, Any]:
        """Ask RDS to start the stream."""
        raise NotImplementedError("not run in this test")

    def check(self, ctx: Any) -> dict[str, Any]:
        """Look at the stream's status once."""
        raise NotImplementedError("not run in this test")
'''


@pytest.fixture
def with_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The built-in steps plus the plug-in, installed as a package whose entry point names the class."""
    (tmp_path / "activity_steps.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    dist = tmp_path / "activity_steps-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: activity-steps\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[aurora_restore.steps]\nstart_activity_stream = activity_steps:StartActivityStream\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "activity_steps", raising=False)
    registry = contract_registry()
    # WHEN the plug-ins are loaded as the dispatcher loads them
    assert registry.load_plugins() == [
        "await_activity_stream",
        "check_activity_stream_status",
        "start_activity_stream",
    ]
    return registry


def test_a_poll_loop_plugin_shows_in_the_state_machine(with_plugin: Registry) -> None:
    # WHEN the state machine is generated with the plug-in registered
    states = build_definition(with_plugin)["States"]
    # THEN its start, Choice, Wait and check run right after SetupDBUsers, before the built-in line
    # goes on (RunChecks, then NeedsSwap)
    assert states["SetupDBUsers"]["Next"] == "StartActivityStream"
    assert states["StartActivityStream"]["Next"] == "IsActivityStreamComplete"
    assert states["IsActivityStreamComplete"]["Choices"] == [
        {"Variable": "$.activity_stream.complete", "BooleanEquals": True, "Next": "RunChecks"},
        {
            "Variable": "$.activity_stream.wait_for_events",
            "BooleanEquals": True,
            "Next": "WaitForActivityStream",
        },
    ]
    # While events are not trusted it polls through a Wait state, as loops did before events
    assert states["IsActivityStreamComplete"]["Default"] == "WaitToCheckActivityStream"
    assert states["WaitToCheckActivityStream"] == {
        "Type": "Wait",
        "SecondsPath": "$.activity_stream.next_poll_seconds",
        "Next": "CheckActivityStreamStatus",
    }
    waiting = states["WaitForActivityStream"]
    assert waiting["Parameters"]["Payload"]["step"] == "await_activity_stream"
    assert waiting["TimeoutSecondsPath"] == "$.activity_stream.fallback_seconds"
    # Its timeout runs it again: that run's check is the fallback poll
    assert waiting["Catch"][0] == {
        "ErrorEquals": ["States.Timeout"],
        "ResultPath": "$.activity_stream.fallback",
        "Next": "WaitForActivityStream",
    }
    assert waiting["Next"] == "IsActivityStreamComplete"
    check = states["CheckActivityStreamStatus"]
    assert check["Parameters"]["step"] == "check_activity_stream_status"
    assert check["Parameters"]["activity_stream.$"] == "$.activity_stream"
    assert check["Next"] == "IsActivityStreamComplete"
    assert check["Catch"][0]["Next"] == "HandleFailure"


def test_a_poll_loop_plugin_shows_in_the_dispatcher_role(with_plugin: Registry) -> None:
    # WHEN the template is built with it
    template = json.loads(build_template(registry=with_plugin).to_json())
    statements = template["Resources"]["DispatcherRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    by_sid = {s["Fn::If"][1]["Sid"] if "Fn::If" in s else s["Sid"]: s for s in statements}
    # THEN the action no hand-written statement covers gets its own statement, scoped to the account
    # and the target regions; the describe it declares is already allowed by the read statement
    own = by_sid["DeclaredByStartActivityStream"]
    assert own["Action"] == ["rds:StartActivityStream"]
    assert own["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:rds:*:${AWS::AccountId}:*"}]
    assert own["Condition"] == {"StringEquals": {"aws:RequestedRegion": [{"Ref": "AWS::Region"}]}}
    assert "rds:Describe*" in by_sid["ReadRdsEverywhere"]["Action"]
    # AND without the plug-in there is no such statement
    plain = json.loads(build_template(registry=contract_registry()).to_json())
    assert "DeclaredByStartActivityStream" not in json.dumps(plain)


def test_a_poll_loop_plugin_shows_in_the_regenerated_diagram(with_plugin: Registry) -> None:
    diagram = to_mermaid(build_definition(with_plugin))
    assert "SetupDBUsers --> StartActivityStream" in diagram
    assert "WaitForActivityStream --> IsActivityStreamComplete" in diagram
    assert 'WaitForActivityStream -.->|"timeout: poll"| WaitForActivityStream' in diagram
    assert "WaitToCheckActivityStream --> CheckActivityStreamStatus" in diagram
    assert "CheckActivityStreamStatus --> IsActivityStreamComplete" in diagram


def test_a_poll_loop_plugin_shows_in_the_generated_state_table(with_plugin: Registry) -> None:
    table = to_state_table(build_definition(with_plugin), with_plugin)
    assert (
        "| StartActivityStream | `start_activity_stream` | request, restore | `activity_stream` | "
        "`stream_status`, `kinesis_stream_name`, and the poll fields |"
    ) in table
    assert (
        "| CheckActivityStreamStatus | `check_activity_stream_status` | request, restore, activity_stream "
        "| `activity_stream` | same shape |"
    ) in table


def test_the_plugin_s_steps_leave_the_builtin_pipeline_as_it_was(with_plugin: Registry) -> None:
    without = build_definition(contract_registry())["States"]
    states: dict[str, Any] = build_definition(with_plugin)["States"]
    added = set(states) - set(without)
    assert added == {
        "StartActivityStream",
        "IsActivityStreamComplete",
        "WaitForActivityStream",
        "WaitToCheckActivityStream",
        "CheckActivityStreamStatus",
    }
